"""`ragkit bench bm25`: every baseline path measured, agreement checked, mismatches fail the run."""

from __future__ import annotations

import pytest

from ragkit.bench.bm25_bench import BM25BenchError, format_table, run_bm25_bench
from ragkit.errors import RagkitError
from ragkit.stores.bm25 import BM25Index


def test_bm25_bench_measures_every_path_and_checks_every_update_path() -> None:
    result = run_bm25_bench(n_chunks=1500, n_queries=30, n_oracle=20, progress=False)
    rows = {(r["metric"], r["baseline_name"]): r for r in result["rows"]}
    assert result["n_oracle_queries"] == 20
    assert set(result["agreement"]) == {
        "fresh index",
        "after add + replace + delete",
        "after save + load",
        "after compact (merge)",
    }
    assert all(v == 20 for v in result["agreement"].values())
    paths = result["bm25s_paths"]
    assert {"numpy get_scores+argpartition", "numpy retrieve([q])"} <= set(paths)
    assert any("n_threads=2" in p for p in paths) and all(v > 0 for v in paths.values())
    single = [r for (m, _), r in rows.items() if m == "single-query throughput (q/s)"]
    best_single = max(v for k, v in paths.items() if "batch" not in k)
    bm25s_row = next(r for r in single if r["baseline_name"].startswith("bm25s"))
    assert bm25s_row["baseline"] == best_single  # the baseline is bm25s's fastest path
    assert any(r["baseline_name"] == "rank-bm25" for r in single)
    batched = next(r for (m, _), r in rows.items() if m == "batched throughput (q/s)")
    assert batched["baseline"] == max(v for k, v in paths.items() if "batch" in k)
    table = format_table(result)
    assert "batched throughput" in table and "after save + load" in table


def test_bm25_bench_fails_on_any_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    real = BM25Index.search_tokens

    def off_by_one(self, tokens, top_k=10):  # drop the best hit: a wrong top-10
        return real(self, tokens, top_k + 1)[1:]

    monkeypatch.setattr(BM25Index, "search_tokens", off_by_one)
    # the same text everywhere (pydoc topics): every query then has a top hit to drop
    monkeypatch.setattr("ragkit.bench.corpus.shared_data_dir", lambda: None)
    with pytest.raises(BM25BenchError, match="differs from rank-bm25's on 20 of 20 queries"):
        run_bm25_bench(n_chunks=800, n_queries=20, n_oracle=20, progress=False)


def test_bm25_bench_refuses_too_few_oracle_queries() -> None:
    with pytest.raises(RagkitError, match="oracle-queries must be >= 20"):
        run_bm25_bench(n_chunks=500, n_queries=10, n_oracle=5, progress=False)


def test_cli_bench_bm25_exits_non_zero_with_one_line() -> None:
    from typer.testing import CliRunner

    from ragkit.cli import app

    result = CliRunner().invoke(app, ["bench", "bm25", "--chunks", "500", "--oracle-queries", "5"])
    assert result.exit_code != 0
    assert "oracle-queries must be >= 20" in result.output
