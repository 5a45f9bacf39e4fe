"""Every invalid argument to a component (or the algorithm under it) is an InvalidParameter.

``InvalidParameter`` names the parameter (pipeline loading turns it into the YAML path) and is
still a ``ValueError``, so callers that caught the bare ``ValueError`` of before keep working.
A wrong type fails at construction with the parameter's name, not as a ``TypeError`` later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ragkit.errors import InvalidParameter, check_count


def _raises(call: Callable[[], Any], parameter: str) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as err:
        call()
    assert err.value.parameter == parameter
    assert isinstance(err.value, ValueError)
    return err.value


@pytest.mark.parametrize("bad", [0, -2, True, False, "1", 1.0, None])
def test_check_count_refuses_what_is_not_a_count(bad: Any) -> None:
    error = _raises(lambda: check_count("top_k", bad), "top_k")
    assert error.message.startswith("must be an integer >= 1, got ")


def test_check_count_accepts_counts_from_its_minimum() -> None:
    assert check_count("min_k", 0, minimum=0) == 0
    assert check_count("top_k", 7) == 7


def test_the_selection_search_names_its_bad_arguments() -> None:
    from ragkit.selection.mcts import mcts_select

    class Flat:
        order_sensitive = False

        def score_states(self, states: list[tuple[int, ...]]) -> list[float]:
            return [0.0] * len(states)

    _raises(lambda: mcts_select([3, 4], 0, Flat()), "budget")
    _raises(lambda: mcts_select([3, 0], 10, Flat()), "costs")


def test_the_hard_negative_plan_names_its_bad_arguments() -> None:
    from ragkit.ordering.hard_negatives import HardNegativePolicy, plan_order

    _raises(lambda: plan_order([1, 2], [0.5], HardNegativePolicy()), "relevance")
    _raises(lambda: HardNegativePolicy(demote_below="low"), "demote_below")  # type: ignore[arg-type]
    _raises(lambda: HardNegativePolicy(demote_below=float("nan")), "demote_below")
    _raises(lambda: HardNegativePolicy(top_ranks="3"), "top_ranks")  # type: ignore[arg-type]
    _raises(lambda: HardNegativePolicy(min_keep=-1), "min_keep")


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"min_k": "3"}, "min_k"),
        ({"min_k": -1}, "min_k"),
        ({"mirror": "yes"}, "mirror"),
        ({"score_key": ""}, "score_key"),
        ({"demote_below": "0.5"}, "demote_below"),
        ({"min_keep": 1.5}, "min_keep"),
    ],
)
def test_reorderer_arguments(kwargs: dict[str, Any], parameter: str) -> None:
    from ragkit import Reorderer

    _raises(lambda: Reorderer(**kwargs), parameter)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"context_tokens": "8k"}, "context_tokens"),
        ({"context_tokens": 0}, "context_tokens"),
        ({"reserve_tokens": -1}, "reserve_tokens"),
        ({"max_passage_tokens": 0}, "max_passage_tokens"),
        ({"context_tokens": 512, "reserve_tokens": 512}, "reserve_tokens"),
    ],
)
def test_context_fitter_arguments(kwargs: dict[str, Any], parameter: str) -> None:
    from ragkit import ContextFitter

    _raises(lambda: ContextFitter(tokenizer=None, **kwargs), parameter)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": True}, "budget"),
        ({"candidates": "30"}, "candidates"),
        ({"chunk_overhead_tokens": -1}, "chunk_overhead_tokens"),
        ({"chunk_overhead_tokens": True}, "chunk_overhead_tokens"),
        ({"on_tiny_budget": "drop"}, "on_tiny_budget"),
    ],
)
def test_chunk_selector_arguments(kwargs: dict[str, Any], parameter: str) -> None:
    from ragkit import ChunkSelector

    _raises(lambda: ChunkSelector(tokenizer=None, **kwargs), parameter)


@pytest.mark.parametrize("bad", [0, -5, True, "100"])
def test_chunk_selector_checks_the_budget_of_a_call(bad: Any) -> None:
    from haystack import Document

    from ragkit import ChunkSelector

    selector = ChunkSelector(tokenizer=None)  # the check comes before any model loads
    _raises(
        lambda: selector.run(query="q", documents=[Document(content="x")], budget=bad), "budget"
    )


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": "5"}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "8"}, "batch_size"),
    ],
)
def test_scorer_arguments(kwargs: dict[str, Any], parameter: str) -> None:
    from ragkit import EmbeddingSimilarityScorer, LLMRelevanceScorer

    _raises(lambda: EmbeddingSimilarityScorer(**kwargs), parameter)
    _raises(lambda: LLMRelevanceScorer(**kwargs), parameter)
    _raises(lambda: LLMRelevanceScorer(max_passage_tokens=0), "max_passage_tokens")


def test_clue_retriever_and_the_note_answerer_counts() -> None:
    from ragkit import AdaptiveNoteAnswerer, ClueRetriever

    _raises(lambda: ClueRetriever(candidates=True), "candidates")
    _raises(lambda: ClueRetriever(max_documents=0), "max_documents")
    _raises(lambda: AdaptiveNoteAnswerer(candidates=0), "candidates")
