"""The library calls behind ``ragkit index``, ``repair`` and ``query``, called directly.

Real parts throughout: the packaged MiniLM embedder, an embedded store in a temporary folder,
the shipped ``retrieve`` and ``rag`` pipelines. Bad input raises the same RagkitError (message
and exit status) that the CLI prints as its one ``error:`` line.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ragkit
from ragkit.config import ConfigError, EmbeddedStore
from ragkit.errors import InvalidInputError
from ragkit.resources import PipelineNotFoundError
from ragkit.stores.store import StoreError, open_store, release_store

SAMPLE = Path(__file__).resolve().parent.parent / "ragkit" / "data" / "sample"
WINDS = "Which planet has the strongest winds?"


@pytest.fixture
def indexed(sample_store: Path) -> Path:
    """The session's store of the sample corpus, for the read-only tests of this module."""
    return sample_store


def sources(result: Any) -> list[str]:
    return [d.meta["source"] for d in result.ranked]


def test_index_delete_ask_and_repair(sample_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = ragkit.index_files(sample_corpus, store=str(store), profile="cpu-small")
    assert isinstance(result, ragkit.IndexResult) and result.errors == []
    report = result.report
    assert report is not None and report.added == 5 and report.chunks_total > 5
    assert (store / "store.json").exists()

    hits = ragkit.ask(WINDS, pipeline="retrieve", store=str(store), top_k=3)
    assert isinstance(hits, ragkit.QueryResult)
    assert hits.answer is None and len(hits.ranked) == 3 and hits.warnings == []
    assert hits.ranked[0].meta["source"].endswith("solar_system.md")
    assert "Neptune" in (hits.ranked[0].content or "")

    again = ragkit.index_files([sample_corpus], store=str(store), profile="cpu-small")
    assert again.report is not None
    assert again.report.unchanged == 5 and again.report.chunks_written == 0

    volcanoes = sample_corpus / "volcanoes.md"
    assert ragkit.delete_files(volcanoes, store=str(store), profile="cpu-small") == 1
    assert volcanoes.exists()  # only the index forgets it
    left = ragkit.ask("Pompeii Vesuvius volcano", pipeline="retrieve", store=str(store), top_k=20)
    assert left.ranked and not any(s.endswith("volcanoes.md") for s in sources(left))
    assert ragkit.delete_files([volcanoes], store=str(store), profile="cpu-small") == 0

    # BM25 loses a file while Qdrant keeps it: ask still answers, and says how to repair
    solar = str((sample_corpus / "solar_system.md").resolve())
    st = open_store(EmbeddedStore(path=str(store)))
    try:
        st._bm25.delete_source(solar)
        st.commit()
    finally:
        release_store(st)
    seen: list[str] = []
    damaged = ragkit.ask(WINDS, pipeline="retrieve", store=str(store), on_warning=seen.append)
    assert damaged.warnings and seen == damaged.warnings
    assert all(w.startswith("store is damaged: ") for w in damaged.warnings)
    assert f"run `ragkit repair --store {store.resolve()}`" in damaged.warnings[0]

    fixed = ragkit.repair_store(store=str(store), profile="cpu-small")
    assert isinstance(fixed, ragkit.RepairResult)
    assert fixed.ok and fixed.problems_left == [] and fixed.warnings == []
    assert fixed.as_dict()["problems_left"] == []
    healthy = ragkit.ask(WINDS, pipeline="retrieve", store=str(store), top_k=3)
    assert healthy.warnings == [] and sources(healthy)[0] == solar


def test_repair_reindexes_lost_chunks_and_drops_missing_files(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    ragkit.index_files(sample_corpus, store=str(store), profile="cpu-small")
    shutil.rmtree(store / "edge")  # the vector half is lost (Qdrant Edge: the default engine)
    (sample_corpus / "faq.jsonl").unlink()
    result = ragkit.repair_store(str(store), "cpu-small")
    assert result.ok and result.problems_left == []
    assert result.report.updated == 4 and result.report.removed == 1
    assert result.report.chunks_total > 0
    hits = ragkit.ask(WINDS, pipeline="retrieve", store=str(store), top_k=3)
    assert hits.ranked[0].meta["source"].endswith("solar_system.md")


def test_unreadable_files_are_reported_and_good_ones_indexed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary" * 100)
    (corpus / "tulips.txt").write_text("Tulip bulbs were traded in Holland in 1637.\n")
    store = tmp_path / "store"
    result = ragkit.index_files(
        [corpus, tmp_path / "missing"], store=str(store), profile="cpu-small"
    )
    assert result.report is not None and result.report.chunks_written >= 1
    joined = "\n".join(result.errors)
    assert "blob.txt: binary file" in joined and "missing: no such file or directory" in joined
    assert result.as_dict()["errors"] == result.errors
    hits = ragkit.ask("tulip bulbs Holland", pipeline="retrieve", store=str(store), top_k=1)
    assert hits.ranked[0].meta["source"].endswith("tulips.txt")


def test_ask_with_the_small_local_reader_streams_and_cites(indexed: Path) -> None:
    chunks: list[str] = []
    result = ragkit.ask(
        WINDS,
        pipeline="rag",
        store=str(indexed),
        profile="cpu-small",
        top_k=3,
        on_chunk=lambda chunk: chunks.append(chunk.content or ""),
    )
    assert result.answer and "".join(chunks).strip()
    assert any(d.meta["source"].endswith("solar_system.md") for d in result.sources)
    assert result.warnings == []


def _cases(tmp_path: Path, indexed: Path) -> list[tuple[Callable[[], Any], list[str], type]]:
    """(library call, the same request as CLI arguments, the error class both report)."""
    missing = tmp_path / "no-store"
    doc = tmp_path / "doc.txt"
    doc.write_text("some text")
    return [
        (lambda: ragkit.index_files([]), ["index"], InvalidInputError),
        (
            lambda: ragkit.index_files(SAMPLE, store=":memory:"),
            ["index", str(SAMPLE), "--store", ":memory:"],
            InvalidInputError,
        ),
        (
            lambda: ragkit.index_files(SAMPLE, store=str(indexed), indexer="nope"),
            ["index", str(SAMPLE), "--store", str(indexed), "--indexer", "nope"],
            PipelineNotFoundError,
        ),
        (lambda: ragkit.ask("  "), ["query", "  "], InvalidInputError),
        (
            lambda: ragkit.ask("x", store=str(missing)),
            ["query", "x", "--store", str(missing)],
            StoreError,
        ),
        (
            lambda: ragkit.repair_store(store=str(missing)),
            ["repair", "--store", str(missing)],
            StoreError,
        ),
        (
            lambda: ragkit.ask("x", pipeline="nope", store=str(indexed)),
            ["query", "x", "--pipeline", "nope", "--store", str(indexed)],
            PipelineNotFoundError,
        ),
        (lambda: ragkit.ask("x", profile="nope"), ["query", "x", "--profile", "nope"], ConfigError),
        (
            lambda: ragkit.ask("q?", pipeline="rapid"),
            ["query", "q?", "--pipeline", "rapid"],
            InvalidInputError,
        ),
        (
            lambda: ragkit.ask("q?", pipeline="rapid", document=tmp_path / "gone.txt"),
            ["query", "q?", "--pipeline", "rapid", "--document", str(tmp_path / "gone.txt")],
            InvalidInputError,
        ),
        (
            lambda: ragkit.ask("q?", pipeline="retrieve", document=doc, store=str(indexed)),
            ["query", "q?", "--pipeline", "retrieve", "--document", str(doc)],
            InvalidInputError,
        ),
    ]


def test_bad_input_raises_the_error_the_cli_prints(
    tmp_path: Path, indexed: Path, errors_match_cli: Callable[..., None]
) -> None:
    errors_match_cli(_cases(tmp_path, indexed))
    assert not (tmp_path / "no-store").exists()  # neither call created the missing store


def test_messages_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^give PATH\.\.\. to index or --delete PATH$"):
        ragkit.index_files(None, delete=[])
    with pytest.raises(InvalidInputError, match="^the question is empty$") as info:
        ragkit.ask("")
    assert info.value.exit_code == 2
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreError) as info:
        ragkit.ask("x", store=str(missing), pipeline="retrieve")
    assert str(info.value) == (
        f"no ragkit store at {missing}; run `ragkit index PATH --store {missing}` first"
    )
    assert info.value.exit_code == 1
    with pytest.raises(PipelineNotFoundError, match=r"unknown --pipeline 'nope'.*retrieve"):
        ragkit.ask("x", pipeline="nope")
    with pytest.raises(InvalidInputError, match="^the document is empty$"):
        ragkit.ask("q?", pipeline="rapid", document="   ")
    with pytest.raises(InvalidInputError, match="top_k must be at least 1"):
        ragkit.ask("q?", top_k=0)
