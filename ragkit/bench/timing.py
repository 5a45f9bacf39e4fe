"""One wall-clock timing helper for every benchmark, so they all time the same way.

There is no best-of-N helper on purpose: every repeated measurement in the benches alternates
ragkit and its baseline run by run (so load elsewhere hits both alike) and keeps each side's
best, which a per-function repeat loop cannot express.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

__all__ = ["Stopwatch", "progress_printer", "timed"]

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once; the wall time in seconds and its result.

    Args:
        fn: What to time (a closure over its arguments).

    Returns:
        ``(seconds, result)``.
    """
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


class Stopwatch:
    """Context manager timing its block: ``with Stopwatch() as sw: ...`` then ``sw.seconds``.

    For blocks that are not one call (several statements, a loop with side effects), where a
    ``timed`` closure would read worse. ``sw.elapsed()`` reads the time so far inside the block.
    """

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def elapsed(self) -> float:
        """Seconds since the block started."""
        return time.perf_counter() - self.start

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = self.elapsed()


def progress_printer(prefix: str, enabled: bool) -> Callable[[str], None]:
    """A ``say(message)`` for a bench's phases: ``prefix message`` on stderr, or nothing.

    Progress goes to stderr so ``--json`` output on stdout stays machine-readable.
    """

    def say(message: str) -> None:
        if enabled:
            print(f"{prefix}{message}", file=sys.stderr, flush=True)

    return say
