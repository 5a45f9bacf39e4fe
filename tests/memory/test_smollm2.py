"""The real SmolLM2-135M (llama.cpp) as memory model on a small real corpus: built, saved, reloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from ragkit.memory.backend import CorruptMemoryError, MemorySettings, MemoryUnit  # noqa: E402
from ragkit.memory.kv import KVMemory  # noqa: E402
from ragkit.memory.lm import LlamaCppMemoryLM  # noqa: E402
from ragkit.memory.loader import load_memory  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample" / "volcanoes.md"


@pytest.fixture(scope="module")
def lm():
    from ragkit.models.llamacpp import LlamaCppLM

    model = LlamaCppLM.load("smollm2-135m-instruct", n_ctx=2048, n_threads=1)
    yield LlamaCppMemoryLM(model)
    model.close()


def test_memory_built_saved_reloaded_gives_the_same_clues(lm, tmp_path: Path) -> None:
    paragraphs = [p for p in SAMPLE.read_text().split("\n\n") if p.strip()][:3]
    units = [MemoryUnit(f"v{i}", "volcanoes.md", p) for i, p in enumerate(paragraphs)]
    memory = KVMemory(lm, MemorySettings(task_tokens=32))
    memory.memorize(units)
    assert len(memory.windows) == 1
    state = memory.windows[0].state
    # the prefix is the chat-templated corpus; the instruction follows it
    assert state.num_tokens > lm.count_tokens(" ".join(paragraphs))
    question = "Which volcano erupted in 79 AD?"
    before = memory.recall_clues(question)
    assert before.llm_calls == 2
    assert [r["task"] for r in before.raw] == ["span", "surrogate"]
    assert all(r["text"] for r in before.raw)  # the model wrote something for each task
    target = memory.save(tmp_path / "mem")
    manifest = (target / "manifest.json").read_text()
    assert lm.lm.model_sha256 in manifest
    reloaded = load_memory(target, lm)
    after = reloaded.recall_clues(question)
    assert after.raw == before.raw  # greedy decoding from the restored state: same outputs
    assert [q.text for q in after.queries()] == [q.text for q in before.queries()]
    # the restored state equals re-reading the window from scratch
    cold = reloaded.ask_all_cold(
        __import__("ragkit.memory.prompts", fromlist=["SPAN"]).SPAN.format(question=question)
    )
    assert cold == [before.raw[0]["text"]]
    # a truncated state blob is caught by its manifest, never loaded
    blob = target / "window-000" / "state.bin"
    blob.write_bytes(blob.read_bytes()[:1000])
    with pytest.raises(CorruptMemoryError, match="window-000/state.bin"):
        load_memory(target, lm)
