"""Speculative decoding over the :class:`~ragkit.models.driver.DecoderLM` token protocol.

A drafter proposes up to ``gamma`` tokens; the target scores all of them in ONE
``eval_tokens`` call on its live KV cache; the longest acceptable prefix is kept and the rest
is rolled back with ``truncate`` (never a re-prefill). Written once for every backend (the
transformers and llama.cpp ones), in numpy; this module imports neither torch nor llama_cpp.

Acceptance (METHODS.md section 5.0 / 5.1):

* **greedy** (``temperature == 0``): accept while ``draft_i == argmax p_i``; the first
  mismatch emits ``argmax p_i``; a fully accepted draft emits the bonus ``argmax p_{gamma+1}``.
  The output is token-identical to target-only greedy decoding.
* **sampled**: accept ``x_i`` with probability ``min(1, p_hat_i(x_i) / q_i(x_i))``; on the
  first rejection emit a sample of the residual and stop; a fully accepted draft emits a
  bonus sample of ``p_{gamma+1}``. With ``eta == 0`` (the default) ``p_hat == p`` and the
  residual is ``normalize(max(0, p - q))``: standard, lossless speculative sampling (the output
  is distributed exactly as target-only sampling). Deterministic drafters (the n-gram
  drafter) have a one-hot ``q``.
* **RAPID knowledge transfer** (``eta > 0``): ``p_hat = softmax(z_p + eta * (q - p) * mask)``
  with the plausibility mask ``q >= alpha * max q``; tokens outside the mask keep their target
  logit. One gradient step that distils the target toward the retrieval-grounded drafter, a
  deliberate quality change, so the output follows ``p_hat``, not ``p``. The residual on
  rejection is selectable (``residual=``):

  - ``"paper"`` (default): ``normalize(max(0, p_hat - q))``, the residual of ``p_hat`` against
    ``q`` as in the RAPID paper; it makes the emitted token follow ``p_hat`` exactly.
  - ``"code"``: ``normalize(max(0, max(p - q, p - p_hat)))``, the variant in RAPID's released
    code (``src/generator.py``). Both equal ``normalize(max(0, p - q))`` when ``eta == 0``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ragkit.errors import InvalidParameter
from ragkit.models.base import GenerationResult
from ragkit.models.driver import DecoderLM, Decoding, Prompt

__all__ = [
    "Draft",
    "Drafter",
    "SpeculativeConfig",
    "SpeculativeDecoder",
    "SpeculativeResult",
    "SpeculativeStats",
    "Verdict",
    "check_same_vocabulary",
    "knowledge_transfer",
    "residual_distribution",
    "target_probs",
    "to_numpy",
    "verify",
]

Residual = Literal["paper", "code"]


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SpeculativeConfig:
    """Settings of the speculative loop, checked on construction.

    Attributes:
        gamma: Most tokens drafted per target call (RAPID: 10).
        eta: Knowledge-transfer step size (0: lossless standard speculative decoding).
        alpha: Plausibility mask ``q >= alpha * max q`` for the transfer, in (0, 1].
        residual: Which residual to resample from on a rejection (``"paper"`` or ``"code"``).
        confidence: Drafters stop a draft before a token whose drafter probability is below it.
    """

    gamma: int = 10
    eta: float = 0.0
    alpha: float = 0.1
    residual: Residual = "paper"
    confidence: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.gamma, int) or self.gamma <= 0:
            raise InvalidParameter("gamma", f"must be a positive integer, got {self.gamma!r}")
        if not self.eta >= 0:
            raise InvalidParameter("eta", f"must be >= 0, got {self.eta!r}")
        if not 0 < self.alpha <= 1:
            raise InvalidParameter("alpha", f"must be in (0, 1], got {self.alpha!r}")
        if self.residual not in ("paper", "code"):
            raise InvalidParameter("residual", f"must be 'paper' or 'code', got {self.residual!r}")
        if not 0 <= self.confidence < 1:
            raise InvalidParameter("confidence", f"must be in [0, 1), got {self.confidence!r}")


# ---------------------------------------------------------------------- drafters


@dataclass
class Draft:
    """Tokens a drafter proposes after the accepted text.

    Attributes:
        tokens: The proposed token ids (possibly empty: nothing worth proposing).
        probs: ``[len(tokens), vocab]`` drafter distributions the tokens were drawn from, or
            ``None`` for a deterministic drafter (treated as one-hot rows).
    """

    tokens: list[int]
    probs: np.ndarray | None = None


class Drafter(Protocol):
    """Proposes continuations of the accepted text; keeps whatever state it needs."""

    name: str

    def start(self, target_ids: Sequence[int]) -> None:
        """Begin a generation whose target prompt is ``target_ids``."""

    def propose(
        self, generated: Sequence[int], gamma: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        """Up to ``gamma`` tokens to follow ``generated`` (the accepted completion so far)."""
        ...

    def finish(self) -> None:
        """The generation is over (free per-generation state)."""


# ---------------------------------------------------------------------- distributions


def to_numpy(logits: Any) -> np.ndarray:
    """float64 numpy logits from a backend's rows (numpy, or a torch tensor on any device)."""
    if hasattr(logits, "detach"):  # a torch tensor: duck-typed so torch is never imported here
        logits = logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float64)


