"""`ragkit bench store`: both engines measured on the same data, recall checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.bench.store_bench import exact_top10, parse_sizes, run_store_bench, synthetic_vectors
from ragkit.errors import InvalidInputError

pytest.importorskip("qdrant_edge")


def test_synthetic_vectors_are_unit_and_deterministic() -> None:
    a, qa = synthetic_vectors(2000, 5)
    b, _ = synthetic_vectors(2000, 5)
    assert a.shape == (2000, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5) and np.array_equal(a, b)
    top = exact_top10(a, qa)
    assert all(len(t) == 10 for t in top)
    assert (a[top[0][0]] @ qa[0]) == pytest.approx(float((a @ qa[0]).max()))


def test_small_run_has_every_row_and_exact_local_mode() -> None:
    result = run_store_bench([300], queries=12, progress=False)
    runs = {r["engine"]: r for r in result["runs"]}
    assert runs["local"]["recall_at_10"] == 1.0  # local mode is exact
    assert runs["edge"]["recall_at_10"] >= 0.98
    assert runs["edge"]["same_hybrid_top5_as_local"] >= 0.9
    assert [s["hnsw_ef"] for s in runs["edge"]["hnsw_ef_sweep"]] == [64, 128, 256, 512, 1024]
    metrics = [r["metric"] for r in result["rows"]]
    for kind in ("dense", "hybrid"):
        for p in ("p50", "p95"):
            assert f"store {kind} query {p} edge @300 (s)" in metrics
    assert "store index edge @300 (chunks/s)" in metrics
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["store index edge @300 (chunks/s)"]["baseline"] == runs["local"]["index_rate"]


def test_local_mode_is_skipped_above_local_max() -> None:
    result = run_store_bench([300], queries=3, local_max=200, progress=False)
    assert [r["engine"] for r in result["runs"]] == ["edge"]
    assert all(r["baseline"] is None for r in result["rows"])


def test_bad_sizes_and_engines_are_one_line_errors() -> None:
    assert parse_sizes("10k, 100_000,1m") == [10_000, 100_000, 1_000_000]
    assert parse_sizes("") == []
    with pytest.raises(InvalidInputError, match="'ten'"):
        parse_sizes("ten")
    with pytest.raises(InvalidInputError, match="--engines"):
        run_store_bench([300], engines=["faiss"], progress=False)
