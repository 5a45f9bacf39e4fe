"""Memory beside a real store: build, staleness, add (reading only new files), drop, the
per-question cache, and the components wired in a Haystack pipeline (scripted memory model)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from haystack import Document, Pipeline

from ragkit.config import EmbeddedStore, MemoryStore
from ragkit.indexing.manifest import FileEntry, Manifest
from ragkit.memory.backend import MemorySettings, NoMemoryError, StaleMemoryError
from ragkit.memory.components import ClueRetriever, MemoryRecall
from ragkit.memory.store import (
    MemorySpec,
    build_memory,
    cached_memory,
    corpus_units,
    drop_memory,
    memory_info,
    open_memory,
    update_memory,
)
from ragkit.stores.store import open_store, release_store
from ragkit.testing.memory import ScriptedMemoryLM

FILES = {
    "/c/tesla.txt": [
        "Nikola Tesla was born in 1856 in Smiljan.",
        "Tesla worked for Thomas Edison in New York in 1884.",
    ],
    # long enough to fill a 64-word window alone, so each file has its own window
    "/c/curie.txt": [
        "Marie Curie won the Nobel Prize in Physics in 1903. "
        + "Her work on radioactivity was long and careful. " * 6
    ],
}


def script(task: str, context: str, question: str) -> str:
    if task == "span":
        lines = [s for s in context.split("\n\n") if question.split()[-1] in s]
        return "\n".join(lines) or "Nothing."
    if task == "surrogate":
        return "Who did Tesla work for in New York?" if "Tesla" in question else "Hm"
    if task == "draft":
        return "Edison"
    return ""


def _vec(text: str) -> list[float]:
    h = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 + 0.01 for b in h] * 12  # 384-d, deterministic


def _write(store, files: dict[str, list[str]]) -> None:
    """Write chunks and the indexing manifest the way the indexer leaves them."""
    man = Manifest.load(store.directory / "manifest.json") if store.directory else None
    for source, chunks in files.items():
        store.delete_source(source)
        docs, start = [], 0
        for i, text in enumerate(chunks):
            docs.append(
                Document(
                    id=f"{source}:{i}",
                    content=text,
                    embedding=_vec(text),
                    meta={"source": source, "start": start},
                )
            )
            start += len(text) + 2
        store.write(docs)
        if man is not None:
            sha = hashlib.sha256("\n".join(chunks).encode()).hexdigest()
            man.files[source] = FileEntry(sha256=sha, size=1, chunks=len(docs), status="done")
    store.commit()
    if man is not None:
        man.save()


@pytest.fixture
def store(tmp_path: Path):
    st = open_store(EmbeddedStore(path=str(tmp_path / "store")))
    _write(st, FILES)
    yield st
    release_store(st)


def spec() -> MemorySpec:
    return MemorySpec(
        model="scripted-memory", settings=MemorySettings(window_tokens=64, reserve_tokens=32)
    )


def test_build_then_stale_after_indexing_then_add_reads_only_new_files(store) -> None:
    lm = ScriptedMemoryLM(script)
    with pytest.raises(NoMemoryError, match="ragkit memory build --store"):
        open_memory(store, spec(), lm)
    info = build_memory(store, spec(), lm)
    assert info["units"] == 3 and info["sources"] == 2 and info["bytes"] > 0
    assert [u.text for u in corpus_units(store)][:2] == FILES["/c/curie.txt"] + FILES[
        "/c/tesla.txt"
    ][:1]
    assert info["windows"] == 2
    open_memory(store, spec(), lm)  # fresh: loads
    assert memory_info(store)["stale"] is False

    # what `ragkit index` does to the store: a new file and a changed one; memory untouched
    _write(store, {"/c/bohr.txt": ["Niels Bohr proposed his atom model in 1913."]})
    _write(store, {"/c/curie.txt": ["Marie Curie won a second Nobel Prize in 1911."]})
    with pytest.raises(StaleMemoryError) as err:
        open_memory(store, spec(), lm)
    msg = str(err.value)
    assert "1 files added, 1 changed, 0 removed" in msg
    assert "ragkit memory add PATH --store" in msg and "ragkit memory build --store" in msg
    info = memory_info(store)
    assert info["stale"] and info["changes"] == {"added": 1, "changed": 1, "removed": 0}
    assert "ragkit memory add PATH" in info["fix"]

    lm.prefills.clear()
    out = update_memory(store, spec(), lm)
    assert (out["added"], out["changed"], out["removed"]) == (1, 1, 0)
    read = "\n".join(lm.prefills)
    assert "Bohr" in read and "second Nobel" in read
    assert "Smiljan" not in read  # tesla.txt's window was not re-read
    memory = open_memory(store, spec(), lm)
    texts = " ".join(w.text for w in memory.windows)
    assert "second Nobel" in texts and "Physics in 1903" not in texts
    assert drop_memory(store) and not drop_memory(store)
    with pytest.raises(NoMemoryError):
        memory_info(store)


def test_memory_of_another_model_is_refused_with_both_names(store) -> None:
    build_memory(store, spec(), ScriptedMemoryLM(script, name="model-a"))
    with pytest.raises(Exception) as err:
        open_memory(store, spec(), ScriptedMemoryLM(script, name="model-b"))
    assert type(err.value).__name__ == "MemoryMismatchError"
    assert "'model-a'" in str(err.value) and "'model-b'" in str(err.value)
    assert "ragkit memory build --store" in str(err.value)


def test_empty_store_is_a_clear_error(tmp_path: Path) -> None:
    st = open_store(EmbeddedStore(path=str(tmp_path / "empty")))
    try:
        with pytest.raises(Exception, match="corpus is empty"):
            build_memory(st, spec(), ScriptedMemoryLM(script))
    finally:
        release_store(st)


def test_per_question_memory_is_cached_by_content_hash(tmp_path: Path) -> None:
    lm = ScriptedMemoryLM(script)
    units = corpus_units_of({"q1": ["Paragraph one about Tesla.", "Paragraph two about Edison."]})
    first = cached_memory(units, spec(), lm, cache_root=tmp_path)
    assert len(lm.prefills) == 1
    again = cached_memory(units, spec(), lm, cache_root=tmp_path)
    assert len(lm.prefills) == 1  # loaded, not re-read
    assert [w.text for w in again.windows] == [w.text for w in first.windows]
    other = corpus_units_of({"q2": ["Another question's paragraph entirely."]})
    cached_memory(other, spec(), lm, cache_root=tmp_path)
    assert len(lm.prefills) == 2 and len(list(tmp_path.iterdir())) == 2


def corpus_units_of(files: dict[str, list[str]]):
    from ragkit.memory.backend import MemoryUnit

    return [MemoryUnit(f"{s}:{i}", s, t) for s, ts in files.items() for i, t in enumerate(ts)]


def _pipeline(lm: ScriptedMemoryLM, store, **recall) -> Pipeline:
    pipe = Pipeline()
    rec = MemoryRecall.from_model(lm, memory={"window_tokens": 64}, **recall)
    rec._lm = lm
    pipe.add_component("recall", rec)
    pipe.add_component("clues", ClueRetriever(top_k=1, dense=False))
    pipe.connect("recall.clues", "clues.clues")
    for _, comp in pipe.walk():
        comp.bind_store(store)
    return pipe


def test_components_trace_which_clue_found_which_passage(store) -> None:
    lm = ScriptedMemoryLM(script)
    build_memory(
        store, MemorySpec(model="scripted-memory", settings=MemorySettings(window_tokens=64)), lm
    )
    pipe = _pipeline(lm, store)
    q = "When was Tesla born in Smiljan"
    out = pipe.run({"recall": {"question": q}}, include_outputs_from={"recall"})
    clues = out["recall"]["clues"]
    assert clues["spans"] == ["Nikola Tesla was born in 1856 in Smiljan."]
    assert out["recall"]["draft"] == "Edison"
    docs = out["clues"]["documents"]
    ids = [d.id for d in docs]
    assert ids == sorted(ids, key=lambda i: ids.index(i))  # stable
    assert "/c/tesla.txt:0" in ids and "/c/tesla.txt:1" in ids
    passages = {p["id"]: p["found_by"] for p in out["clues"]["trace"]["passages"]}
    assert "Who did Tesla work for in New York?" in passages["/c/tesla.txt:1"]
    assert [q["kind"] for q in out["clues"]["trace"]["queries"]] == [
        "span",
        "surrogate",
        "draft",
        "question",
    ]
    # corpus order: tesla chunk 0 before chunk 1
    assert ids.index("/c/tesla.txt:0") < ids.index("/c/tesla.txt:1")
    from ragkit.memory.components import format_memory_trace

    text = "\n".join(
        format_memory_trace({"recall": out["recall"]["trace"], "clues": out["clues"]["trace"]})
    )
    assert "  span      Nikola Tesla was born in 1856 in Smiljan." in text
    assert "/c/tesla.txt\n" in text and "    <- Who did Tesla work for in New York?" in text


def test_no_usable_clue_falls_back_to_the_question_and_says_so(store, caplog) -> None:
    lm = ScriptedMemoryLM(lambda task, c, q: "Ok." if task != "draft" else "")
    build_memory(
        store, MemorySpec(model="scripted-memory", settings=MemorySettings(window_tokens=64)), lm
    )
    pipe = _pipeline(lm, store)
    with caplog.at_level(logging.INFO, logger="ragkit.memory.components"):
        out = pipe.run(
            {"recall": {"question": "Marie Curie Nobel Prize"}}, include_outputs_from={"recall"}
        )
    trace = out["recall"]["trace"]
    assert trace["fallback"] is True and "question alone" in trace["note"]
    assert [q["kind"] for q in out["clues"]["trace"]["queries"]] == ["question"]
    assert out["clues"]["documents"][0].id == "/c/curie.txt:0"
    assert "question alone" in caplog.text


def test_in_memory_store_builds_its_memory_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path / "cache"))
    st = open_store(MemoryStore())
    try:
        _write(st, FILES)
        lm = ScriptedMemoryLM(script)
        pipe = _pipeline(lm, st)
        pipe.run({"recall": {"question": "Tesla Smiljan"}})
        assert len(lm.prefills) == 2  # two windows, read once
        pipe.run({"recall": {"question": "Curie Nobel"}})
        assert len(lm.prefills) == 2  # same store: memory kept
        pipe.get_component("recall").bind_store(st)  # e.g. eval re-binding: from the cache
        pipe.run({"recall": {"question": "Curie Nobel"}})
        assert len(lm.prefills) == 2
        assert len(list((tmp_path / "cache" / "memory").iterdir())) == 1
    finally:
        release_store(st)
