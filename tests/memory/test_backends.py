"""KV and gist memories with a scripted memory model: windows, add/remove, save/load, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit.memory.backend import (
    CorruptMemoryError,
    EmptyCorpusError,
    MemoryMismatchError,
    MemorySettings,
    MemoryUnit,
    NoMemoryError,
)
from ragkit.memory.gist import GistMemory
from ragkit.memory.kv import KVMemory
from ragkit.memory.loader import load_memory
from ragkit.testing.memory import ScriptedMemoryLM

CORPUS = [
    MemoryUnit("a1", "a.txt", "Alpha Corp was founded by Jane Roe in 1990 in Oslo."),
    MemoryUnit("a2", "a.txt", "Alpha Corp makes red bicycles for mountain riders."),
    MemoryUnit("b1", "b.txt", "Beta Ltd bought Alpha Corp in 2005 for ten million."),
    MemoryUnit("c1", "c.txt", "Gamma Inc sells blue kayaks on the northern coast."),
]


def script(task: str, context: str, question: str) -> str:
    """Clues name the companies the window's context mentions (a stand-in for recall)."""
    names = [n for n in ("Alpha Corp", "Beta Ltd", "Gamma Inc") if n in context]
    if task == "span":
        return "\n".join(f"{i + 1}. {n} is mentioned in this part" for i, n in enumerate(names))
    if task == "surrogate":
        return "\n".join(f"- Who owns {n} today?" for n in names) + "\nOK"
    if task == "draft":
        return "Jane Roe" if "Jane Roe" in context else "unknown"
    if task == "summary":
        return "\n".join(f"{i + 1}. About {n}" for i, n in enumerate(names))
    if task == "gist":
        return "GIST: " + " ".join(w for w in context.split() if w[:1].isupper())
    raise AssertionError(task)


def test_one_window_memorizes_once_and_recalls_from_the_state() -> None:
    lm = ScriptedMemoryLM(script)
    mem = KVMemory(lm)
    mem.memorize(CORPUS)
    assert len(mem.windows) == 1 and len(lm.prefills) == 1
    clues = mem.recall_clues("Who founded Alpha Corp?", draft=True)
    assert [q.text for q in clues.spans][:2] == [
        "Alpha Corp is mentioned in this part",
        "Beta Ltd is mentioned in this part",
    ]
    assert "Who owns Gamma Inc today?" in [q.text for q in clues.surrogates]
    assert clues.draft == "Jane Roe"
    assert clues.llm_calls == 3 and len(lm.prefills) == 1  # no re-reading per question
    assert "OK" in clues.rejected


def test_long_corpus_is_read_in_windows_and_clues_are_merged() -> None:
    lm = ScriptedMemoryLM(script)
    mem = KVMemory(lm, MemorySettings(window_tokens=64, reserve_tokens=32))
    long_unit = MemoryUnit("z", "z.txt", " ".join(f"w{i}" for i in range(150)) + " Gamma Inc")
    mem.memorize([*CORPUS, long_unit])
    assert len(mem.windows) >= 3
    assert all(lm.count_tokens(w.text) <= 64 for w in mem.windows)
    # every word of the corpus is memorized exactly once
    words = " ".join(w.text for w in mem.windows).split()
    assert words == " ".join(u.text for u in [*CORPUS, long_unit]).split()
    clues = mem.recall_clues("Which companies?")
    spans = [q.text for q in clues.spans]
    assert spans.count("Gamma Inc is mentioned in this part") == 1  # merged and de-duplicated
    last = len(mem.windows) - 1  # the long unit's tail, holding "Gamma Inc" again
    assert "Gamma Inc" in mem.windows[last].text
    raw_last = [r["text"] for r in clues.raw if r["task"] == "span" and r["window"] == last]
    assert raw_last == ["1. Gamma Inc is mentioned in this part"]
    assert "Gamma Inc is mentioned in this part" in clues.rejected  # the duplicate
    assert clues.llm_calls == 2 * len(mem.windows)


