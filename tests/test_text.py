"""ragkit.text: the shared tokenizer, and the in-memory BM25 ranking RAPID retrieves chunks with."""

from __future__ import annotations

import random

import pytest

from ragkit.stores.bm25 import BM25Index
from ragkit.text import bm25_rank, tokenize

WORDS = [
    "river",
    "bridge",
    "survey",
    "station",
    "depth",
    "salinity",
    "north",
    "mouth",
    "engineer",
    "summer",
    "the",
    "of",
    "a",
]


@pytest.mark.parametrize("seed", range(5))
def test_bm25_rank_scores_as_the_store_index(seed: int) -> None:
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(0, 30))) for _ in range(40)]
    query = " ".join(rng.choices(WORDS, k=4))
    index = BM25Index()
    index.add([str(i) for i in range(len(texts))], texts)
    expected = {int(i): s for i, s in index.search(query, top_k=len(texts))}
    ranked = bm25_rank(texts, query, top_k=len(texts))
    assert {i for i, _ in ranked} == set(expected)
    for i, score in ranked:
        assert score == pytest.approx(expected[i], rel=1e-9, abs=1e-12)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert bm25_rank(texts, query, top_k=3) == ranked[:3]


def test_bm25_rank_leaves_out_texts_without_a_query_term() -> None:
    assert bm25_rank(["alpha beta", "gamma"], "beta", top_k=5)[0][0] == 0
    assert [i for i, _ in bm25_rank(["alpha beta", "gamma"], "beta", top_k=5)] == [0]
    assert bm25_rank([], "beta", top_k=5) == [] and bm25_rank(["beta"], "beta", top_k=0) == []
    assert tokenize("The Seine, in Paris!") == ["seine", "paris"]
