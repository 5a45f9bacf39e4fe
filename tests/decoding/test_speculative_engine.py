"""The speculative engine on numpy toy models: acceptance math, losslessness, rollback, policy.

Every expectation is computed from the toy models' exact probabilities: the chi-square tests
compare sampled frequencies with the target's own distribution, so a wrong residual or
acceptance ratio fails them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare
from spec_toy import BigramLM

from ragkit.decoding import (
    AdaptiveGamma,
    Draft,
    FallbackDrafter,
    ModelDrafter,
    NgramDrafter,
    SpeculativeConfig,
    SpeculativeDecoder,
    check_same_vocabulary,
    knowledge_transfer,
    residual_distribution,
    verify,
)
from ragkit.errors import InvalidParameter

V = 4
TARGET = np.log(
    np.array(
        [
            [0.10, 0.50, 0.30, 0.10],
            [0.40, 0.10, 0.20, 0.30],
            [0.25, 0.25, 0.05, 0.45],
            [0.60, 0.05, 0.15, 0.20],
        ]
    )
)
DRAFT = np.log(
    np.array(
        [
            [0.30, 0.30, 0.30, 0.10],
            [0.70, 0.10, 0.10, 0.10],
            [0.10, 0.10, 0.10, 0.70],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# ---------------------------------------------------------------------- verify()


def test_greedy_verify_accepts_the_argmax_prefix_then_corrects() -> None:
    logits = np.log(np.array([[0.1, 0.9, 0, 0], [0.8, 0.1, 0.1, 0], [0, 0, 0.3, 0.7]]) + 1e-9)
    rng = np.random.default_rng(0)
    partial = verify(Draft([1, 2]), logits, temperature=0, rng=rng)
    assert (partial.accepted, partial.token) == (1, 0)  # 2 != argmax 0: correction is 0
    full = verify(Draft([1, 0]), logits, temperature=0, rng=rng)
    assert (full.accepted, full.token) == (2, 3)  # all accepted: bonus argmax of the last row
    with pytest.raises(ValueError, match="expected 3 logits rows"):
        verify(Draft([1, 0]), logits[:2], temperature=0, rng=rng)


def test_sampled_verify_first_token_follows_p_exactly() -> None:
    """One draft step: accepted x ~ q or residual sample; the emitted token must be ~ p."""
    p = _softmax(TARGET[2])
    q = _softmax(DRAFT[2])
    rng = np.random.default_rng(1)
    n = 20000
    counts = np.zeros(V)
    accepted = 0
    for _ in range(n):
        x = int(rng.choice(V, p=q))
        v = verify(Draft([x], q[None, :]), np.stack([TARGET[2], TARGET[x]]), temperature=1, rng=rng)
        counts[x if v.accepted else v.token] += 1
        accepted += v.accepted
    assert chisquare(counts, n * p).pvalue > 1e-3
    # the acceptance rate is sum_x min(p, q) (Leviathan et al.)
    assert accepted / n == pytest.approx(np.minimum(p, q).sum(), abs=0.015)


def test_deterministic_draft_is_one_hot_and_lossless() -> None:
    p = _softmax(TARGET[0])
    rng = np.random.default_rng(2)
    n = 20000
    counts = np.zeros(V)
    for _ in range(n):
        v = verify(Draft([2]), np.stack([TARGET[0], TARGET[2]]), temperature=1, rng=rng)
        counts[2 if v.accepted else v.token] += 1
    assert chisquare(counts, n * p).pvalue > 1e-3


def test_eta_zero_is_the_identity_and_both_residuals_agree() -> None:
    p, q = _softmax(TARGET[1]), _softmax(DRAFT[1])
    assert knowledge_transfer(p, q, 0.0, 0.1) is p
    paper = residual_distribution(p, q, p, "paper")
    code = residual_distribution(p, q, p, "code")
    np.testing.assert_allclose(paper, code)
    expected = np.maximum(0, p - q)
    np.testing.assert_allclose(paper, expected / expected.sum())


def test_eta_moves_mass_toward_q_only_inside_the_mask() -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1])
    q = np.array([0.05, 0.6, 0.33, 0.02])  # mask at alpha=0.1: q >= 0.06 -> tokens 1 and 2
    p_hat = knowledge_transfer(p, q, eta=5.0, alpha=0.1)
    assert p_hat.sum() == pytest.approx(1.0)
    mask = q >= 0.1 * q.max()
    assert mask.tolist() == [False, True, True, False]
    # logit shift is eta * (q - p) inside the mask and zero outside it
    shift = np.log(p_hat) - np.log(p)
    shift -= shift[~mask][0]
    np.testing.assert_allclose(shift[~mask], 0.0, atol=1e-12)
    np.testing.assert_allclose(shift[mask], 5.0 * (q - p)[mask], atol=1e-12)
    # token 1 (q > p) gains mass, and so does the mask as a whole; outside tokens keep ratios
    assert p_hat[1] > p[1]
    assert p_hat[mask].sum() > p[mask].sum()
    assert p_hat[0] / p_hat[3] == pytest.approx(p[0] / p[3])
    # a token with q < alpha * max q is not pulled toward q even though q < p
    p_all = knowledge_transfer(p, q, eta=5.0, alpha=0.01)  # mask covers everything now
    assert p_all[0] < p_hat[0]


def test_paper_residual_makes_the_output_follow_p_hat() -> None:
    p, q = _softmax(TARGET[3]), _softmax(DRAFT[3])
    eta, alpha = 3.0, 0.1
    p_hat = knowledge_transfer(p, q, eta, alpha)
    rng = np.random.default_rng(3)
    n = 20000
    counts = np.zeros(V)
    for _ in range(n):
        x = int(rng.choice(V, p=q))
        v = verify(
            Draft([x], q[None, :]),
            np.stack([TARGET[3], TARGET[x]]),
            temperature=1,
            rng=rng,
            eta=eta,
            alpha=alpha,
        )
        counts[x if v.accepted else v.token] += 1
    assert chisquare(counts, n * p_hat).pvalue > 1e-3
    code = residual_distribution(p, q, p_hat, "code")
    assert code.sum() == pytest.approx(1.0) and np.all(code >= 0)
    assert not np.allclose(code, residual_distribution(p, q, p_hat, "paper"))


# ---------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 0}, "gamma: must be a positive integer"),
        ({"gamma": -3}, "gamma: must be a positive integer"),
        ({"eta": -0.5}, "eta: must be >= 0"),
        ({"alpha": 0.0}, r"alpha: must be in \(0, 1\]"),
        ({"alpha": 1.5}, r"alpha: must be in \(0, 1\]"),
        ({"residual": "mine"}, "residual: must be"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        SpeculativeConfig(**kwargs)


def test_vocabulary_mismatch_names_both_models() -> None:
    target = BigramLM(TARGET, name="big")
    with pytest.raises(InvalidParameter, match="'small'.*5-token.*'big' has 4"):
        ModelDrafter(BigramLM(np.zeros((5, 5)), name="small"), target=target)
    with pytest.raises(InvalidParameter, match="separate model instance"):
        ModelDrafter(target, target=target)
    check_same_vocabulary(target, BigramLM(DRAFT, name="small"))  # same size and texts: fine


# ---------------------------------------------------------------------- the loop


def _greedy_reference(table: np.ndarray, prompt: list[int], n: int) -> list[int]:
    out, last = [], prompt[-1]
    for _ in range(n):
        last = int(np.argmax(table[last]))
        out.append(last)
    return out


def test_greedy_loop_matches_target_only_and_rolls_back_both_caches() -> None:
    target = BigramLM(TARGET, name="t")
    draft_lm = BigramLM(DRAFT, name="d")
    decoder = SpeculativeDecoder(target, ModelDrafter(draft_lm, target=target, confidence=0))
    prompt = [0, 2]
    out = decoder.generate(prompt, max_new_tokens=12)
    assert out.result.token_ids == _greedy_reference(TARGET, prompt, 12)
    assert out.result.token_ids == target.generate(prompt, max_new_tokens=12).token_ids
    stats = out.stats
    assert stats.emitted == 12 and stats.drafted > 0
    assert 0 < stats.accepted < stats.drafted  # the drafter is right sometimes, not always
    assert stats.target_calls < 12 + 1
    assert stats.tokens_per_target_call == pytest.approx(12 / stats.target_calls)


def test_perfect_drafter_takes_the_bonus_path() -> None:
    target = BigramLM(TARGET, name="t")
    drafter = ModelDrafter(BigramLM(TARGET, name="same"), target=target, confidence=0)
    out = SpeculativeDecoder(target, drafter, SpeculativeConfig(gamma=4)).generate(
        [1], max_new_tokens=10
    )
    assert out.result.token_ids == _greedy_reference(TARGET, [1], 10)
    # 10 tokens = 5 + 5: gamma 4 accepted plus a bonus, twice (the last draft is capped to 4)
    assert out.stats.target_calls == 2
    assert out.stats.bonus == 2 and out.stats.acceptance_rate == 1.0
    assert out.stats.accepted == 8


def test_rollback_leaves_the_target_cache_as_a_fresh_prefill() -> None:
    target = BigramLM(TARGET, name="t")
    drafter = ModelDrafter(BigramLM(DRAFT, name="d"), target=target, confidence=0)
    decoder = SpeculativeDecoder(target, drafter)
    seen: list[list[int]] = []
    original = target.truncate

    def spy(n: int) -> None:
        original(n)
        seen.append(list(target.cache))

    target.truncate = spy  # type: ignore[method-assign]
    out = decoder.generate([0, 2], max_new_tokens=8)
    rollbacks = [c for c in seen if c]
    assert rollbacks, "a wrong drafter must cause rollbacks"
    full = [0, 2, *out.result.token_ids]
    for cache in rollbacks:  # every rolled-back cache is a prefix of the accepted text
        assert cache == full[: len(cache)]


@pytest.mark.parametrize("confidence", [0.0, 0.28])
def test_sampled_loop_with_eta_zero_matches_the_target_distribution(confidence: float) -> None:
    """Three sampled tokens through the full loop (model drafter): 64 outcomes, chi-square.

    With confidence 0.28 the drafter stops early after token 3 (its top probability is 0.25):
    early stopping must not bias the output.
    """
    prompt = [2]
    target = BigramLM(TARGET, name="t")
    decoder = SpeculativeDecoder(
        target,
        ModelDrafter(BigramLM(DRAFT, name="d"), target=target, confidence=confidence),
        SpeculativeConfig(gamma=3),
    )
    n = 4000
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(n):
        ids = tuple(
            decoder.generate(prompt, max_new_tokens=3, temperature=1, seed=seed).result.token_ids
        )
        counts[ids] = counts.get(ids, 0) + 1
    outcomes = list(itertools.product(range(V), repeat=3))
    expected = []
    for seq in outcomes:
        prob, last = 1.0, prompt[-1]
        for t in seq:
            prob *= target.probs(last)[t]
            last = t
        expected.append(prob * n)
    observed = [counts.get(seq, 0) for seq in outcomes]
    assert sum(observed) == n
    assert chisquare(observed, expected).pvalue > 1e-3


def test_ngram_drafter_proposes_the_continuation_of_the_latest_match() -> None:
    drafter = NgramDrafter([[9, 9, 5, 6, 7, 8]], max_ngram=2)
    drafter.start([1, 2, 3, 4, 1, 2])
    rng = np.random.default_rng(0)
    # the last bigram (1, 2) occurred at the start of the prompt, followed by 3, 4, 1, 2
    assert drafter.propose([], 3, 0, rng).tokens == [3, 4, 1]
    # after generating 5, the unigram 5 is found only in the passage
    assert drafter.propose([5], 3, 0, rng).tokens == [6, 7, 8]
    assert drafter.propose([5, 0], 3, 0, rng).tokens == []
    with pytest.raises(InvalidParameter, match="min_ngram"):
        NgramDrafter(max_ngram=0)


def test_ngram_drafter_on_a_copying_target_accepts_a_lot() -> None:
    # a target that copies a cycle 1->2->3->1: the n-gram lookup of the prompt is always right
    table = np.full((V, V), -5.0)
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 1)]:
        table[a, b] = 5.0
    target = BigramLM(table, name="copy")
    out = SpeculativeDecoder(target, NgramDrafter()).generate([0, 1, 2, 3, 1], max_new_tokens=20)
    assert out.result.token_ids == _greedy_reference(table, [1], 20)
    assert out.stats.acceptance_rate == 1.0
    assert out.stats.target_calls <= 3


def test_fallback_drafter_uses_ngrams_when_the_model_is_not_confident() -> None:
    target = BigramLM(TARGET, name="t")
    flat = BigramLM(np.zeros((V, V)), name="flat")  # q = 0.25 everywhere: below confidence 0.5
    model = ModelDrafter(flat, target=target, confidence=0.5)
    rng = np.random.default_rng(0)
    model.start([0, 1])
    assert model.propose([], 3, 0, rng).tokens == []
    model.finish()
    drafter = FallbackDrafter(model, NgramDrafter())
    drafter.start([0, 1, 0, 1])
    assert drafter.propose([], 3, 0, rng).tokens == [0, 1, 0]  # overlapping copy of "0 1"
    drafter.finish()


class _Clock:
    """A fake clock: each target token costs ``unit``, a target call ``overhead`` more."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_adaptive_policy_turns_off_a_drafter_that_does_not_pay() -> None:
    clock = _Clock()
    target = BigramLM(TARGET, name="t")
    original = target.eval_tokens

    def costly(ids: list[int]) -> np.ndarray:
        clock.now += 1.0 * len(ids)  # verification cost grows with the block, as on a CPU
        return original(ids)

    target.eval_tokens = costly  # type: ignore[method-assign]
    never_right = BigramLM(-TARGET, name="anti")  # drafts the target's least likely tokens
    policy = AdaptiveGamma(gamma_max=6, off_steps=10)
    decoder = SpeculativeDecoder(
        target,
        ModelDrafter(never_right, target=target, confidence=0),
        SpeculativeConfig(gamma=6),
        policy=policy,
        clock=clock,
    )
    out = decoder.generate([0], max_new_tokens=200)
    assert out.result.token_ids == _greedy_reference(TARGET, [0], 200)
    assert policy.turned_off >= 2  # probed again, failed again
    assert out.stats.drafted < 30  # the doubling plain stretches make probes rare
    # simulated time within 15% of never drafting (200 one-token steps): probes cost little
    assert clock.now <= 1.15 * 200


