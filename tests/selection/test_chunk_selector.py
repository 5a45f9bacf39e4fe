"""ChunkSelector: the Haystack component around CORAG's MCTS (fakes, then the real models)."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.core.serialization import component_from_dict

from ragkit.errors import InvalidParameter
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL
from ragkit.selection.components import ChunkSelector


class FakeEmbedder:
    """Bag-of-words hashing embedder: identical texts get identical vectors."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.embedded: list[str] = []

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail:
            raise RuntimeError("scorer exploded")
        self.embedded.extend(texts)
        out = np.zeros((len(texts), 64))
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", "").split():
                out[row, zlib.crc32(word.encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _selector(**kwargs) -> ChunkSelector:
    selector = ChunkSelector(tokenizer=None, **kwargs)
    selector._model = FakeEmbedder()
    return selector


QUESTION = "Which river flows through the capital of France?"
DOCS = [
    Document(content="Paris is the capital of France and its largest city."),
    Document(content="Paris is the capital of France, and it is also its largest city."),
    Document(content="The Seine is the river that flows through Paris."),
    Document(content="Bananas are rich in potassium and grow in the tropics."),
    Document(content="Lyon lies where the Rhone and the Saone meet."),
]


def test_selects_within_budget_and_reports() -> None:
    selector = _selector(budget=45, chunk_overhead_tokens=2)
    out = selector.run(query=QUESTION, documents=DOCS)
    report = out["shaping"]
    assert 0 < report["tokens"] <= 45
    spent = sum(selector.count_tokens(d.content) + 2 for d in out["documents"])
    assert spent == report["tokens"]
    assert 3 in report["selected"]  # the Seine passage answers the question
    assert not {1, 2} <= set(report["selected"])  # never both near-duplicates
    assert report["question_type"] == "general" and report["fallback"] is None
    assert report["states_scored"] > 0 and report["scorer_calls"] >= 1


def test_embeddings_are_cached_across_queries() -> None:
    selector = _selector(budget=60)
    selector.run(query=QUESTION, documents=DOCS)
    first = len(selector._model.embedded)
    selector.run(query=QUESTION, documents=DOCS)
    assert first == len(DOCS) + 1 and len(selector._model.embedded) == first


def test_budget_smaller_than_any_chunk_trims_the_best_chunk(caplog) -> None:
    selector = _selector(budget=6, chunk_overhead_tokens=2)
    with caplog.at_level(logging.WARNING):
        out = selector.run(query=QUESTION, documents=DOCS)
    (doc,) = out["documents"]
    assert doc.meta["trimmed"] is True and out["shaping"]["trimmed"] is True
    assert selector.count_tokens(doc.content) + 2 <= 6
    assert "smaller than every chunk" in caplog.text


def test_budget_smaller_than_any_chunk_can_give_nothing(caplog) -> None:
    selector = _selector(budget=6, on_tiny_budget="empty")
    with caplog.at_level(logging.WARNING):
        out = selector.run(query=QUESTION, documents=DOCS)
    assert out["documents"] == [] and "no passages" in caplog.text


def test_zero_candidates() -> None:
    out = _selector().run(query=QUESTION, documents=[])
    assert out["documents"] == [] and out["shaping"]["candidates"] == 0


def test_duplicate_chunks_are_searched_once() -> None:
    docs = [DOCS[2], Document(content="  The Seine is the river that flows through Paris. "), *DOCS]
    out = _selector(budget=200).run(query=QUESTION, documents=docs)
    assert out["shaping"]["duplicates"] == 2 and out["shaping"]["candidates"] == 5
    contents = [" ".join(d.content.split()) for d in out["documents"]]
    assert len(contents) == len(set(contents))


def test_scorer_failure_falls_back_to_retriever_order(caplog) -> None:
    selector = ChunkSelector(tokenizer=None, budget=48)
    selector._model = FakeEmbedder(fail=True)
    with caplog.at_level(logging.WARNING):
        out = selector.run(query=QUESTION, documents=DOCS)
    assert "falling back to retriever order" in caplog.text
    assert out["shaping"]["fallback"].startswith("retriever_scores (RuntimeError")
    assert out["shaping"]["selected"] == [1, 2]  # budget filled in retriever order
    assert out["shaping"]["tokens"] == 48


def test_candidates_limit_what_is_searched() -> None:
    out = _selector(budget=500, candidates=2).run(query=QUESTION, documents=DOCS)
    assert set(out["shaping"]["selected"]) <= {1, 2}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"search": {"lam": -1.0}}, "search.lam"),
        ({"search": {"iterations": 0}}, "search.iterations"),
        ({"search": {"iterations": 2.5}}, "search.iterations"),
        ({"search": {"agent": "oracle"}}, "search.agent"),
        ({"search": {"lamda": 0.1}}, "search.lamda"),
        ({"budget": 0}, "budget"),
        ({"candidates": 0}, "candidates"),
        ({"scorer": {"kind": "cross_encoder"}}, "scorer.model"),
        ({"on_tiny_budget": "shrug"}, "on_tiny_budget"),
        ({"utility": {"retrieval_weight": -0.5}}, "utility.retrieval_weight"),
        ({"utility": {"link": -1.0}}, "utility.link"),
        ({"utility": "strong"}, "utility"),
        ({"lam": -1.0}, "search.lam"),  # the flat form of the release before: the new key
    ],
)
def test_bad_settings_are_yaml_path_errors(tmp_path, kwargs: dict, parameter: str) -> None:
    import yaml

    from ragkit.pipeline import validate_pipeline_file

    path = tmp_path / "p.yaml"
    params = {"tokenizer": None, **kwargs}
    path.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "selector": {
                        "type": "ragkit.selection.components.ChunkSelector",
                        "init_parameters": params,
                    }
                },
                "connections": [],
            }
        )
    )
    problems = validate_pipeline_file(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: components.selector.init_parameters.{parameter}: ")


def test_nested_settings_load_and_round_trip() -> None:
    from haystack.core.serialization import component_from_dict, component_to_dict

    from ragkit.pipeline import load_pipeline
    from ragkit.selection.settings import MCTSSettings

    repo = Path(__file__).resolve().parents[2]
    selector = load_pipeline(repo / "pipelines" / "corag.yaml").get_component("selector")
    assert selector.budget == 432 and selector.tokenizer == DEFAULT_CAUSAL_MODEL
    assert selector.search == MCTSSettings(c=0.05, lam=0.1, iterations=20, agent="rule")
    assert selector.utility.link == 0.3 and selector.scorer.kind == "utility"
    data = component_to_dict(selector, "selector")
    assert data["init_parameters"]["search"]["iterations"] == 20
    again = component_from_dict(ChunkSelector, data, "selector")
    assert component_to_dict(again, "selector") == data


def test_the_flat_form_loads_with_a_warning_naming_the_new_key() -> None:
    flat = {
        "type": "ragkit.selection.components.ChunkSelector",
        "init_parameters": {
            "tokenizer": None,
            "budget": 100,
            "iterations": 7,
            "link": 0.3,
            "scorer": "embedding",
            "device": "cpu",
        },
    }
    with pytest.warns(DeprecationWarning) as caught:
        selector = component_from_dict(ChunkSelector, flat, "selector")
    said = [str(w.message) for w in caught]
    assert any("'iterations' is deprecated" in m and "'search.iterations'" in m for m in said)
    assert any("'link'" in m and "'utility.link'" in m for m in said)
    assert any("'scorer: embedding'" in m and "{kind: embedding}" in m for m in said)
    assert selector.search.iterations == 7 and selector.utility.link == 0.3
    assert (selector.scorer.kind, selector.scorer.device) == ("embedding", "cpu")


def test_budget_can_change_per_call() -> None:
    selector = _selector(budget=500)
    out = selector.run(query=QUESTION, documents=DOCS, budget=20)
    assert out["shaping"]["budget"] == 20 and out["shaping"]["tokens"] <= 20
    with pytest.raises(InvalidParameter, match="budget"):
        selector.run(query=QUESTION, documents=DOCS, budget=0)


def test_real_tokenizer_and_minilm_keep_the_budget() -> None:
    """The packaged SmolLM2 tokenizer counts the budget; MiniLM drives the default utility."""
    selector = ChunkSelector(tokenizer="smollm2-135m-instruct", budget=40, scorer={"device": "cpu"})
    try:
        out = selector.run(query=QUESTION, documents=DOCS)
    finally:
        selector.close()
    tok = selector._tok
    spent = sum(len(tok.encode(d.content, add_special_tokens=False)) + 4 for d in out["documents"])
    assert spent == out["shaping"]["tokens"] <= 40
    assert 3 in out["shaping"]["selected"]


def test_reuses_embeddings_the_pipeline_already_has() -> None:
    fresh = _selector(budget=45)
    expected = fresh.run(query=QUESTION, documents=DOCS)["shaping"]["selected"]
    vectors = FakeEmbedder().embed([QUESTION, *[d.content for d in DOCS]])
    docs = [
        Document(content=d.content, embedding=list(v * 3.0))  # unnormalized store vectors
        for d, v in zip(DOCS, vectors[1:], strict=True)
    ]
    reuse = _selector(budget=45)
    out = reuse.run(query=QUESTION, documents=docs, query_embedding=list(vectors[0]))
    assert reuse._model.embedded == []  # nothing embedded again
    assert out["shaping"]["selected"] == expected
    partial = _selector(budget=45)
    partial.run(query=QUESTION, documents=[docs[0], *DOCS[1:]])
    assert partial._model.embedded == [QUESTION, *[d.content for d in DOCS[1:]]]


def test_link_reads_titles_from_meta_and_picks_the_second_hop() -> None:
    """With ``link``, the paragraph the first hop names (by ``meta["title"]``) beats a look-alike
    that shares more words with the question; without titles the term is silent."""
    question = "Where was the director of the film Free Guy born?"
    docs = [
        Document(content="Free Guy is a film directed by Shawn Levy.", meta={"title": "Free Guy"}),
        Document(content="Shawn Levy grew up in Montreal, Quebec.", meta={"title": "Shawn Levy"}),
        Document(
            content="Free Fall is a film; its director was born in Berlin.",
            meta={"title": "Free Fall"},
        ),
        Document(content="Bananas: potassium, tropics.", meta={"title": "Banana"}),
    ]
    counter = ChunkSelector(tokenizer=None)
    budget = 2 * max(counter.count_tokens(d.content) + 4 for d in docs)  # room for two
    static = {"agent": "static"}
    plain = _selector(budget=budget, search=static, utility={"coverage": 0.0, "redundancy": 0.0})
    linked = _selector(
        budget=budget, search=static, utility={"coverage": 0.0, "redundancy": 0.0, "link": 0.3}
    )
    untitled = [Document(content=d.content) for d in docs]
    assert sorted(plain.run(query=question, documents=docs)["shaping"]["selected"]) == [1, 3]
    assert sorted(linked.run(query=question, documents=docs)["shaping"]["selected"]) == [1, 2]
    assert sorted(linked.run(query=question, documents=untitled)["shaping"]["selected"]) == [1, 3]
