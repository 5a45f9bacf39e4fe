"""FixedRelevanceScorer: table, rules, default, errors, the scorers' run contract, pipelines, YAML."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from haystack.core.serialization import component_from_dict, component_to_dict

from ragkit.models.scorers import RelevanceScorerBase
from ragkit.ordering.components import Reorderer
from ragkit.testing import FixedRelevanceScorer, FixedScorerError

DOCS = [
    Document(content="bananas are yellow", score=0.9),
    Document(content="the capital of France is Paris", score=0.8),
    Document(content="Paris is in France", score=0.7),
]


def test_table_then_rules_then_default_and_calls_are_recorded() -> None:
    scorer = FixedRelevanceScorer(
        table={"Paris is in France": 0.5},
        rules=[
            {"contains": "Paris", "query_contains": "capital", "score": 0.9},
            {"contains": "Paris", "score": 0.3},
        ],
        default_score=0.0,
    )
    assert scorer.score("capital?", [d.content for d in DOCS]) == [0.0, 0.9, 0.5]
    assert scorer.score("where?", [d.content for d in DOCS]) == [0.0, 0.3, 0.5]
    assert scorer.calls == [
        ("capital?", [d.content for d in DOCS]),
        ("where?", [d.content for d in DOCS]),
    ]


def test_run_behaves_like_the_project_scorers() -> None:
    scorer = FixedRelevanceScorer(rules=[{"contains": "Paris", "score": 1.0}], default_score=0.2)
    assert isinstance(scorer, RelevanceScorerBase)  # the same warm-up/run/score code
    docs = scorer.run(query="capital of France", documents=DOCS)["documents"]
    assert [d.content for d in docs] == [DOCS[1].content, DOCS[2].content, DOCS[0].content]
    assert [d.score for d in docs] == [1.0, 1.0, 0.2]
    assert [d.meta["relevance"] for d in docs] == [1.0, 1.0, 0.2]
    assert [d.meta["retrieval_rank"] for d in docs] == [2, 3, 1]
    assert [d.meta["retrieval_score"] for d in docs] == [0.8, 0.7, 0.9]
    assert DOCS[0].score == 0.9 and "relevance" not in DOCS[0].meta  # inputs untouched
    assert len(FixedRelevanceScorer(default_score=1.0, top_k=2).run("q", DOCS)["documents"]) == 2
    assert len(scorer.run(query="q", documents=DOCS, top_k=1)["documents"]) == 1
    with pytest.raises(ValueError, match="top_k: must be >= 1"):
        scorer.run(query="q", documents=DOCS, top_k=0)
    assert scorer.warm_ups == 1  # warmed once, on first use
    scorer.close()
    scorer.score("q", ["x"])
    assert scorer.warm_ups == 2


def test_an_unscored_passage_fails_naming_it() -> None:
    scorer = FixedRelevanceScorer(table={"known": 1.0})
    with pytest.raises(FixedScorerError, match="no fixed score for passage 'bananas are yellow'"):
        scorer.run(query="q", documents=DOCS)


def test_bad_rules_fail_at_construction() -> None:
    with pytest.raises(ValueError, match=r"rules\[0\]\.weight: unknown key"):
        FixedRelevanceScorer(rules=[{"contains": "x", "weight": 1}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.score: expected a number"):
        FixedRelevanceScorer(rules=[{"contains": "x", "score": "high"}])
    with pytest.raises(ValueError, match=r"rules\[0\]: give 'contains'"):
        FixedRelevanceScorer(rules=[{"score": 1.0}])


def test_from_function_in_a_pipeline_before_the_reorderer() -> None:
    scorer = FixedRelevanceScorer.from_function(lambda q, t: 0.9 if "Paris" in t else 0.1)
    pipe = Pipeline()
    pipe.add_component("scorer", scorer)
    pipe.add_component(
        "reorderer", Reorderer(min_k=1, rank_by="relevance", demote_below=0.5, drop_below=0.5)
    )
    pipe.connect("scorer.documents", "reorderer.documents")
    out = pipe.run({"scorer": {"query": "capital", "documents": DOCS}})["reorderer"]["documents"]
    assert sorted(d.content for d in out) == sorted([DOCS[1].content, DOCS[2].content])


def test_yaml_round_trip_keeps_table_rules_and_default() -> None:
    scorer = FixedRelevanceScorer(
        table={"a": 2.0}, rules=[{"contains": "b", "score": 1.0}], default_score=0.5, top_k=3
    )
    again = component_from_dict(FixedRelevanceScorer, component_to_dict(scorer, "scorer"), "scorer")
    assert again.score("q", ["a", "xb", "c"]) == [2.0, 1.0, 0.5] and again.top_k == 3
