"""CORAG's default CPU scorer: a cheap, non-additive utility of a chunk combination.

An LLM forward pass per state costs seconds on a CPU; this utility costs microseconds per state
once the chunk and query embeddings are computed (once per query):

    U(S) = sum_i (rel_i - floor)                       relevance, centred: weak chunks cost
           - redundancy * sum_{i<j} max(0, sim_ij - margin)   near-duplicates are worth little
           + coverage * |terms(q) covered by S| / |terms(q)|  the question's words, covered once
           + link * |{j in S : title_j in q, or in the text of another i in S}|

The link term is for multi-hop questions over titled passages (Wikipedia paragraphs, files): the
second hop of "where was the director of Free Guy born" is a paragraph the question never names
(Shawn Levy's), which a question-passage cosine ranks low and which greedy filling skips; it is
worth reading only together with the paragraph that names it (Free Guy's). A chunk earns the
bonus when its title appears in the question or in another selected chunk, so the pair is worth
more than its parts: a dependency only a search over combinations can use.

With ``retrieval_weight`` w > 0 each chunk's relevance also carries the retriever's view: its
rank among the candidates (they arrive best first), standardized and scaled to the spread of
the embedding relevance, so that w = 1 weighs the retriever and the embedder equally (as the
default fusion weighs dense and BM25). The retriever's hybrid rank holds the lexical evidence
(names, dates) that a single question-passage cosine misses.

Centring relevance makes the utility non-monotonic (adding a weak chunk lowers it), and the
redundancy and coverage terms make it non-additive, the two properties CORAG's search exploits.
Pure numpy; embeddings come from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragkit.text import match_text as _norm
from ragkit.text import title_key as _title_key
from ragkit.text import tokenize

__all__ = ["CombinationUtility", "link_masks"]


def link_masks(
    query: str, chunks: Sequence[str], titles: Sequence[str | None]
) -> tuple[int, list[int]]:
    """Which chunks the question names, and which chunks each chunk names, as bit masks.

    Returns ``(anchors, mentions)``: bit j of ``anchors`` is set when chunk j's title occurs in
    the question; bit j of ``mentions[i]`` when it occurs in chunk i's text (i != j). Titles are
    matched as whole words, case- and accent-insensitively, without a trailing parenthetical;
    titles under 4 characters are ignored (too ambiguous to count as a mention).
    """
    keys = [_title_key(t) for t in titles]

    def named_in(text: str, own: int = -1) -> int:
        body = _norm(text)
        return sum(1 << j for j, key in enumerate(keys) if j != own and key and key in body)

    return named_in(query), [named_in(text, own=i) for i, text in enumerate(chunks)]


class CombinationUtility:
    """Order-insensitive utility over cached embeddings (implements ``StateScorer``)."""

    order_sensitive = False

    def __init__(
        self,
        query_vec: np.ndarray,
        chunk_vecs: np.ndarray,
        query: str,
        chunks: Sequence[str],
        *,
        redundancy: float = 1.0,
        margin: float = 0.6,
        coverage: float = 0.3,
        floor: float | None = None,
        retrieval_weight: float = 0.0,
        titles: Sequence[str | None] | None = None,
        link: float = 0.0,
    ) -> None:
        """Precompute everything a state score needs.

        Args:
            query_vec: Unit-length query embedding, shape (d,).
            chunk_vecs: Unit-length chunk embeddings, shape (n, d).
            query: The question (its content words are the coverage target).
            chunks: The chunk texts (for coverage).
            redundancy: Weight of the near-duplicate penalty.
            margin: Cosine similarity above which two chunks start to count as redundant.
            coverage: Weight of question-term coverage.
            floor: Relevance a chunk must exceed to add value; default the candidates' mean.
            retrieval_weight: Weight of the retriever's rank (chunks are given best first)
                relative to the embedding relevance; 0 ignores the retriever's order.
            titles: Each chunk's title (``Document.meta["title"]``), for the link term.
            link: Bonus per selected chunk whose title the question or another selected chunk
                names; 0 (or no titles) turns the term off.
        """
        chunk_vecs = np.asarray(chunk_vecs, dtype=np.float64).reshape(len(chunks), -1)
        rel = chunk_vecs @ np.asarray(query_vec, dtype=np.float64)
        self.relevance = rel
        self.floor = float(rel.mean()) if floor is None and len(rel) else float(floor or 0.0)
        self.gain = rel - self.floor
        if retrieval_weight and len(rel) > 1:
            order = -np.arange(len(rel), dtype=np.float64)  # best first: higher is better
            z = (order - order.mean()) / order.std()
            self.gain = self.gain + retrieval_weight * float(rel.std()) * z
        sim = chunk_vecs @ chunk_vecs.T
        penalty = redundancy * np.clip(sim - margin, 0.0, None)
        np.fill_diagonal(penalty, 0.0)
        self.penalty = penalty
        terms = sorted(set(tokenize(query)))
        self.n_terms = len(terms)
        position = {t: i for i, t in enumerate(terms)}
        self.masks = []
        for text in chunks:
            mask = 0
            for tok in set(tokenize(text)):
                if tok in position:
                    mask |= 1 << position[tok]
            self.masks.append(mask)
        self.coverage = coverage
        self.link = link if titles is not None else 0.0
        self.anchors, self.mentions = (
            link_masks(query, chunks, titles) if self.link else (0, [0] * len(self.masks))
        )

    def single_scores(self) -> list[float]:
        """Utility of each chunk alone (the greedy baseline's order)."""
        return [float(s) for s in self.score_states([(i,) for i in range(len(self.masks))])]

    def score_states(self, states: Sequence[tuple[int, ...]]) -> list[float]:
        """Utility of each state; a few microseconds each."""
        out = []
        for state in states:
            idx = list(state)
            value = float(self.gain[idx].sum())
            if len(idx) > 1:
                value -= float(self.penalty[np.ix_(idx, idx)].sum()) / 2.0
            if self.n_terms:
                mask = 0
                for i in idx:
                    mask |= self.masks[i]
                value += self.coverage * mask.bit_count() / self.n_terms
            if self.link:
                members = named = 0
                for i in idx:
                    members |= 1 << i
                    named |= self.mentions[i]
                value += self.link * ((self.anchors | named) & members).bit_count()
            out.append(value)
        return out