def target_probs(logits: np.ndarray, temperature: float, top_p: float = 1.0) -> np.ndarray:
    """Row-wise sampling distribution: softmax of ``logits / temperature``, top-p filtered."""
    z = np.atleast_2d(logits) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        ranked = np.take_along_axis(probs, order, axis=-1)
        drop = (np.cumsum(ranked, axis=-1) - ranked) > top_p
        ranked[drop] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, ranked, axis=-1)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs if np.ndim(logits) > 1 else probs[0]


def knowledge_transfer(p: np.ndarray, q: np.ndarray, eta: float, alpha: float) -> np.ndarray:
    """RAPID's ``p_hat = softmax(log p + eta * (q - p) * [q >= alpha * max q])`` (one row).

    ``log p`` stands for the target logits (softmax is shift-invariant); tokens the target
    rules out (``p == 0``, e.g. outside top-p) stay impossible.
    """
    if eta == 0:
        return p
    mask = q >= alpha * q.max()
    with np.errstate(divide="ignore"):
        z = np.log(p)
    z = z + eta * (q - p) * mask
    z = z - z[np.isfinite(z)].max()
    out = np.exp(z)
    return out / out.sum()


def residual_distribution(
    p: np.ndarray, q: np.ndarray, p_hat: np.ndarray, rule: Residual
) -> np.ndarray:
    """Distribution of the correction token after a rejection (see the module docstring)."""
    if rule == "paper":
        res = np.maximum(0.0, p_hat - q)
    else:
        res = np.maximum(0.0, np.maximum(p - q, p - p_hat))
    total = res.sum()
    if total <= 1e-12:  # q dominates everywhere (p_hat == q): any sample of p_hat is exact
        return p_hat
    return res / total


@dataclass
class Verdict:
    """Outcome of verifying one draft.

    Attributes:
        accepted: How many leading draft tokens were accepted.
        token: The token emitted after them (correction on a rejection, bonus otherwise).
    """

    accepted: int
    token: int


def verify(
    draft: Draft,
    target_logits: np.ndarray,
    *,
    temperature: float,
    rng: np.random.Generator,
    top_p: float = 1.0,
    eta: float = 0.0,
    alpha: float = 0.1,
    residual: Residual = "paper",
) -> Verdict:
    """Accept a prefix of ``draft`` against the target's logits.

    Args:
        draft: The drafted tokens (and their drafter distributions for sampled mode).
        target_logits: ``[len(draft.tokens) + 1, vocab]``: row ``i`` scores the position of
            draft token ``i``; the last row the position after the whole draft.
        temperature: 0 for greedy acceptance; > 0 for speculative sampling.
        rng: Randomness for sampled acceptance.
        top_p: Nucleus filter on the target distribution (sampled mode).
        eta: Knowledge-transfer step (sampled mode; 0 is lossless).
        alpha: Plausibility mask threshold for the transfer.
        residual: Residual rule on rejection.

    Returns:
        The accepted count and the token to emit after the accepted prefix.
    """
    tokens = draft.tokens
    if len(target_logits) != len(tokens) + 1:
        raise ValueError(f"expected {len(tokens) + 1} logits rows, got {len(target_logits)}")
    if temperature == 0:
        best = np.argmax(target_logits, axis=-1)
        k = 0
        while k < len(tokens) and tokens[k] == int(best[k]):
            k += 1
        return Verdict(k, int(best[k]))
    p_rows = target_probs(target_logits, temperature, top_p)
    for i, x in enumerate(tokens):
        p = p_rows[i]
        if draft.probs is None:
            q = np.zeros_like(p)
            q[x] = 1.0
        else:
            q = np.asarray(draft.probs[i], dtype=np.float64)
        p_hat = knowledge_transfer(p, q, eta, alpha)
        if q[x] <= 0 or rng.random() >= min(1.0, p_hat[x] / q[x]):
            dist = residual_distribution(p, q, p_hat, residual)
            return Verdict(i, int(rng.choice(len(dist), p=dist)))
    bonus = p_rows[len(tokens)]
    return Verdict(len(tokens), int(rng.choice(len(bonus), p=bonus)))


# ---------------------------------------------------------------------- the loop


