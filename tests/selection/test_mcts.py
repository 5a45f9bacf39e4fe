"""CORAG MCTS: budget safety, non-additive utilities, caching, variants, the rule agent."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.errors import InvalidParameter
from ragkit.selection.agent import question_type, rule_config
from ragkit.selection.mcts import MCTSConfig, count_feasible_states, greedy_fill, mcts_select
from ragkit.selection.utility import CombinationUtility, link_masks


class RedundancyScorer:
    """Sum of relevances minus a penalty per pair of chunks in the same redundancy group."""

    order_sensitive = False

    def __init__(self, rel: Sequence[float], group: Sequence[int], penalty: float) -> None:
        self.rel, self.group, self.penalty = list(rel), list(group), penalty
        self.seen: list[tuple[int, ...]] = []
        self.calls = 0

    def value(self, state: Sequence[int]) -> float:
        pairs = sum(
            1 for a, b in itertools.combinations(state, 2) if self.group[a] == self.group[b]
        )
        return sum(self.rel[i] for i in state) - self.penalty * pairs

    def score_states(self, states: Sequence[tuple[int, ...]]) -> list[float]:
        self.calls += 1
        self.seen.extend(states)
        return [self.value(s) for s in states]


class HashScorer:
    """Arbitrary (order-sensitive) utility: a fixed pseudo-random value per ordered state."""

    order_sensitive = True

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def score_states(self, states: Sequence[tuple[int, ...]]) -> list[float]:
        return [random.Random(hash((self.seed, s))).uniform(-1, 1) for s in states]


# three near-duplicates of the best chunk, then distinct weaker ones
REL = [0.9, 0.88, 0.86, 0.6, 0.5, 0.1]
GROUP = [0, 0, 0, 1, 2, 3]


def test_mcts_beats_greedy_budget_fill_on_a_non_additive_utility() -> None:
    scorer = RedundancyScorer(REL, GROUP, penalty=0.8)
    costs = [10] * 6
    order = sorted(range(6), key=lambda i: -REL[i])  # greedy by single-chunk score
    greedy = greedy_fill(costs, 30, order)
    assert greedy == (0, 1, 2)
    result = mcts_select(costs, 30, scorer, MCTSConfig(c=2.0, lam=0.1, iterations=20))
    assert set(result.chunks) == {0, 3, 4}
    assert result.score == pytest.approx(2.0)
    assert result.score > scorer.value(greedy) + 1.0
    assert result.cost <= 30


def test_default_utility_beats_greedy_with_duplicate_embeddings() -> None:
    rng = np.random.default_rng(0)
    query = np.zeros(8)
    query[0] = 1.0
    base = np.array([0.9, 0.4, 0, 0, 0, 0, 0, 0])
    vecs = [base + rng.normal(0, 0.01, 8) for _ in range(3)]  # near-duplicates, most relevant
    vecs += [np.array([0.6, 0, 0.8, 0, 0, 0, 0, 0]), np.array([0.5, 0, 0, 0.86, 0, 0, 0, 0])]
    vecs += [np.array([0.0, 0, 0, 0, 1.0, 0, 0, 0])]  # irrelevant
    chunk_vecs = np.stack([v / np.linalg.norm(v) for v in vecs])
    texts = ["capital France Paris"] * 3 + ["river Seine", "population city", "bananas"]
    util = CombinationUtility(query, chunk_vecs, "capital France river population", texts)
    singles = util.single_scores()
    greedy = greedy_fill([10] * 6, 30, sorted(range(6), key=lambda i: -singles[i]))
    result = mcts_select([10] * 6, 30, util, MCTSConfig(iterations=20))
    assert set(greedy) == {0, 1, 2}
    assert len(set(result.chunks) & {0, 1, 2}) == 1 and 3 in result.chunks  # one copy + news
    assert result.score > util.score_states([greedy])[0]
    assert 5 not in result.chunks  # non-monotonic: the irrelevant chunk would lower the utility


@settings(max_examples=80, deadline=None)
@given(
    costs=st.lists(st.integers(min_value=1, max_value=50), min_size=0, max_size=12),
    budget=st.integers(min_value=1, max_value=120),
    iterations=st.integers(min_value=1, max_value=15),
    c=st.floats(min_value=0, max_value=4),
    lam=st.floats(min_value=0, max_value=2),
    backprop=st.sampled_from(["all", "best"]),
    pick=st.sampled_from(["score", "average"]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_budget_is_never_exceeded(costs, budget, iterations, c, lam, backprop, pick, seed) -> None:
    cfg = MCTSConfig(c=c, lam=lam, iterations=iterations, backprop=backprop, pick=pick)
    result = mcts_select(costs, budget, HashScorer(seed), cfg)
    assert result.cost == sum(costs[i] for i in result.chunks) <= budget
    assert len(set(result.chunks)) == len(result.chunks)
    if any(cost <= budget for cost in costs):
        assert result.chunks  # something fits, so something is chosen
    else:
        assert result.chunks == () and result.nodes == 0


def test_enough_iterations_find_the_exhaustive_optimum() -> None:
    costs = [3, 4, 5, 6]
    scorer = HashScorer(7)
    best = max(
        (s for r in range(1, 5) for s in itertools.permutations(range(4), r)
         if sum(costs[i] for i in s) <= 10),
        key=lambda s: scorer.score_states([s])[0],
    )  # fmt: skip
    result = mcts_select(costs, 10, scorer, MCTSConfig(iterations=500))
    assert result.exhausted and result.iterations < 500  # stops once the tree is fully explored
    assert result.chunks == best


def test_state_cache_scores_each_set_once_and_batches_children() -> None:
    scorer = RedundancyScorer(REL, GROUP, penalty=0.8)
    result = mcts_select([10] * 6, 40, scorer, MCTSConfig(iterations=20))
    keys = [tuple(sorted(s)) for s in scorer.seen]
    assert len(keys) == len(set(keys)) == result.states_scored
    assert result.cache_hits > 0  # (a, b) after (b, a) comes from the cache
    assert result.scorer_calls == scorer.calls <= result.iterations
    assert result.nodes == result.states_scored + result.cache_hits


def test_count_feasible_states_matches_brute_force() -> None:
    costs, budget = [2, 3, 3, 5, 7], 10
    ordered = sum(
        1
        for r in range(1, 6)
        for s in itertools.permutations(range(5), r)
        if sum(costs[i] for i in s) <= budget
    )
    sets = sum(
        1
        for r in range(1, 6)
        for s in itertools.combinations(range(5), r)
        if sum(costs[i] for i in s) <= budget
    )
    assert count_feasible_states(costs, budget) == ordered
    assert count_feasible_states(costs, budget, ordered=False) == sets


def test_zero_candidates_and_nothing_fits() -> None:
    empty = mcts_select([], 100, HashScorer(0))
    assert empty.chunks == () and empty.score == -math.inf
    too_big = mcts_select([50, 60], 10, HashScorer(0))
    assert too_big.chunks == () and too_big.states_scored == 0


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"lam": -0.1}, "lam"),
        ({"iterations": 0}, "iterations"),
        ({"c": -1.0}, "c"),
        ({"backprop": "some"}, "backprop"),
        ({"pick": "max"}, "pick"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        MCTSConfig(**kwargs)
    assert err.value.parameter == parameter


def test_rule_agent_by_question_type() -> None:
    base = MCTSConfig(c=2.0, lam=0.2, iterations=20)
    assert question_type("Who wrote Hamlet?") == "factoid"
    assert question_type("Are Paris and Lyon in the same country?") == "multi"
    assert question_type("Which film came out first, Alien or Heat?") == "multi"
    assert question_type("Describe the plot of the novel Dune in detail") == "general"
    multi, label = rule_config("Were both bands formed in London?", base)
    assert label == "multi" and multi.iterations == 30 and multi.lam == pytest.approx(0.1)
    factoid, label = rule_config("Who wrote Hamlet?", base)
    assert label == "factoid" and factoid.iterations == 15 and factoid.lam == pytest.approx(0.3)
    assert rule_config("Describe the plot of the novel Dune in detail", base) == (base, "general")


class ScaledScorer(HashScorer):
    def __init__(self, seed: int, factor: float, shift: float) -> None:
        super().__init__(seed)
        self.factor, self.shift = factor, shift

    def score_states(self, states: Sequence[tuple[int, ...]]) -> list[float]:
        return [self.factor * v + self.shift for v in super().score_states(states)]


@pytest.mark.parametrize("seed", range(5))
def test_normalized_rewards_make_c_independent_of_the_scorer_scale(seed: int) -> None:
    costs = [random.Random(seed * 31 + i).randint(5, 30) for i in range(12)]
    cfg = MCTSConfig(c=0.5, lam=0.2, iterations=15)
    base = mcts_select(costs, 80, HashScorer(seed), cfg)
    scaled = mcts_select(costs, 80, ScaledScorer(seed, 50.0, -7.0), cfg)
    assert scaled.chunks == base.chunks and scaled.nodes == base.nodes


def test_retrieval_weight_lets_the_retrievers_order_outvote_a_weak_cosine() -> None:
    """Two chunks equally similar to the question: the one retrieval ranked first wins once the
    retriever's rank counts; with weight 0 (the default) the order given changes nothing."""
    q = np.array([1.0, 0.0, 0.0])
    # chunk 0 (retrieval rank 1) is a bit less similar than chunk 1; chunk 2 is far off
    vecs = np.array([[0.80, 0.60, 0.0], [0.85, 0.0, 0.527], [0.1, 0.995, 0.0]])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = ["alpha", "beta", "gamma"]
    plain = CombinationUtility(q, vecs, "question", texts, coverage=0.0)
    assert plain.single_scores()[1] > plain.single_scores()[0]
    prior = CombinationUtility(q, vecs, "question", texts, coverage=0.0, retrieval_weight=1.0)
    assert prior.single_scores()[0] > prior.single_scores()[1]
    spread = float(plain.relevance.std())
    shift = np.array(prior.single_scores()) - np.array(plain.single_scores())
    assert shift == pytest.approx([spread * 1.2247449, 0.0, -spread * 1.2247449], abs=1e-6)


