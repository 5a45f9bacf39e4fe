"""Adaptive draft length: draft only where measured acceptance times cost says it pays.

On a CPU verifying a block is not free (issue 10: 8 tokens cost ~4x one token for
Qwen2.5-Coder-1.5B through llama.cpp), so a drafter that is rarely right makes decoding slower.
:class:`AdaptiveGamma` measures both regimes in the run itself: tokens per second of
speculative steps and of plain steps (exponential moving averages of the observed wall time),
grows gamma after a fully accepted draft and shrinks it after an early rejection, and turns
drafting off for ``off_steps`` plain steps when speculation is measured slower than plain
decoding, then probes again (the text may have become more predictable, e.g. quoting). Each
consecutive failed probe doubles the plain stretch (up to ``max_backoff`` times
``off_steps``), so a drafter that never pays costs a vanishing share of the run. With
``learn_across_calls`` a generator keeps one policy for all its answers
(:meth:`AdaptiveGamma.begin_answer` between them), so the backoff earned on one answer is not
paid for again by probing at the start of the next; by default each answer starts fresh,
because carrying the backoff also skips the stretches where drafting would pay (README).
"""

from __future__ import annotations

from dataclasses import dataclass

from ragkit.errors import InvalidParameter

__all__ = ["AdaptiveGamma"]


@dataclass
class AdaptiveGamma:
    """Draft-length controller fed with each step's outcome by the speculative loop.

    Attributes:
        gamma_max: Upper bound (the configured gamma).
        gamma_min: Lower bound while drafting is on.
        min_samples: Speculative steps measured before judging whether drafting pays.
        off_steps: Plain steps taken after drafting was measured not to pay.
        smoothing: Weight of the newest observation in the moving averages.
        margin: Drafting stays on while its rate is at least ``(1 - margin)`` of plain's.
        max_backoff: Cap of the doubling plain stretch, in units of ``off_steps``.
        start: First draft length (small: a probe that fails should cost little; it
            grows by 2 per fully accepted draft). ``None``: ``min(4, gamma_max)``.
    """

    gamma_max: int = 10
    gamma_min: int = 1
    min_samples: int = 3
    off_steps: int = 16
    smoothing: float = 0.3
    margin: float = 0.0
    max_backoff: int = 16
    start: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.gamma_min <= self.gamma_max:
            raise InvalidParameter(
                "gamma_min",
                f"need 1 <= gamma_min <= gamma_max, got {self.gamma_min} and {self.gamma_max}",
            )
        first = min(4, self.gamma_max) if self.start is None else self.start
        self._first = max(self.gamma_min, min(first, self.gamma_max))
        self.current = self._first
        self.spec_rate: float | None = None
        self.plain_rate: float | None = None
        self.spec_samples = 0
        self.off = 0
        self.turned_off = 0
        self._stretch = self.off_steps
        self.steps_seen = 0

    def gamma(self) -> int:
        """Draft length for the next step (0 while drafting is off)."""
        return 0 if self.off > 0 else self.current

    def begin_answer(self) -> None:
        """A new generation on the same policy: keep the backoff, re-measure drafting.

        What carries over is what describes the machine: the plain decoding rate, a plain
        stretch still to run and the doubled backoff. What describes the last answer's text
        (how often its drafts were accepted: the speculative rate and the grown draft length)
        is dropped, because a stale high rate from an answer that quoted the document would
        keep drafting on in one that does not until the average decays.
        """
        self.spec_rate = None
        self.spec_samples = 0
        self.current = self._first

    def state(self) -> dict[str, float | int | None]:
        """What the policy has learned so far, for traces (rates in tokens per second)."""
        return {
            "steps_seen": self.steps_seen,
            "next_gamma": self.gamma(),
            "plain_steps_left": self.off,
            "times_turned_off": self.turned_off,
            "speculative_rate": None if self.spec_rate is None else round(self.spec_rate, 3),
            "plain_rate": None if self.plain_rate is None else round(self.plain_rate, 3),
        }

    def _ema(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self.smoothing) * old + self.smoothing * new

    def record(self, drafted: int, emitted: int, seconds: float) -> None:
        """One step: how many tokens were drafted and produced, and its wall time."""
        rate = emitted / max(seconds, 1e-9)
        self.steps_seen += 1
        if drafted == 0:
            self.plain_rate = self._ema(self.plain_rate, rate)
            self.off = max(0, self.off - 1)
            return
        self.spec_rate = self._ema(self.spec_rate, rate)
        self.spec_samples += 1
        accepted = emitted - 1
        if accepted >= drafted:
            self.current = min(self.gamma_max, self.current + 2)
        else:
            self.current = max(self.gamma_min, min(self.current - 1, accepted + 1))
        if self.spec_samples < self.min_samples:
            return
        if self.plain_rate is None:
            self.off = 1  # one plain step to measure what drafting competes with
        elif self.spec_rate < (1 - self.margin) * self.plain_rate:
            self.off = self._stretch
            self._stretch = min(self._stretch * 2, self.off_steps * self.max_backoff)
            self.turned_off += 1
            self.spec_samples = 0
            self.spec_rate = None
        else:
            self._stretch = self.off_steps  # drafting pays again: probe promptly next time