def test_corpus_larger_than_the_context_never_crashes() -> None:
    lm = ScriptedMemoryLM(script, context_tokens=600)
    mem = KVMemory(lm)  # window = context - reserve - task tokens = 88 words
    mem.memorize([MemoryUnit(f"u{i}", "big.txt", "word " * 500) for i in range(4)])
    assert len(mem.windows) >= 20
    gist = GistMemory(ScriptedMemoryLM(script, context_tokens=600))
    gist.memorize([MemoryUnit(f"u{i}", "big.txt", "Word " * 500) for i in range(4)])
    assert gist.windows


def test_building_several_windows_or_gists_shows_progress_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long_unit = MemoryUnit("z", "z.txt", " ".join(f"w{i}" for i in range(150)))
    KVMemory(
        ScriptedMemoryLM(script), MemorySettings(window_tokens=64, reserve_tokens=32)
    ).memorize([long_unit])
    assert "memorizing" in capsys.readouterr().err
    gist = GistMemory(ScriptedMemoryLM(script), MemorySettings(kind="gist", gist_chunk_tokens=16))
    gist.memorize(CORPUS)
    assert "gisting" in capsys.readouterr().err
    KVMemory(ScriptedMemoryLM(script)).memorize(CORPUS)  # one window: no bar
    quiet = KVMemory(
        ScriptedMemoryLM(script),
        MemorySettings(window_tokens=64, reserve_tokens=32),
        progress=False,
    )
    quiet.memorize([long_unit])
    assert len(quiet.windows) >= 2 and capsys.readouterr().err == ""


def test_empty_corpus_is_a_clear_error() -> None:
    with pytest.raises(EmptyCorpusError, match="empty"):
        KVMemory(ScriptedMemoryLM(script)).memorize([MemoryUnit("e", "e.txt", "   ")])
    with pytest.raises(EmptyCorpusError):
        GistMemory(ScriptedMemoryLM(script)).memorize([])


def test_add_reads_only_new_units_and_remove_rebuilds_only_affected_windows() -> None:
    lm = ScriptedMemoryLM(script)
    mem = KVMemory(lm, MemorySettings(window_tokens=64, reserve_tokens=32))
    mem.memorize(CORPUS[:2])
    first = list(lm.prefills)
    mem.add([CORPUS[2]])
    assert lm.prefills[len(first) :] == [CORPUS[2].text]  # only the new chunk was read
    mem.add([CORPUS[3]])
    before = len(lm.prefills)
    mem.remove_sources(["b.txt"])
    assert len(lm.prefills) == before  # b.txt had a window of its own: dropped, nothing re-read
    assert mem.sources == {"a.txt", "c.txt"}
    assert not any("Beta" in w.text for w in mem.windows)


def test_save_load_roundtrip_gives_the_same_clues(tmp_path: Path) -> None:
    lm = ScriptedMemoryLM(script)
    mem = KVMemory(lm, MemorySettings(window_tokens=64, reserve_tokens=32))
    mem.memorize(CORPUS)
    mem.save(tmp_path / "m", {"corpus_hash": "h1"})
    reloaded = load_memory(tmp_path / "m", ScriptedMemoryLM(script))
    assert isinstance(reloaded, KVMemory)
    assert reloaded.meta["corpus_hash"] == "h1"
    q = "Who bought Alpha Corp?"
    assert reloaded.recall_clues(q).as_dict() | {"seconds": 0} == mem.recall_clues(q).as_dict() | {
        "seconds": 0
    }
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["model"]["model"] == "scripted-memory"
    assert manifest["num_tokens"] == mem.num_tokens and manifest["backend_version"] == 1


def test_corrupt_truncated_or_missing_memory_is_not_loaded(tmp_path: Path) -> None:
    mem = KVMemory(ScriptedMemoryLM(script))
    mem.memorize(CORPUS)
    target = mem.save(tmp_path / "m")
    state = target / "window-000" / "state.json"
    state.write_bytes(state.read_bytes()[:-10])  # truncated
    with pytest.raises(CorruptMemoryError, match=r"window-000/state.json is missing or truncated"):
        load_memory(target, ScriptedMemoryLM(script))
    mem.save(target)
    (target / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptMemoryError, match="not loaded"):
        load_memory(target, ScriptedMemoryLM(script))
    with pytest.raises(NoMemoryError):
        load_memory(tmp_path / "nothing", ScriptedMemoryLM(script))


