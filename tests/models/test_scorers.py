"""The relevance scorers' shared, Haystack-ranker-like base (no model needed: a fake subclass)."""

from __future__ import annotations

import pytest
from haystack import Document, component
from haystack.core.serialization import component_from_dict, component_to_dict

from ragkit.models.scorers import RelevanceScorerBase


@component
class LengthScorer(RelevanceScorerBase):
    """Relevance = number of words shared with the query (a stand-in for a model)."""

    def __init__(self, top_k: int | None = None) -> None:
        self.top_k = top_k
        self.loads = 0
        self._on = False

    def _loaded(self) -> bool:
        return self._on

    def _load(self) -> None:
        self.loads += 1
        self._on = True

    def _unload(self) -> None:
        self._on = False

    def _score(self, query: str, texts: list[str]) -> list[float]:
        words = set(query.lower().split())
        return [float(len(words & set(t.lower().split()))) for t in texts]


DOCS = [
    Document(content="bananas are yellow", score=0.9),
    Document(content="the capital of france is paris", score=0.8),
    Document(content="paris is in france", score=0.7),
]


def test_run_sorts_by_relevance_on_score_and_keeps_the_retriever_view() -> None:
    scorer = LengthScorer()
    docs = scorer.run(query="capital of france", documents=DOCS)["documents"]
    assert [d.content for d in docs] == [DOCS[1].content, DOCS[2].content, DOCS[0].content]
    assert [d.score for d in docs] == [3.0, 1.0, 0.0]
    assert [d.meta["relevance"] for d in docs] == [3.0, 1.0, 0.0]
    assert [d.meta["retrieval_rank"] for d in docs] == [2, 3, 1]
    assert [d.meta["retrieval_score"] for d in docs] == [0.8, 0.7, 0.9]
    assert DOCS[0].score == 0.9 and "relevance" not in DOCS[0].meta  # inputs untouched
    rescored = scorer.run(query="bananas", documents=docs)["documents"]
    assert rescored[0].meta["retrieval_rank"] == 1  # a second scorer keeps the first ranking


def test_top_k_from_init_and_run() -> None:
    assert len(LengthScorer(top_k=2).run(query="paris", documents=DOCS)["documents"]) == 2
    assert len(LengthScorer(top_k=2).run(query="paris", documents=DOCS, top_k=1)["documents"]) == 1
    with pytest.raises(ValueError, match="top_k: must be >= 1"):
        LengthScorer().run(query="paris", documents=DOCS, top_k=0)


def test_warm_up_once_close_and_empty_input() -> None:
    scorer = LengthScorer()
    assert scorer.run(query="x", documents=[])["documents"] == [] and scorer.loads == 0
    scorer.score("paris", ["paris"])
    scorer.warm_up()
    assert scorer.loads == 1
    scorer.close()
    scorer.score("paris", ["paris"])
    assert scorer.loads == 2


def test_shipped_scorers_share_the_base_and_old_import_path() -> None:
    from ragkit.models import components, scorers

    for name in ("LLMRelevanceScorer", "EmbeddingSimilarityScorer", "CrossEncoderScorer"):
        cls = getattr(scorers, name)
        assert getattr(components, name) is cls
        assert issubclass(cls, RelevanceScorerBase)
    ce = scorers.CrossEncoderScorer(model="some/dir", top_k=3)
    data = component_to_dict(ce, "ce")
    assert data["type"] == "ragkit.models.scorers.CrossEncoderScorer"
    assert component_from_dict(scorers.CrossEncoderScorer, data, "ce").top_k == 3
    with pytest.raises(ValueError, match="top_k"):
        scorers.EmbeddingSimilarityScorer(top_k=0)