@dataclass
class SpeculativeStats:
    """Counters of one speculative generation.

    Attributes:
        target_calls: Target forward calls after the prompt (verifications and plain steps).
        drafted: Draft tokens sent to the target.
        accepted: Draft tokens the target accepted.
        emitted: Tokens produced (accepted + corrections + bonuses + plain steps).
        bonus: Fully accepted drafts (each emitted a bonus token).
        draft_seconds: Time spent in the drafter.
        target_seconds: Time spent in target calls after the prompt.
        decode_seconds: Wall time of the decoding loop (prompt prefill excluded).
    """

    target_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    bonus: int = 0
    draft_seconds: float = 0.0
    target_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        """Tokens produced per target call after the prompt (1.0 is plain decoding)."""
        return self.emitted / self.target_calls if self.target_calls else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Decode throughput (prompt prefill excluded)."""
        return self.emitted / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """Plain numbers for traces and JSON output."""
        return {
            "target_calls": self.target_calls,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "bonus": self.bonus,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "tokens_per_target_call": round(self.tokens_per_target_call, 4),
            "tokens_per_second": round(self.tokens_per_second, 3),
            "draft_seconds": round(self.draft_seconds, 4),
            "target_seconds": round(self.target_seconds, 4),
        }


@dataclass
class SpeculativeResult:
    """A generation and its speculative counters."""

    result: GenerationResult
    stats: SpeculativeStats = field(default_factory=SpeculativeStats)


class GammaPolicy(Protocol):
    """Chooses each step's draft length from measured acceptance and cost (0: plain step)."""

    def gamma(self) -> int:
        """Draft length for the next step."""
        ...

    def record(self, drafted: int, emitted: int, seconds: float) -> None:
        """One step's outcome: tokens drafted, tokens produced, wall time of the step."""


def speculate(
    target: DecoderLM,
    drafter: Any,
    loop: Callable[[list[int], Decoding, SpeculativeStats], None],
    prompt: Prompt,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    stop: Sequence[str] | None,
    on_token: Callable[[str], None] | None,
    prefix_cache: Any | None,
    clock: Callable[[], float] = time.perf_counter,
) -> SpeculativeResult:
    """The set-up every speculative loop shares (chain or tree drafts).

    Checks the arguments, brings the target's cache to the prompt (a prefix state or what it
    already holds, then everything but the last prompt token), starts and finishes the drafter,
    and times ``loop(pending, decoding, stats)``, which drafts and verifies until
    ``decoding`` is done; ``pending`` is the last prompt token, not yet read by the target.
    """
    started = clock()
    ((ids, limit),), _ = target._prepare([prompt], max_new_tokens, temperature, top_p, seed)
    decoding = Decoding(target.decode, target.eos_token_ids, limit, stop, on_token, started)  # type: ignore[attr-defined]
    stats = SpeculativeStats()
    reused = 0
    if decoding.done:
        return SpeculativeResult(decoding.result(len(ids), 0), stats)
    drafter.start(ids)
    try:
        with target.inference():
            reused = target.sync(ids, prefix_cache)
            pending = ids[reused:]
            if len(pending) > 1:  # prefill all but the last prompt token (no logits kept)
                target.eval_last(pending[:-1])
                pending = pending[-1:]
            loop_start = clock()
            loop(pending, decoding, stats)
            stats.decode_seconds = clock() - loop_start
    finally:
        drafter.finish()
        target._end_call()
    return SpeculativeResult(decoding.result(len(ids), reused), stats)


