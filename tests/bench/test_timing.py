"""The benches' one timing helper: what it times, what it returns, where progress goes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from ragkit.bench import timing
from ragkit.bench.timing import Stopwatch, progress_printer, timed


def _clock(monkeypatch: pytest.MonkeyPatch, ticks: list[float]) -> Iterator[float]:
    """Make the helper's clock read ``ticks`` in order (only inside ragkit.bench.timing)."""
    it = iter(ticks)
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: next(it)))
    return it


def test_timed_returns_the_elapsed_seconds_and_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _clock(monkeypatch, [10.0, 12.5])
    seconds, out = timed(lambda: calls.append(1) or "done")
    assert (seconds, out, calls) == (2.5, "done", [1])


def test_stopwatch_reads_inside_the_block_and_keeps_the_total_on_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clock(monkeypatch, [5.0, 6.0, 7.5])
    with pytest.raises(RuntimeError), Stopwatch() as clock:
        assert clock.elapsed() == 1.0
        raise RuntimeError("the block failed")
    assert clock.seconds == 2.5


def test_the_real_clock_measures_wall_time() -> None:
    seconds, _ = timed(lambda: time.sleep(0.02))
    assert 0.015 <= seconds < 5.0
    with Stopwatch() as clock:
        time.sleep(0.02)
    assert 0.015 <= clock.seconds < 5.0


def test_progress_goes_to_stderr_only_when_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    progress_printer("[bench x] ", True)("step 1")
    progress_printer("[bench x] ", False)("step 2")
    out, err = capsys.readouterr()
    assert out == "" and err == "[bench x] step 1\n"
