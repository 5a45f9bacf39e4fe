"""Benchmark corpus and queries: size, chunk length, determinism, fallback."""

from __future__ import annotations

import pytest

from ragkit.bench import corpus as corpus_mod
from ragkit.bench.corpus import bench_queries, build_bench_corpus


def test_corpus_size_ids_and_chunk_lengths() -> None:
    chunks = build_bench_corpus(600)
    assert len(chunks) == 600
    assert len({i for i, _ in chunks}) == 600
    lengths = [len(text.split()) for _, text in chunks]
    assert min(lengths) >= corpus_mod.MIN_WORDS and max(lengths) <= corpus_mod.MAX_WORDS
    assert build_bench_corpus(0) == []


def test_corpus_is_deterministic_and_seeded() -> None:
    assert build_bench_corpus(300, seed=1) == build_bench_corpus(300, seed=1)
    assert build_bench_corpus(300, seed=1) != build_bench_corpus(300, seed=2)
    # A smaller corpus is a prefix of a larger one with the same seed.
    assert build_bench_corpus(300, seed=1) == build_bench_corpus(400, seed=1)[:300]


def test_corpus_generates_variants_beyond_the_real_text() -> None:
    base = len(
        corpus_mod._chunk_paragraphs(corpus_mod._load_sources(corpus_mod.shared_data_dir())[0])
    )
    chunks = build_bench_corpus(base + 200)
    assert len(chunks) == base + 200
    variants = [text for _, text in chunks[base:]]
    lengths = [len(text.split()) for text in variants]
    assert min(lengths) >= corpus_mod.MIN_WORDS and max(lengths) <= corpus_mod.MAX_WORDS
    # Variants reuse real vocabulary but are not verbatim copies of their source chunk.
    originals = {text for _, text in chunks[:base]}
    assert sum(v in originals for v in variants) < len(variants) // 4
    assert chunks == build_bench_corpus(base + 200)


def test_queries_are_real_questions_and_deterministic() -> None:
    qs = bench_queries(50)
    assert len(qs) == 50 and all(isinstance(q, str) and q.strip() for q in qs)
    assert qs == bench_queries(50) and qs != bench_queries(50, seed=9)
    data_dir = corpus_mod.shared_data_dir()
    if data_dir is not None:  # all of them are dataset questions, not corpus sentences
        assert set(qs) <= set(corpus_mod._load_sources(data_dir)[1])


def test_fallback_without_shared_data_uses_pydoc_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_mod, "shared_data_dir", lambda: None)
    chunks = build_bench_corpus(2000)
    assert len(chunks) == 2000
    assert any("exception" in text.lower() for _, text in chunks[:200])
    assert len(bench_queries(30)) == 30
