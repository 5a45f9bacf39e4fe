"""Jin et al.'s retrieval reordering and hard-negative demotion (Reorderer, plan_order)."""

from __future__ import annotations

import pytest
from haystack import Document
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.errors import InvalidParameter
from ragkit.ordering.components import Reorderer, edge_layout
from ragkit.ordering.hard_negatives import HardNegativePolicy, edge_positions, plan_order


def _docs(k: int, relevance: list[float] | None = None) -> list[Document]:
    return [
        Document(content=f"d{i}", meta={} if relevance is None else {"relevance": relevance[i - 1]})
        for i in range(1, k + 1)
    ]


def _paper_order(k: int) -> list[int]:
    """Algorithm 2 of the paper, 1-based: odd i at (i+1)/2, even i at (k+1) - i/2."""
    slots = [0] * k
    for i in range(1, k + 1):
        pos = (i + 1) // 2 if i % 2 else (k + 1) - i // 2
        slots[pos - 1] = i
    return slots


def _ranks(docs: list[Document]) -> list[int]:
    return [int((d.content or "d0")[1:]) for d in docs]


def test_examples_from_the_paper() -> None:
    assert _ranks(Reorderer(min_k=0).run(documents=_docs(5))["documents"]) == [1, 3, 5, 4, 2]
    assert _ranks(Reorderer(min_k=0).run(documents=_docs(6))["documents"]) == [1, 3, 5, 6, 4, 2]


@pytest.mark.parametrize("k", range(41))
def test_haystack_layout_matches_the_paper_rule(k: int) -> None:
    """Haystack's LostInTheMiddleRanker is reused because it yields exactly Jin's order."""
    assert _ranks(edge_layout(_docs(k))) == _paper_order(k)
    positions = edge_positions(k)
    assert [positions.index(p) + 1 for p in range(k)] == _paper_order(k)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(min_value=0, max_value=60), mirror=st.booleans())
def test_layout_properties(k: int, mirror: bool) -> None:
    out = _ranks(Reorderer(min_k=0, mirror=mirror).run(documents=_docs(k))["documents"])
    assert sorted(out) == list(range(1, k + 1))  # a permutation
    if k >= 2:
        first, last = (2, 1) if mirror else (1, 2)
        assert out[0] == first and out[-1] == last
    if k >= 1:
        assert out[0 if not mirror or k == 1 else -1] == 1
    # weaker passages never sit nearer an edge than stronger ones; the weakest is in the middle
    depth = {rank: min(pos, k - 1 - pos) for pos, rank in enumerate(out)}
    assert all(depth[i] <= depth[i + 1] for i in range(1, k))
    if k >= 1:
        assert depth[k] == max(depth.values()) == (k - 1) // 2


def test_small_k_keeps_the_order() -> None:
    out = Reorderer(min_k=4).run(documents=_docs(3))
    assert _ranks(out["documents"]) == [1, 2, 3]
    assert out["shaping"]["reordered"] is False
    assert _ranks(Reorderer(min_k=4).run(documents=_docs(4))["documents"]) == [1, 3, 4, 2]


def test_k_one_and_two_and_empty() -> None:
    assert _ranks(Reorderer(min_k=0).run(documents=_docs(1))["documents"]) == [1]
    assert _ranks(Reorderer(min_k=0).run(documents=_docs(2))["documents"]) == [1, 2]
    assert Reorderer().run(documents=[])["documents"] == []


def test_retrieval_rank_from_a_scorer_restores_the_retriever_order() -> None:
    docs = _docs(5)
    scored = [  # a scorer sorted them by relevance; retrieval_rank remembers the retriever
        Document(content=d.content, meta={"retrieval_rank": r, "relevance": 1.0})
        for d, r in zip(reversed(docs), [5, 4, 3, 2, 1], strict=True)
    ]
    out = Reorderer(min_k=0).run(documents=scored)["documents"]
    assert _ranks(out) == [1, 3, 5, 4, 2]
    by_relevance = Reorderer(min_k=0, rank_by="relevance").run(documents=_docs(3, [0.1, 0.9, 0.5]))
    assert _ranks(by_relevance["documents"]) == [2, 1, 3]


def test_hard_negatives_go_to_the_middle_and_are_reported() -> None:
    relevance = [0.9, 0.1, 0.8, 0.7, 0.6, 0.5]  # d2: retriever rank 2, scorer says irrelevant
    out = Reorderer(min_k=0, demote_below=0.3).run(documents=_docs(6, relevance))
    ranks = _ranks(out["documents"])
    k = len(ranks)
    depth = {r: min(p, k - 1 - p) for p, r in enumerate(ranks)}
    assert depth[2] == max(depth.values())
    assert ranks[0] == 1 and ranks[-1] == 3  # the next best passage takes d2's edge seat
    assert out["shaping"]["hard_negatives"] == [
        {
            "id": out["documents"][ranks.index(2)].id,
            "retrieval_rank": 2,
            "relevance": 0.1,
            "action": "demoted",
        }
    ]
    plain = Reorderer(min_k=0).run(documents=_docs(6, relevance))
    assert _ranks(plain["documents"])[-1] == 2 and plain["shaping"]["hard_negatives"] == []


def test_drop_threshold_and_min_keep() -> None:
    relevance = [0.9, 0.05, 0.8, 0.2]
    out = Reorderer(min_k=0, demote_below=0.3, drop_below=0.1).run(documents=_docs(4, relevance))
    assert sorted(_ranks(out["documents"])) == [1, 3, 4]
    actions = {h["retrieval_rank"]: h["action"] for h in out["shaping"]["hard_negatives"]}
    assert actions == {2: "dropped", 4: "demoted"}
    all_bad = Reorderer(min_k=0, demote_below=0.5, drop_below=0.5, min_keep=1)
    kept = all_bad.run(documents=_docs(3, [0.2, 0.3, 0.1]))["documents"]
    assert _ranks(kept) == [2]  # the most relevant of the hard negatives survives


def test_top_ranks_limits_who_counts_as_hard() -> None:
    order, treated = plan_order(
        [1, 2, 3, 4], [0.9, 0.1, 0.8, 0.1], HardNegativePolicy(demote_below=0.3, top_ranks=2)
    )
    assert [t.retrieval_rank for t in treated] == [2]
    assert order == [0, 2, 3, 1]


def test_unscored_documents_are_never_hard_negatives() -> None:
    order, treated = plan_order([1, 2], [None, 0.0], HardNegativePolicy(demote_below=0.5))
    assert order == [0, 1] and [t.index for t in treated] == [1]


def test_duplicate_documents_are_kept_once() -> None:
    docs = _docs(3)
    out = Reorderer(min_k=0).run(documents=[docs[0], docs[1], docs[0], docs[2]])
    assert sorted(_ranks(out["documents"])) == [1, 2, 3]
    assert out["shaping"]["duplicates"] == 1


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"min_k": -1}, "min_k"),
        ({"drop_below": 0.1}, "drop_below"),
        ({"demote_below": 0.1, "drop_below": 0.2}, "drop_below"),
        ({"top_ranks": 0}, "top_ranks"),
        ({"rank_by": "score"}, "rank_by"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        Reorderer(**kwargs)
    assert err.value.parameter == parameter
