"""Issue 27: the reader never answers from nothing, cites only passages it was given, and
``--top-k`` reaches the retrievers (or says why fewer passages came back); real CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from cli_run import ragkit, reader_profile
from haystack.dataclasses import StreamingChunk

from ragkit.answering.run import _CitationStream, remove_uncited
from ragkit.testing import OpenAICompatServer

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
NONSENSE = "xyzzy plugh frobozz?"


def with_metadata(tmp_path: Path, name: str, metadata: dict) -> Path:
    data = yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())
    data["metadata"] = metadata
    path = tmp_path / f"{name}-{'-'.join(map(str, metadata.values()))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 one-chunk files (more than the shipped retrievers' 20 + 20); 'comet' is in 3 of them."""
    root = tmp_path_factory.mktemp("passages")
    docs = root / "docs"
    docs.mkdir()
    for i in range(50):
        extra = " A comet passed by." if i % 17 == 0 else ""
        (docs / f"note{i:02d}.txt").write_text(
            f"Note {i}: the village of Place{i} grows crop number {i}.{extra}"
        )
    (docs / "cloves.txt").write_text("Zanzibar cloves: the clove harvest begins in October.")
    path = root / "store"
    code, _, err = ragkit("index", str(docs), "--store", str(path), "-q")
    assert code == 0, err
    return path


# ------------------------------------------------------------ item 5: no passages, no reader


def test_no_retrieved_passages_never_asks_the_reader(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    with OpenAICompatServer(lambda messages: "Paris [2]") as server:
        profile = str(reader_profile(tmp_path, server.base_url))
        common = ("query", NONSENSE, "--store", str(store), "--profile", profile)
        code, out, err = ragkit(*common, "--pipeline", "rag_bm25", "--json")
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] is None and data["reader_skipped"] is True
        assert data["passages"] == [] and data["sources"] == [] and data["no_passages"] is True
        code, out, err = ragkit(*common, "--pipeline", "rag_bm25")
        assert code == 0, err
        assert "no passages found" in out and "the reader was not asked" in out
        assert "answer" not in out and "Paris" not in out
        assert server.requests == []  # the reader was never asked

        # the pipeline may ask the reader anyway: its prompt words the no-evidence case; a
        # citation of a passage it was not given is removed and reported
        reading = str(with_metadata(tmp_path, "rag_bm25", {"no_passages": "read"}))
        code, out, err = ragkit(*common, "--pipeline", reading, "--json")
        assert code == 0, err
        data = json.loads(out)
        assert len(server.requests) == 1
        assert data["answer"] == "Paris" and data["removed_citations"] == [2]
        assert data["reader_skipped"] is False
        assert "cited [2] but the reader was given no passages" in err

    bad = str(with_metadata(tmp_path, "rag_bm25", {"no_passages": "maybe"}))
    code, out, err = ragkit(*common, "--pipeline", bad)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: no_passages")
    assert "skip or read" in err


def test_citation_of_a_passage_not_given_is_removed_from_the_streamed_answer(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    question = "When does the Zanzibar clove harvest begin?"
    with OpenAICompatServer(lambda messages: "In October [9] [1]") as server:
        profile = str(reader_profile(tmp_path, server.base_url))
        common = ("query", question, "--store", str(store), "--profile", profile)
        common += ("--pipeline", "rag_bm25", "--top-k", "1")
        code, out, err = ragkit(*common)  # streamed
        assert code == 0, err
        assert server.requests[-1]["stream"] is True
        assert out.startswith("answer: In October [1]\n") and "[9]" not in out
        assert "warning: the answer cited [9] but the reader was given 1 passage;" in err
        code, out, err = ragkit(*common, "--json")
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] == "In October [1]" and data["removed_citations"] == [9]
        assert [s["rank"] for s in data["sources"]] == [1]


def test_remove_uncited_keeps_given_passages_only() -> None:
    assert remove_uncited("Paris [2].", 1) == ("Paris.", [2])
    assert remove_uncited("Paris [1].", 1) == ("Paris [1].", [])
    assert remove_uncited("Paris [1, 3] and [0][1]", 2) == ("Paris [1] and [1]", [3, 0])
    assert remove_uncited("Paris [5][1]", 2) == ("Paris [1]", [5])
    assert remove_uncited("x [1]", 0) == ("x", [1])


@pytest.mark.parametrize("given", [0, 1, 3])
def test_streamed_answer_equals_the_cleaned_answer_however_it_is_split(given: int) -> None:
    text = "Neptune [2] has winds [1, 4] of 2100 km/h [3]. [1][5]  see [9][2] end [7"
    rng = random.Random(given)
    for _ in range(100):
        pieces: list[str] = []
        stream = _CitationStream(lambda c, out=pieces: out.append(c.content), lambda: given)
        i = 0
        while i < len(text):
            j = i + rng.randint(1, 5)
            stream(StreamingChunk(content=text[i:j]))
            i = j
        stream.flush()
        assert "".join(pieces) == remove_uncited(text, given)[0]


# ------------------------------------------------------------ item 11: --top-k reaches retrieval


def test_top_k_reaches_the_retrievers_capped_by_the_store(store: Path) -> None:
    code, out, err = ragkit(
        "query", "village crop", "--store", str(store), "--pipeline", "retrieve",
        "--top-k", "100000", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert len(data["passages"]) == 51  # every chunk, not the retrievers' 20 + 20
    assert data["top_k_shortfall"] == {
        "requested": 100000,
        "returned": 51,
        "store_chunks": 51,
        "reason": "the store holds only 51 chunks",
    }
    assert "warning: asked for 100000 passages, got 51: the store holds only 51 chunks" in err

    code, out, err = ragkit(
        "query", "village crop", "--store", str(store), "--pipeline", "retrieve", "--top-k", "30"
    )
    assert code == 0 and "warning" not in err, err
    assert out.count("\n    ") == 30  # thirty passages, each with its snippet line


def test_fewer_matching_passages_than_top_k_are_explained(store: Path, tmp_path: Path) -> None:
    bm25 = tmp_path / "bm25.yaml"
    bm25.write_text(
        "components:\n  bm25:\n    type: ragkit.retrieval.components.BM25Retriever\n"
        "    init_parameters: {top_k: 2}\n"
    )
    code, out, err = ragkit(
        "query", "comet", "--store", str(store), "--pipeline", str(bm25), "--top-k", "10", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert len(data["passages"]) == 3
    assert data["top_k_shortfall"]["reason"] == (
        "retrieval found only 3 matching passages among the store's 51 chunks"
    )
    assert "warning: asked for 10 passages, got 3: retrieval found only 3" in err
    code, out, err = ragkit(
        "query", "comet", "--store", str(store), "--pipeline", str(bm25), "--json"
    )
    assert code == 0 and err == "", err
    assert len(json.loads(out)["passages"]) == 2 and json.loads(out)["top_k_shortfall"] is None