def test_link_masks_match_titles_as_whole_words_without_the_disambiguation_suffix() -> None:
    titles = ["Free Guy", "Shawn Levy", "Guy Gross", "Free Guy (soundtrack)", "Levy", None]
    texts = [
        "Free Guy\nFree Guy is a 2021 film directed by Shawn Levy.",
        "Shawn Levy\nShawn Levy is a Canadian director.",
        "Guy Gross\nGuy Gross is an Australian composer.",
        "Free Guy (soundtrack)\nThe album of the film.",
        "Levy\nLevy is a surname; see Shawn Levy.",
        "an untitled note about free guys",
    ]
    anchors, mentions = link_masks("Who directed Free Guy?", texts, titles)
    # the question names "Free Guy" (and its soundtrack, suffix dropped); not "Guy Gross"
    assert anchors == 0b01001
    # Free Guy's paragraph names Shawn Levy (and Levy, a whole word) and its own soundtrack's
    # base title, never itself; "free guys" is not the word "free guy"
    assert mentions[0] == 0b11010
    assert mentions[2] == 0 and mentions[5] == 0
    assert mentions[4] == 0b00010  # "Shawn Levy" inside the Levy page; "Levy" is itself


def test_link_bonus_makes_the_bridge_pair_beat_a_closer_look_alike() -> None:
    """The second hop (the director's paragraph) is far from the question in embedding space;
    with ``link`` it is worth reading, but only together with the paragraph that names it."""
    q = np.array([1.0, 0.0, 0.0])
    vecs = np.array([[0.9, 0.436, 0.0], [0.5, 0.0, 0.866], [0.7, 0.714, 0.0]])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = ["Free Guy\nA film by Shawn Levy.", "Shawn Levy\nA director.", "Free Fall\nA film."]
    titles = ["Free Guy", "Shawn Levy", "Free Fall"]
    question = "Where was the director of Free Guy born?"
    plain = CombinationUtility(q, vecs, question, texts, coverage=0.0, redundancy=0.0)
    linked = CombinationUtility(
        q, vecs, question, texts, coverage=0.0, redundancy=0.0, titles=titles, link=0.3
    )
    pair, look_alike, bridge_alone = (0, 1), (0, 2), (1,)
    p = dict(zip([pair, look_alike], plain.score_states([pair, look_alike]), strict=True))
    assert p[look_alike] > p[pair]
    scores = linked.score_states([pair, look_alike, bridge_alone])
    assert scores[0] > scores[1]
    # alone, the bridge paragraph earns nothing (nothing selected names it)
    assert scores[2] == pytest.approx(plain.score_states([bridge_alone])[0])
    # the search finds the pair within a budget of two chunks
    chosen = mcts_select([10, 10, 10], 20, linked, MCTSConfig(iterations=10)).chunks
    assert sorted(chosen) == [0, 1]
