"""``ragkit memory build|add|info|drop`` and a memory pipeline through the real CLI (SmolLM2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import ragkit

pytest.importorskip("llama_cpp")

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"

# retrieval-only MemoRAG (no reader): memory -> clues -> hybrid retrieval per clue
PIPELINE = """
components:
  memory_recall:
    type: ragkit.memory.components.MemoryRecall
    init_parameters: {model: {name: smollm2-135m-instruct, n_ctx: 2048, n_threads: 1},
                      memory: {task_tokens: 24}, draft: false}
  clue_retriever:
    type: ragkit.memory.components.ClueRetriever
    init_parameters: {top_k: 2}
connections:
  - {sender: memory_recall.clues, receiver: clue_retriever.clues}
"""


def test_memory_lifecycle_through_the_cli(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SAMPLE / "volcanoes.md", corpus)
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(SAMPLE / "solar_system.md", later)
    pipe = tmp_path / "memorag_retrieve.yaml"
    pipe.write_text(PIPELINE)
    store = str(tmp_path / "store")
    assert ragkit("index", str(corpus), "--store", store, "-q")[0] == 0

    code, _, err = ragkit("memory", "info", "--store", store)
    assert code == 1 and "has no memory 'default'; run: ragkit memory build" in err

    code, out, err = ragkit("memory", "build", "--store", store, "--pipeline", str(pipe), "--json")
    assert code == 0, err
    built = json.loads(out)
    assert built["windows"] == 1 and built["tokens"] > 100 and built["kind"] == "kv"
    code, out, _ = ragkit("memory", "info", "--store", store, "--json")
    info = json.loads(out)
    assert info["stale"] is False and info["model"] == "smollm2-135m-instruct"
    assert len(info["model_sha256"]) == 64

    # `ragkit index` leaves the memory alone; the memory is then reported stale, never used
    assert ragkit("index", str(later), "--store", store, "-q")[0] == 0
    info = json.loads(ragkit("memory", "info", "--store", store, "--json")[1])
    assert info["stale"] is True and info["changes"]["added"] == 1
    code, _, err = ragkit("query", "Which planet has the strongest winds?", "--store", store,
                          "--pipeline", str(pipe))  # fmt: skip
    assert code == 1 and "is stale" in err and "ragkit memory add PATH" in err
    assert err.count("\n") == 1 and "Traceback" not in err

    code, out, err = ragkit("memory", "add", str(later), "--store", store, "--json")
    assert code == 0, err
    added = json.loads(out)
    assert added["added"] == 1 and added["windows"] == 2  # the new file got its own window
    code, out, err = ragkit("query", "Which planet has the strongest winds?", "--store", store,
                            "--pipeline", str(pipe), "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    recall = result["trace"]["memory_recall"]
    assert recall["queries"][-1] == {
        "kind": "question",
        "text": "Which planet has the strongest winds?",
        "window": None,
    }
    assert recall["windows"] == 2 and recall["llm_calls"] == 4
    found = result["trace"]["clue_retriever"]["passages"]
    assert found and all(p["found_by"] for p in found)
    assert any("Neptune" in p["content"] for p in result["passages"])

    # a truncated state file is detected and the memory not loaded
    blob = Path(store) / "memory" / "default" / "window-000" / "state.bin"
    blob.write_bytes(blob.read_bytes()[:100])
    code, _, err = ragkit("query", "Which planet?", "--store", store, "--pipeline", str(pipe))
    assert code == 1 and "corrupt" in err and "not loaded" in err

    code, out, _ = ragkit("memory", "drop", "--store", store)
    assert code == 0 and "dropped memory 'default'" in out
    code, _, err = ragkit("memory", "drop", "--store", store)
    assert code == 1 and "no memory 'default'" in err


@pytest.mark.slow  # gists, three memory tasks and the reader: minutes on 2 cores
def test_shipped_lite_pipeline_builds_and_queries_a_gist_memory(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SAMPLE / "volcanoes.md", corpus)
    store = str(tmp_path / "store")
    small = ("--store", store, "--profile", "cpu-small")
    assert ragkit("index", str(corpus), *small, "-q")[0] == 0

    code, out, err = ragkit("memory", "build", *small, "--pipeline", "memorag_lite", "--json")
    assert code == 0, err
    built = json.loads(out)
    assert built["kind"] == "gist" and built["windows"] == 1
    question = "Which volcano buried Pompeii?"
    code, out, err = ragkit("query", question, *small, "--pipeline", "memorag_lite", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["trace"]["memory_recall"]["windows"] == 1
    assert result["trace"]["memory_recall"]["queries"][-1]["text"] == question
    assert result["passages"]

    # memorag.yaml asks for a kv memory: the gist memory is refused, with the command that rebuilds
    code, _, err = ragkit("query", question, *small, "--pipeline", "memorag")
    assert code == 1 and "'gist' memory" in err and "ragkit memory build" in err


def test_pooled_eval_builds_the_memory_once_before_the_questions(
    tmp_path: Path, mini_qa_file: Path
) -> None:
    """The pooled store is the eval's own: its memory is built before the first question (not
    charged to it), recorded in run.json, and reused by the next run over the same store."""
    pipe = tmp_path / "memorag_retrieve.yaml"
    pipe.write_text(PIPELINE)

    def run(out: str) -> dict:
        code, _, err = ragkit("eval", str(mini_qa_file), "--pipeline", str(pipe), "--mode",
                              "pooled", "--out", str(tmp_path / out), "--json")  # fmt: skip
        assert code == 0, err
        return json.loads((tmp_path / out / "run.json").read_text())["memories"]["memory_recall"]

    first = run("first")
    store = str(Path(first["directory"]).parents[1])
    assert ragkit("memory", "drop", "--store", store)[0] == 0  # start from no memory
    built = run("built")
    assert built["built"] is True and built["directory"] == first["directory"]
    assert built["kind"] == "kv" and built["windows"] == 1 and built["tokens"] > 10
    assert built["units"] == 2  # the two distinct passages of the pool
    reused = run("reused")
    assert reused["built"] is False and reused["tokens"] == built["tokens"]
    rows = [json.loads(line) for line in (tmp_path / "built" / "results.jsonl").open()]
    assert len(rows) == 2
    assert all(r["extra"]["trace"]["memory_recall"]["windows"] == 1 for r in rows)
