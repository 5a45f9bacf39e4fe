"""`ragkit bench bm25`: every baseline path measured, agreement checked, mismatches fail the run."""

from __future__ import annotations

import pytest

from ragkit.bench.bm25_bench import BM25BenchError, format_table, run_bm25_bench
from ragkit.errors import RagkitError
from ragkit.stores import bm25_kernel
from ragkit.stores.bm25 import BM25Index


@pytest.mark.parametrize("kernel", ["auto", "numba"])
def test_bm25_bench_measures_every_path_and_checks_every_update_path(kernel: str) -> None:
    if kernel == "numba" and not bm25_kernel.available():
        pytest.skip("numba is not installed")
    result = run_bm25_bench(n_chunks=1500, n_queries=30, n_oracle=20, progress=False, kernel=kernel)
    rows = {(r["metric"], r["baseline_name"]): r for r in result["rows"]}
    assert result["n_oracle_queries"] == 20
    # 1500 chunks is below KERNEL_MIN_DOCS: "auto" runs numpy there
    used = "numba" if kernel == "numba" else "numpy"
    assert result["ragkit_kernel"] == used
    kernels = ["numba", "numpy"] if bm25_kernel.available() else ["numpy"]
    paths_checked = [
        "fresh index",
        "after add + replace + delete",
        "after save + load",
        "after compact (merge)",
    ]
    assert set(result["agreement"]) == {f"{p}, {k} kernel" for p in paths_checked for k in kernels}
    assert all(v == 20 for v in result["agreement"].values())
    paths = result["bm25s_paths"]
    assert {"numpy get_scores+argpartition", "numpy retrieve([q])"} <= set(paths)
    assert any("n_threads=2" in p for p in paths) and all(v > 0 for v in paths.values())
    single = rows[
        (
            f"single-query throughput, {used} kernel (q/s)",
            "bm25s " + max((k for k in paths if "batch" not in k), key=paths.__getitem__),
        )
    ]
    assert single["baseline"] == max(v for k, v in paths.items() if "batch" not in k)
    best_numpy = max(
        (k for k in paths if k.startswith("numpy") and "batch" not in k), key=paths.__getitem__
    )
    numpy_row = rows[("single-query throughput, numpy kernel (q/s)", f"bm25s {best_numpy}")]
    assert numpy_row["baseline"] == paths[best_numpy]
    assert ("single-query throughput (q/s)", "rank-bm25") in rows
    batched = next(r for (m, _), r in rows.items() if m.startswith("batched throughput"))
    assert batched["baseline"] == max(v for k, v in paths.items() if "batch" in k)
    table = format_table(result)
    assert "batched throughput" in table and "after save + load" in table


@pytest.mark.parametrize("broken", ["single", "batched"])
def test_bm25_bench_fails_on_any_disagreement(broken: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if broken == "single":
        real = BM25Index.search_tokens

        def off_by_one(self, tokens, top_k=10):  # drop the best hit: a wrong top-10
            return real(self, tokens, top_k + 1)[1:]

        monkeypatch.setattr(BM25Index, "search_tokens", off_by_one)
    else:  # only batches of several queries go wrong: the batched answers are checked too
        real_many = BM25Index.search_tokens_many

        def off_by_one_many(self, token_lists, top_k=10):
            if len(token_lists) == 1:
                return real_many(self, token_lists, top_k)
            return [r[1:] for r in real_many(self, token_lists, top_k + 1)]

        monkeypatch.setattr(BM25Index, "search_tokens_many", off_by_one_many)
    # the same text everywhere (pydoc topics): every query then has a top hit to drop
    monkeypatch.setattr("ragkit.bench.corpus.shared_data_dir", lambda: None)
    with pytest.raises(BM25BenchError, match="differs from rank-bm25's on 20 of 20 queries"):
        run_bm25_bench(n_chunks=800, n_queries=20, n_oracle=20, progress=False)


def test_bm25_bench_refuses_too_few_oracle_queries() -> None:
    with pytest.raises(RagkitError, match="oracle-queries must be >= 20"):
        run_bm25_bench(n_chunks=500, n_queries=10, n_oracle=5, progress=False)


def test_cli_bench_bm25_exits_non_zero_with_one_line() -> None:
    from cli_run import runner

    from ragkit.cli import app

    result = runner.invoke(app, ["bench", "bm25", "--chunks", "500", "--oracle-queries", "5"])
    assert result.exit_code != 0
    assert "oracle-queries must be >= 20" in result.output


def test_fast_paths_get_many_interleaved_rounds_slow_ones_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import ragkit.bench.bm25_bench as bench

    monkeypatch.setattr(bench, "_FAST_S", 0.005)
    calls = {"fast": 0, "slow": 0}

    def fast(m: int) -> None:
        calls["fast"] += 1

    def slow(m: int) -> None:
        calls["slow"] += 1
        time.sleep(0.01)

    rates = bench._best_rates({"fast": fast, "slow": slow}, 20)
    assert calls == {"fast": 2 * bench._FAST_ROUNDS, "slow": 2 * bench._ROUNDS}  # warm-up + timed
    assert rates["fast"] > rates["slow"] > 0
