"""Haystack wrapper: Jin et al.'s retrieval reordering with hard-negative demotion.

The edge layout itself is Haystack's ``LostInTheMiddleRanker``: its insertion rule puts the
documents in exactly Jin et al.'s order (d1 d3 d5 ... d4 d2; checked against the paper's position
formula in tests/ordering), so ragkit only adds what it lacks: the retriever/relevance split,
hard-negative demotion or dropping, the mirrored variant, ``min_k`` and a report of what was done.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from haystack import Document, component

from ragkit.errors import InvalidParameter, check_count, clip
from ragkit.ordering.hard_negatives import HardNegativePolicy, plan_order

__all__ = ["Reorderer", "edge_layout"]

logger = logging.getLogger(__name__)

RELEVANCE_KEY = "relevance"  # same key as ragkit.models.scorers (not imported: no model deps here)
RETRIEVAL_RANK_KEY = "retrieval_rank"


def edge_layout(documents: list[Document], mirror: bool = False) -> list[Document]:
    """Best first and second at the edges, weakest in the middle (Haystack's LostInTheMiddleRanker).

    Args:
        documents: Best first.
        mirror: LangChain-style mirror: d2 first, d1 last.
    """
    from haystack.components.rankers import LostInTheMiddleRanker

    if len(documents) < 2:
        return list(documents)
    laid = LostInTheMiddleRanker().run(documents=list(documents))["documents"]
    return laid[::-1] if mirror else laid


@component
class Reorderer:
    """Lays passages out for a long-context reader: strongest at the edges, hard negatives inside.

    Reads the retriever's rank from ``meta["retrieval_rank"]`` (set by ragkit's relevance
    scorers; otherwise the input order is the retriever's order) and the relevance from
    ``meta["relevance"]`` (or ``score_key``). Hard negatives, passages in the retriever's top
    ranks whose relevance is below ``demote_below``, go to the middle; below ``drop_below`` they
    are removed. The ``shaping`` output says what was done (``ragkit query --json`` / ``--trace``).

    Examples:
        Five passages, best first, the third one scored as irrelevant by a relevance scorer:

        >>> from haystack import Document
        >>> from ragkit import Reorderer
        >>> docs = [
        ...     Document(content=f"d{i}", meta={"relevance": 0.1 if i == 3 else 0.9})
        ...     for i in range(1, 6)
        ... ]
        >>> out = Reorderer(min_k=3, demote_below=0.5).run(documents=docs)
        >>> [d.content for d in out["documents"]]
        ['d1', 'd4', 'd3', 'd5', 'd2']
        >>> out["shaping"]["hard_negatives"][0]["action"]
        'demoted'
    """

    def __init__(
        self,
        min_k: int = 3,
        mirror: bool = False,
        rank_by: Literal["retrieval", "relevance"] = "retrieval",
        score_key: str = RELEVANCE_KEY,
        demote_below: float | None = None,
        drop_below: float | None = None,
        top_ranks: int | None = None,
        min_keep: int = 1,
    ) -> None:
        """Create a reorderer.

        Args:
            min_k: With fewer passages than this the order is left as ranked (small k gains
                nothing from reordering); hard negatives are still moved last or dropped.
            mirror: Mirror the layout (d2 first, d1 last), as LangChain's LongContextReorder
                does for even k; default is Jin et al.'s d1-first order.
            rank_by: What d1..dk are sorted by: the retriever's rank (Jin et al.) or relevance.
            score_key: Meta key holding the relevance score.
            demote_below: Relevance below which a highly ranked passage is a hard negative.
                None turns hard-negative handling off (plain reordering).
            drop_below: Relevance below which a hard negative is dropped (<= demote_below).
            top_ranks: Only the retriever's top ``top_ranks`` can be hard negatives (None: all).
            min_keep: Never drop below this many passages.

        Raises:
            InvalidParameter: Naming the bad parameter.
        """
        check_count("min_k", min_k, minimum=0)
        if not isinstance(mirror, bool):
            raise InvalidParameter("mirror", f"must be true or false, got {clip(mirror)}")
        if not isinstance(score_key, str) or not score_key:
            raise InvalidParameter("score_key", f"must be a meta key, got {clip(score_key)}")
        if rank_by not in ("retrieval", "relevance"):
            raise InvalidParameter(
                "rank_by", f"must be 'retrieval' or 'relevance', got {rank_by!r}"
            )
        self._policy = HardNegativePolicy(demote_below, drop_below, top_ranks, min_keep)
        self.min_k = min_k
        self.mirror = mirror
        self.rank_by = rank_by
        self.score_key = score_key
        self.demote_below = demote_below
        self.drop_below = drop_below
        self.top_ranks = top_ranks
        self.min_keep = min_keep

    def _relevance(self, doc: Document) -> float | None:
        value = doc.meta.get(self.score_key)
        return float(value) if isinstance(value, int | float) else None

    @component.output_types(documents=list[Document], shaping=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Reorder (and possibly drop) documents.

        Args:
            documents: Retrieved (and optionally scored) documents.

        Returns:
            ``documents`` in prompt order and ``shaping``: the retrieval ranks in output order,
            whether the layout was applied, and each hard negative with its action.
        """
        relevance = [self._relevance(d) for d in documents]
        if self.rank_by == "retrieval":
            ranks = []
            for i, d in enumerate(documents):
                rank = d.meta.get(RETRIEVAL_RANK_KEY)
                ranks.append(
                    rank if isinstance(rank, int) and not isinstance(rank, bool) else i + 1
                )
        else:
            by_score = sorted(
                range(len(documents)),
                key=lambda i: -(relevance[i] if relevance[i] is not None else float("-inf")),
            )
            ranks = [0] * len(documents)
            for position, i in enumerate(by_score, start=1):
                ranks[i] = position
        order, treated = plan_order(ranks, relevance, self._policy)
        seen: set[str] = set()
        priority = []
        for i in order:  # the same chunk retrieved twice (e.g. by two retrievers) is kept once
            if documents[i].id not in seen:
                seen.add(documents[i].id)
                priority.append(documents[i])
        laid_out = len(priority) >= max(self.min_k, 2)
        out = edge_layout(priority, self.mirror) if laid_out else priority
        by_id = {id(documents[i]): i for i in order}  # LostInTheMiddleRanker keeps the objects
        if treated:
            logger.info(
                "hard negatives: %s",
                ", ".join(f"rank {t.retrieval_rank} ({t.action})" for t in treated),
            )
        shaping = {
            "component": "Reorderer",
            "reordered": laid_out,
            "mirror": self.mirror,
            "order": [ranks[by_id[id(d)]] for d in out],
            "duplicates": len(order) - len(priority),
            "hard_negatives": [
                {
                    "id": documents[t.index].id,
                    "retrieval_rank": t.retrieval_rank,
                    "relevance": t.relevance,
                    "action": t.action,
                }
                for t in treated
            ],
        }
        return {"documents": out, "shaping": shaping}
