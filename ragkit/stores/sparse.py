"""BM25 as Qdrant sparse vectors, for server and cluster stores.

The document side carries the BM25 term-frequency saturation ``tf*(k1+1)/(tf+k1*(1-b+b*dl/avgdl))``;
Qdrant's ``Modifier.IDF`` multiplies in the inverse document frequency at query time, computed by
the server over the whole collection. ``avgdl`` is fixed at index time (Qdrant cannot know it),
which is the usual approximation for BM25 on sparse vectors.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import TYPE_CHECKING

from ragkit.stores.tokenize import tokenize

if TYPE_CHECKING:
    from haystack.dataclasses import SparseEmbedding


class SparseBM25Encoder:
    """Turns text into hashed-term sparse vectors carrying BM25 weights."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, avgdl: float = 70.0) -> None:
        self.k1 = k1
        self.b = b
        self.avgdl = avgdl

    @staticmethod
    def term_id(term: str) -> int:
        """Stable 31-bit id for a term (collisions are rare and only merge two terms' counts)."""
        return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF

    def _vector(self, weights: dict[int, float]) -> SparseEmbedding:
        from haystack.dataclasses import SparseEmbedding

        items = sorted(weights.items())
        return SparseEmbedding(indices=[i for i, _ in items], values=[v for _, v in items])

    def encode_document(self, text: str) -> SparseEmbedding:
        """Document vector with saturated, length-normalized term frequencies."""
        tokens = tokenize(text)
        dl = len(tokens)
        norm = self.k1 * (1 - self.b + self.b * dl / self.avgdl)
        weights: dict[int, float] = {}
        for term, tf in Counter(tokens).items():
            tid = self.term_id(term)
            weights[tid] = weights.get(tid, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return self._vector(weights)

    def encode_query(self, text: str) -> SparseEmbedding:
        """Query vector: weight 1 per distinct term; the server applies IDF."""
        return self._vector({self.term_id(t): 1.0 for t in set(tokenize(text))})