def test_adaptive_policy_grows_gamma_when_drafts_are_accepted() -> None:
    policy = AdaptiveGamma(gamma_max=10, gamma_min=1)
    policy.current = 2
    policy.record(drafted=2, emitted=3, seconds=1.0)
    assert policy.gamma() == 4
    policy.record(drafted=4, emitted=1, seconds=1.0)  # first token rejected
    assert policy.gamma() == 1
    with pytest.raises(InvalidParameter, match="gamma_min"):
        AdaptiveGamma(gamma_max=2, gamma_min=3)


def test_a_new_answer_keeps_the_backoff_and_re_measures_drafting() -> None:
    policy = AdaptiveGamma(gamma_max=10, min_samples=1, off_steps=8)
    policy.record(drafted=0, emitted=1, seconds=1.0)  # plain: 1 token/s
    policy.record(drafted=4, emitted=1, seconds=3.0)  # drafting: 0.33 token/s -> off
    assert policy.gamma() == 0 and policy.off == 8
    policy.begin_answer()
    assert policy.gamma() == 0 and policy.off == 8  # the backoff carries into the answer
    assert policy.plain_rate == 1.0
    on = AdaptiveGamma(gamma_max=10)
    on.record(drafted=4, emitted=5, seconds=1.0)
    on.record(drafted=6, emitted=7, seconds=1.0)
    assert on.gamma() == 8 and on.spec_rate is not None
    on.begin_answer()  # a good last answer does not vouch for this one
    assert on.gamma() == 4 and on.spec_rate is None and on.spec_samples == 0
