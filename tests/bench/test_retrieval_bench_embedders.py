"""``ragkit bench retrieval``'s indexing rows: today's fp32 path and the int8 path, same texts."""

from __future__ import annotations

import pytest

from ragkit.bench.retrieval import EMBEDDERS, _index_and_hybrid, format_report


@pytest.mark.slow
def test_indexing_rows_compare_int8_with_fp32_on_the_same_texts() -> None:
    pytest.importorskip("onnxruntime")
    runs: list[dict] = []
    rows = {r["metric"]: r for r in _index_and_hybrid(40, 3, False, EMBEDDERS, runs)}
    assert rows["ragkit index (chunks/s)"]["baseline_name"].startswith("raw ST encode")
    assert rows["ragkit index minilm-int8 (chunks/s)"]["baseline_name"].startswith(
        "raw onnxruntime int8"
    )
    versus = rows["ragkit index minilm-int8 vs minilm (chunks/s)"]
    assert versus["baseline"] == rows["ragkit index (chunks/s)"]["ragkit"]
    assert versus["ratio"] == pytest.approx(versus["ragkit"] / versus["baseline"])
    assert "raw encoder minilm-int8 vs minilm (chunks/s)" in rows
    assert any(m.startswith("hybrid query p50 @40, minilm-int8") for m in rows)
    # every timed run says what ran, how fast and under which load
    assert [(r["run"], r["model"]) for r in runs] == [
        ("raw", "minilm"),
        ("raw", "minilm-int8"),
        ("index", "minilm"),
        ("index", "minilm-int8"),
    ]
    assert all(r["chunks_per_s"] > 0 and r["load_before"] >= 0 for r in runs)
    result = {"rows": [], "n_chunks": 1, "n_queries": 1, "n_oracle_queries": 1,
              "bm25s_input": "-", "bm25s_paths": {}, "embedding_runs": runs}  # fmt: skip
    assert "index minilm-int8 on " in format_report(result)
