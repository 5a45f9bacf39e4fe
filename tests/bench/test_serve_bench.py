"""``ragkit bench serve``: percentiles, the table and its goals; a real (small) run is slow-marked."""

from __future__ import annotations

import pytest

from ragkit.bench.serve_bench import _percentiles, _rows, format_table, run_serve_bench


def test_percentiles_are_nearest_rank() -> None:
    sample = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p = _percentiles(sample)
    assert p["p50"] == pytest.approx(0.0505)
    assert p["p95"] == pytest.approx(0.095) and p["p99"] == pytest.approx(0.099)


def _run(p50: float, p95: float, clients: int, rps: float, errors: int = 0) -> dict:
    return {"clients": clients, "requests": 100, "errors": errors, "requests_per_second": rps,
            "p50": p50, "p95": p95, "p99": p95 * 1.1, "mean": p50}  # fmt: skip


def test_table_puts_each_figure_next_to_its_baseline_and_states_the_goals() -> None:
    result = {
        "settings": {
            "requests": 100,
            "clients": 8,
            "rag_clients": 0,
            "rag_requests": 0,
            "top_k": 5,
        },
        "machine": "test machine",
        "server_startup_seconds": 3.0,
        "rss_mb": {"start": 500.0, "end": 510.0},
        "runs": {
            "retrieve_1": _run(0.011, 0.02, 1, 90.0),
            "retrieve_n": _run(0.05, 0.04, 8, 160.0),
        },
        "in_process": {"retrieve": {**_run(0.010, 0.02, 1, 100.0)}},
        "ask_per_call": None,
    }
    result["rows"] = _rows(result)
    result["goals"] = {"overhead_p50": 1.1, "overhead_goal_met": True, "tail_ratio": 40 / 11,
                       "tail_goal_met": True, "errors": 0}  # fmt: skip
    assert result["rows"][0]["ratio"] == pytest.approx(1.1)
    text = format_table(result)
    assert "retrieve p50, 1 client" in text and "11.0 ms" in text and "10.0 ms (in-process)" in text
    assert "retrieve p95, 8 clients" in text and "errors (of 200 requests)" in text
    assert "goal <= 1.10x: met" in text and "goal <= 4x: met" in text


@pytest.mark.slow
def test_a_small_run_has_no_errors_and_flat_memory() -> None:
    result = run_serve_bench(
        profile="cpu-small", requests=20, clients=4, rag_clients=0, ask_calls=1
    )
    assert result["goals"]["errors"] == 0
    assert result["runs"]["retrieve_n"]["clients"] == 4
    assert result["rss_mb"]["end"] < 1.5 * result["rss_mb"]["start"]