def test_memory_of_another_model_names_both_and_the_rebuild(tmp_path: Path) -> None:
    mem = KVMemory(ScriptedMemoryLM(script, name="model-a"))
    mem.memorize(CORPUS)
    mem.save(tmp_path / "m")
    with pytest.raises(MemoryMismatchError) as err:
        load_memory(tmp_path / "m", ScriptedMemoryLM(script, name="model-b"), rebuild="REBUILD-CMD")
    msg = str(err.value)
    assert "'model-a'" in msg and "'model-b'" in msg and "REBUILD-CMD" in msg


def test_gist_memory_compresses_once_and_adds_only_new_gists(tmp_path: Path) -> None:
    lm = ScriptedMemoryLM(script)
    mem = GistMemory(lm, MemorySettings(kind="gist", gist_chunk_tokens=25))
    mem.memorize(CORPUS[:3])
    gists = [g.text for g in mem.gists]
    assert all(g.startswith("GIST:") for g in gists)
    assert len(gists) == 2  # a.txt (2 chunks packed, 21 words) and b.txt: one gist per file chunk
    assert [c[0] for c in lm.calls] == ["gist", "gist"]
    assert mem.windows[0].text == "\n\n".join(gists)  # the memory prefix is the gists
    lm.calls.clear()
    mem.add([CORPUS[3]])
    assert [c[0] for c in lm.calls] == ["gist"]  # only the new chunk is compressed
    assert len(mem.gists) == 3
    clues = mem.recall_clues("Who sells kayaks?")
    assert "Gamma Inc is mentioned in this part" in [q.text for q in clues.spans]
    mem.save(tmp_path / "g")
    again = load_memory(tmp_path / "g", ScriptedMemoryLM(script))
    assert isinstance(again, GistMemory) and [g.text for g in again.gists] == [
        g.text for g in mem.gists
    ]


def test_empty_gist_keeps_the_chunk_text() -> None:
    lm = ScriptedMemoryLM(lambda task, c, q: "" if task == "gist" else "x")
    mem = GistMemory(lm, MemorySettings(kind="gist"))
    mem.memorize(CORPUS[:1])
    assert mem.gists[0].text == CORPUS[0].text


def test_key_points_and_draft_over_windows() -> None:
    lm = ScriptedMemoryLM(script)
    mem = KVMemory(lm, MemorySettings(window_tokens=64, reserve_tokens=32))
    mem.memorize(CORPUS)
    points = mem.key_points()
    assert points[0] == "About Alpha Corp" and "About Gamma Inc" in points
    assert len(points) == len(set(points))
    assert mem.draft_answer("Who founded Alpha Corp?") == "Jane Roe"


def test_gists_are_cached_by_content_so_an_interrupted_build_resumes(tmp_path: Path) -> None:
    settings = MemorySettings(kind="gist", gist_chunk_tokens=32)
    lm = ScriptedMemoryLM(script)
    first = GistMemory(lm, settings, progress=False, gist_cache=tmp_path)
    first.memorize(CORPUS[:2])  # a build that stopped after the first file
    assert first.llm_calls == 1 and first.gists_reused == 0
    calls = len(lm.calls)
    again = GistMemory(lm, settings, progress=False, gist_cache=tmp_path)
    again.memorize(CORPUS)  # the full build: only the chunks not gisted yet are generated
    assert len(again.gists) == 3  # one chunk per file
    assert again.gists_reused == 1 and again.llm_calls == 2
    assert len(lm.calls) - calls == again.llm_calls
    fresh = GistMemory(ScriptedMemoryLM(script), settings, progress=False)
    fresh.memorize(CORPUS)  # no cache: the same gists, every one generated
    assert [g.text for g in fresh.gists] == [g.text for g in again.gists]
    # another length limit or another model is another gist
    longer = MemorySettings(kind="gist", gist_chunk_tokens=32, gist_tokens=settings.gist_tokens + 1)
    other = GistMemory(lm, longer, progress=False, gist_cache=tmp_path)
    other.memorize(CORPUS[:2])
    assert other.gists_reused == 0
    renamed = GistMemory(
        ScriptedMemoryLM(script, name="another"), settings, progress=False, gist_cache=tmp_path
    )
    renamed.memorize(CORPUS[:2])
    assert renamed.gists_reused == 0