class SpeculativeDecoder:
    """Target + drafter speculative generation over two :class:`DecoderLM` caches.

    Args:
        target: The verifying model (its output distribution is what greedy/``eta == 0``
            sampling reproduce).
        drafter: The token proposer (:class:`~ragkit.decoding.drafters.ModelDrafter`,
            :class:`~ragkit.decoding.drafters.NgramDrafter`, ...).
        config: gamma, eta, alpha, residual rule, drafter confidence threshold.
        policy: Optional adaptive draft length (``None``: always ``config.gamma``).
        clock: Time source (injectable for tests of the adaptive policy).
    """

    def __init__(
        self,
        target: DecoderLM,
        drafter: Drafter,
        config: SpeculativeConfig | None = None,
        policy: GammaPolicy | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.target = target
        self.drafter = drafter
        self.config = config or SpeculativeConfig()
        self.policy = policy
        self.clock = clock

    def generate(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        prefix_cache: Any | None = None,
    ) -> SpeculativeResult:
        """Generate like :meth:`DecoderLM.generate`, drafting and verifying in blocks.

        Args:
            prompt: The target's prompt: token ids, chat messages or text.
            max_new_tokens: Upper bound on new tokens (also capped by the target's context).
            temperature: 0 for greedy (output identical to target-only greedy); > 0 samples.
            top_p: Nucleus mass of the target distribution (sampled mode).
            seed: Makes sampling reproducible.
            stop: Strings that end generation.
            on_token: Receives text deltas as tokens are accepted.
            prefix_cache: A target prefix state the prompt starts with (e.g. the document).

        Returns:
            The generation (same fields as the plain driver's) and the speculative counters.
        """

        def loop(pending: list[int], decoding: Decoding, stats: SpeculativeStats) -> None:
            rng = np.random.default_rng(seed)
            self._loop(pending, decoding, stats, temperature, top_p, rng, decoding.limit)

        return speculate(
            self.target,
            self.drafter,
            loop,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            on_token=on_token,
            prefix_cache=prefix_cache,
            clock=self.clock,
        )

    def _loop(
        self,
        pending: list[int],
        decoding: Decoding,
        stats: SpeculativeStats,
        temperature: float,
        top_p: float,
        rng: np.random.Generator,
        limit: int,
    ) -> None:
        """Draft, verify in one target call, roll back, until the decoding is done.

        Invariant: the target cache holds the prompt and accepted tokens except ``pending``
        (the last emitted token, not yet evaluated).
        """
        cfg = self.config
        target = self.target
        while not decoding.done:
            step_start = self.clock()
            remaining = limit - len(decoding.token_ids)
            want = self.policy.gamma() if self.policy is not None else cfg.gamma
            gamma = max(0, min(want, cfg.gamma, remaining - 1))
            draft = Draft([])
            if gamma > 0:
                t0 = self.clock()
                draft = self.drafter.propose(decoding.token_ids, gamma, temperature, rng)
                stats.draft_seconds += self.clock() - t0
                draft.tokens = [int(t) for t in draft.tokens[:gamma]]
            base = target.kv_length
            t0 = self.clock()
            if draft.tokens:
                rows = to_numpy(target.eval_tokens([*pending, *draft.tokens]))
                rows = rows[len(pending) - 1 :]
            else:
                rows = to_numpy(target.eval_last(pending))[None, :]
            stats.target_seconds += self.clock() - t0
            stats.target_calls += 1
            verdict = verify(
                draft,
                rows,
                temperature=temperature,
                rng=rng,
                top_p=top_p,
                eta=cfg.eta,
                alpha=cfg.alpha,
                residual=cfg.residual,
            )
            stats.drafted += len(draft.tokens)
            stats.accepted += verdict.accepted
            stats.bonus += int(bool(draft.tokens) and verdict.accepted == len(draft.tokens))
            keep = base + len(pending) + verdict.accepted
            if target.kv_length > keep:
                target.truncate(keep)  # roll back the rejected suffix
            emitted = 0
            for token in [*draft.tokens[: verdict.accepted], verdict.token]:
                emitted += 1
                if decoding.add(token):
                    break
            stats.emitted += emitted
            pending = [verdict.token]
            if self.policy is not None:
                self.policy.record(len(draft.tokens), emitted, self.clock() - step_start)


def check_same_vocabulary(target: DecoderLM, drafter: DecoderLM, sample: int = 64) -> None:
    """Refuse a drafter whose vocabulary differs from the target's (sizes and token texts).

    Raises:
        InvalidParameter: Naming both models, when the sizes or a sampled token's text differ.
    """
    t_name = getattr(target, "name", type(target).__name__)
    d_name = getattr(drafter, "name", type(drafter).__name__)
    t_size, d_size = _vocab_size(target), _vocab_size(drafter)
    if t_size != d_size:
        raise InvalidParameter(
            "drafter",
            f"drafter {d_name!r} has a {d_size}-token vocabulary, target {t_name!r} has "
            f"{t_size}: speculative decoding needs one shared vocabulary",
        )
    probe = "The quick brown fox, 12 ½ über-naïve 字 tokens."
    if target.encode(probe) != drafter.encode(probe):  # type: ignore[attr-defined]
        raise InvalidParameter(
            "drafter",
            f"drafter {d_name!r} and target {t_name!r} tokenize text differently: "
            "speculative decoding needs one shared vocabulary",
        )
    step = max(1, t_size // sample)
    for token in range(0, t_size, step):
        a, b = target.decode([token]), drafter.decode([token])  # type: ignore[attr-defined]
        if a != b:
            raise InvalidParameter(
                "drafter",
                f"drafter {d_name!r} and target {t_name!r} disagree on token {token} "
                f"({b!r} vs {a!r}): speculative decoding needs one shared vocabulary",
            )


def _vocab_size(lm: DecoderLM) -> int:
    size = getattr(lm, "vocab_size", None)
    if size is None:
        raise InvalidParameter(
            "drafter", f"model {getattr(lm, 'name', lm)!r} does not report vocab_size"
        )
    return int(size)
