"""Hard negatives (Jin et al., ICLR 2025): passages the retriever ranks high but a scorer rates low.

Pure code (no Haystack, no models). :func:`plan_order` turns retriever ranks plus relevance
scores into a *priority* list (best first) in which hard negatives come last, or are dropped;
laying that list out with the edge-placement rule then puts the demoted passages in the middle
of the prompt, where a long-context reader attends least.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ragkit.errors import InvalidParameter, check_count, clip

__all__ = ["HardNegativePolicy", "Treatment", "edge_positions", "plan_order"]


@dataclass(frozen=True)
class HardNegativePolicy:
    """When a passage counts as a hard negative and what happens to it.

    Attributes:
        demote_below: Relevance below this marks a hard negative, which is demoted to the
            middle. None disables hard-negative handling. The scale is the scorer's: P("yes")
            in [0, 1] for the LLM scorer, cosine in [-1, 1] for embeddings, logits for
            cross-encoders.
        drop_below: Relevance below this drops a hard negative instead (must not exceed
            ``demote_below``); None never drops.
        top_ranks: Only passages the retriever ranked in its top ``top_ranks`` count as hard
            negatives (a low-ranked, low-scored passage is an ordinary negative and already
            sits in the middle). None: every retrieved passage.
        min_keep: Never drop below this many passages (the most relevant are kept).
    """

    demote_below: float | None = None
    drop_below: float | None = None
    top_ranks: int | None = None
    min_keep: int = 1

    def __post_init__(self) -> None:
        for name in ("demote_below", "drop_below"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise InvalidParameter(name, f"must be a finite number or null, got {clip(value)}")
        if self.drop_below is not None and self.demote_below is None:
            raise InvalidParameter(
                "drop_below", "needs demote_below (dropping is the stronger demotion); set both"
            )
        if (
            self.drop_below is not None
            and self.demote_below is not None
            and self.drop_below > self.demote_below
        ):
            raise InvalidParameter(
                "drop_below",
                f"{self.drop_below} must not exceed demote_below ({self.demote_below})",
            )
        if self.top_ranks is not None:
            check_count("top_ranks", self.top_ranks)
        check_count("min_keep", self.min_keep, minimum=0)


@dataclass(frozen=True)
class Treatment:
    """A passage handled as a hard negative."""

    index: int
    retrieval_rank: int
    relevance: float
    action: Literal["demoted", "dropped"]


def edge_positions(k: int) -> list[int]:
    """Jin et al.'s Algorithm 2 as 0-based positions: ``positions[i]`` is where ``d_(i+1)`` goes.

    Odd ranks fill the front in order, even ranks fill the back in reverse:
    ``k=5 -> d1 d3 d5 d4 d2``. Used as the reference the Haystack layout is checked against.
    """
    return [i // 2 if i % 2 == 0 else k - 1 - i // 2 for i in range(k)]


def plan_order(
    retrieval_ranks: Sequence[int],
    relevance: Sequence[float | None],
    policy: HardNegativePolicy,
) -> tuple[list[int], list[Treatment]]:
    """Priority order of passages (input indices, best first) with hard negatives last or dropped.

    Args:
        retrieval_ranks: The retriever's 1-based rank of each passage (ties keep input order).
        relevance: The scorer's relevance of each passage; None where unscored (never a hard
            negative).
        policy: Thresholds.

    Returns:
        ``(order, treated)``: ``order`` lists the kept passages, first the ordinary ones by
        retrieval rank, then the demoted ones from most to least relevant (so the weakest ends
        up deepest in the middle after edge placement); ``treated`` lists every hard negative
        with its action.

    Raises:
        InvalidParameter: ``relevance`` and ``retrieval_ranks`` differ in length.
    """
    if len(retrieval_ranks) != len(relevance):
        raise InvalidParameter(
            "relevance",
            f"has {len(relevance)} scores for {len(retrieval_ranks)} retrieval ranks; "
            "give one per passage",
        )
    by_rank = sorted(range(len(retrieval_ranks)), key=lambda i: (retrieval_ranks[i], i))
    if policy.demote_below is None:
        return by_rank, []
    keep: list[int] = []
    hard: list[int] = []
    for i in by_rank:
        score = relevance[i]
        high = policy.top_ranks is None or retrieval_ranks[i] <= policy.top_ranks
        if high and score is not None and not math.isnan(score) and score < policy.demote_below:
            hard.append(i)
        else:
            keep.append(i)
    hard.sort(key=lambda i: -float(relevance[i]))  # type: ignore[arg-type]
    dropped: set[int] = set()
    if policy.drop_below is not None:
        room = len(keep) + len(hard) - policy.min_keep
        for i in reversed(hard):  # least relevant first
            if room <= 0:
                break
            if float(relevance[i]) < policy.drop_below:  # type: ignore[arg-type]
                dropped.add(i)
                room -= 1
    treated = [
        Treatment(
            index=i,
            retrieval_rank=int(retrieval_ranks[i]),
            relevance=float(relevance[i]),  # type: ignore[arg-type]
            action="dropped" if i in dropped else "demoted",
        )
        for i in hard
    ]
    return keep + [i for i in hard if i not in dropped], treated
