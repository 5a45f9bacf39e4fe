"""One generation driver over a backend's token step, shared by the transformers and llama.cpp backends.

A backend (:class:`DecoderLM` subclass) provides a small token-level protocol over one live
sequence held in its KV cache:

* ``kv_tokens`` / ``kv_length``: the tokens the KV cache holds;
* ``eval_last(ids)``: append ``ids`` to the cache, return the logits of the last position;
* ``eval_tokens(ids)``: append ``ids``, return the logits of every new position
  (``[len(ids), vocab]``: batched verification of drafted tokens);
* ``truncate(n)``: keep only the first ``n`` cached tokens (rollback of rejected drafts);
* ``make_sampler``, ``inference``, and prefix-state hooks (``check_prefix_owner``,
  ``_load_prefix``).

Everything above the token step is written once here: argument checks, prompt ids (text, chat
messages or ids) and the chat-template fallback, the context budget, prefix-cache reuse with
its mismatch warning, greedy/sampled decoding with EOS, stop strings and streaming
(:class:`Decoding`), and :class:`GenerationResult` timings. Speculative decoding, memory and
notes build on the same protocol, so they are written once for both backends.

This module imports neither torch nor llama_cpp.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ragkit.models.base import (
    ChatMessageDict,
    GenerationResult,
    PromptHelpers,
    StopReason,
)
from ragkit.models.errors import ContextLengthError

__all__ = [
    "Decoding",
    "DecoderLM",
    "NumpySampler",
    "PrefixState",
    "Prompt",
    "Sampler",
    "TextStream",
    "check_sampling",
    "common_prefix_length",
]

logger = logging.getLogger(__name__)

Prompt = list[int] | list[ChatMessageDict] | str
Sampler = Callable[[Any], int]
"""Picks the next token id from one position's logits."""


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse sampling settings no backend can honour (before any work is done)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class PrefixState:
    """Base of a backend's reusable prompt-prefix cache; backends add their payload fields.

    Attributes:
        token_ids: The prefix's token ids (a prompt reuses the cache when it starts with them).
    """

    token_ids: list[int]

    def __len__(self) -> int:
        return len(self.token_ids)


class NumpySampler:
    """Greedy (temperature 0) or temperature/top-p sampling over numpy logits, seedable."""

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        import numpy as np

        check_sampling(temperature, top_p)
        self.greedy = temperature == 0
        self.temperature = temperature
        self.top_p = top_p
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: Any) -> int:
        import numpy as np

        if self.greedy:
            return int(np.argmax(logits))
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            sorted_probs = probs[order]
            drop = (np.cumsum(sorted_probs) - sorted_probs) > self.top_p
            sorted_probs[drop] = 0.0
            probs = np.zeros_like(probs)
            probs[order] = sorted_probs
            probs /= probs.sum()
        return int(self.rng.choice(len(probs), p=probs))


class TextStream:
    """Incremental detokenization for stop strings and streaming deltas.

    Text that could be the start of a stop string is held back, so what was streamed always
    equals a prefix of the final text and the deltas concatenate to it exactly.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        stop: Sequence[str] | None,
        on_token: Callable[[str], None] | None,
    ) -> None:
        self.decode = decode
        self.stop = [s for s in (stop or []) if s]
        self.max_stop = max((len(s) for s in self.stop), default=0)
        self.on_token = on_token
        self.active = bool(self.stop) or on_token is not None
        self.emitted = 0
        self.checked = 0
        self.final: str | None = None

    def _holdback(self, text: str) -> int:
        for size in range(min(self.max_stop - 1, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

    def push(self, generated: Sequence[int]) -> bool:
        """Feed the tokens so far; returns True when a stop string was produced."""
        text = self.decode(generated)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return False
        if self.stop:
            start = max(0, self.checked - self.max_stop + 1)
            hits = [i for i in (text.find(s, start) for s in self.stop) if i != -1]
            if hits:
                self.final = text[: min(hits)]
                return True
            self.checked = len(text)
        if self.on_token is not None:
            safe = len(text) - self._holdback(text) if self.stop else len(text)
            if safe > self.emitted:
                self.on_token(text[self.emitted : safe])
                self.emitted = safe
        return False

    def finish(self, generated: Sequence[int]) -> str:
        """Final text; streams whatever was held back."""
        text = self.final if self.final is not None else self.decode(generated)
        if self.on_token is not None and len(text) > self.emitted:
            self.on_token(text[self.emitted :])
            self.emitted = len(text)
        return text


class Decoding:
    """Bookkeeping of one generation, whatever proposes the tokens (plain or speculative).

    :meth:`add` takes each chosen token in order and says when to stop (EOS, a stop string,
    the token limit); :meth:`result` assembles the :class:`GenerationResult`.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        eos_token_ids: frozenset[int],
        limit: int,
        stop: Sequence[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        started: float | None = None,
    ) -> None:
        self.stream = TextStream(decode, stop, on_token)
        self.eos = eos_token_ids
        self.limit = limit
        self.started = time.perf_counter() if started is None else started
        self.token_ids: list[int] = []
        self.reason: StopReason = "length"
        self.first = 0.0
        self.done = limit <= 0

    def add(self, token: int) -> bool:
        """Accept the next chosen token; returns True when generation is over."""
        if not self.token_ids and not self.first:
            self.first = time.perf_counter() - self.started
        if token in self.eos:
            self.reason = "eos"
            self.done = True
            return True
        self.token_ids.append(token)
        if self.stream.active and self.stream.push(self.token_ids):
            self.reason = "stop"
            self.done = True
        elif len(self.token_ids) >= self.limit:
            self.done = True
        return self.done

    def result(self, prompt_tokens: int, prefix_tokens_reused: int = 0) -> GenerationResult:
        """The finished generation (streams any held-back text)."""
        text = self.stream.finish(self.token_ids)
        seconds = time.perf_counter() - self.started
        return GenerationResult(
            text=text,
            token_ids=self.token_ids,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(self.token_ids),
            seconds=seconds,
            first_token_seconds=self.first or seconds,
            stop_reason=self.reason,
            prefix_tokens_reused=prefix_tokens_reused,
        )


class DecoderLM(PromptHelpers):
    """A causal LM backend: the token protocol (abstract) plus everything written once over it.

    Subclasses implement ``kv_tokens``, ``truncate``, ``eval_last``, ``eval_tokens``,
    ``make_sampler``, ``check_prefix_owner``, ``_load_prefix``, ``_render_chat``, ``encode``,
    ``decode``, ``_encode_text``, ``context_length`` and ``eos_token_ids``.
    """

    supports_logits = True
    supports_prefix_cache = True
    implicit_prefix_reuse: ClassVar[bool] = False
    """Whether a call keeps the KV cache's common prefix with the previous call (llama.cpp)."""

    eos_token_ids: frozenset[int]

    # ------------------------------------------------------------------ token protocol

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens the KV cache holds, in order."""
        raise NotImplementedError

    @property
    def kv_length(self) -> int:
        """How many tokens the KV cache holds."""
        return len(self.kv_tokens)

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` cached tokens (roll back rejected draft tokens)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the KV cache, so the next call computes its prompt from scratch."""
        self.truncate(0)

    def eval_last(self, ids: Sequence[int]) -> Any:
        """Append ``ids`` to the cache; logits (``[vocab]``) of the last position."""
        raise NotImplementedError

    def eval_tokens(self, ids: Sequence[int]) -> Any:
        """Append ``ids`` to the cache; logits (``[len(ids), vocab]``) of every new position."""
        raise NotImplementedError

    def make_sampler(self, temperature: float, top_p: float, seed: int | None) -> Sampler:
        """The token chooser for these settings (greedy when ``temperature == 0``)."""
        raise NotImplementedError

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """Context for a run of token steps (transformers: ``torch.inference_mode``)."""
        return contextlib.nullcontext()

    def check_prefix_owner(self, prefix: Any) -> None:
        """Raise ``PrefixCacheError`` when ``prefix`` was computed by another model."""
        raise NotImplementedError

    def _load_prefix(self, prefix: Any, n: int) -> None:
        """Make the KV cache hold the first ``n`` tokens of ``prefix``."""
        raise NotImplementedError

    def _render_chat(self, messages: list[ChatMessageDict]) -> str | None:
        """The model's own chat template rendered as text, or ``None`` when it has none."""
        raise NotImplementedError

    # ------------------------------------------------------------------ written once

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens added)."""
        return len(self.encode(text))  # type: ignore[attr-defined]

    def chat_template_text(self, messages: list[ChatMessageDict]) -> str:
        """The chat prompt as text: the model's own template, else ``role: content`` lines."""
        rendered = self._render_chat(messages)
        if rendered is not None:
            return rendered
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def apply_chat_template(self, messages: list[ChatMessageDict]) -> list[int]:
        """Prompt token ids for a chat, ending with the assistant header."""
        return self.encode(self.chat_template_text(messages))  # type: ignore[attr-defined]

    def sync(self, ids: Sequence[int], prefix_cache: Any | None = None) -> int:
        """Make the KV cache hold the longest reusable prefix of ``ids`` (never all of it).

        A ``prefix_cache`` the ids start with is loaded; one they do not start with is ignored
        with a warning. Otherwise backends with ``implicit_prefix_reuse`` keep what the cache
        shares with ``ids``. At least one token of ``ids`` is always left to evaluate, so the
        next ``eval_last`` yields fresh logits.

        Returns:
            How many leading tokens of ``ids`` the cache now holds.
        """
        if len(ids) > self.context_length:  # type: ignore[attr-defined]
            raise ContextLengthError(
                f"{len(ids)} tokens do not fit the {self.context_length}-token context; "  # type: ignore[attr-defined]
                f"{self._context_hint}"
            )
        if prefix_cache is not None:
            self.check_prefix_owner(prefix_cache)
            n = len(prefix_cache)
            if n and len(ids) >= n and list(ids[:n]) == list(prefix_cache.token_ids):
                use = n if len(ids) > n else n - 1  # one token is re-fed to get fresh logits
                self._load_prefix(prefix_cache, use)
                return self.kv_length
            message = (
                "prompt does not start with the prefix cache's tokens; generating without it "
                "(build prompt ids as prefix ids + suffix ids to reuse the cache)"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)
        keep = 0
        if self.implicit_prefix_reuse:
            keep = min(common_prefix_length(self.kv_tokens, ids), len(ids) - 1)
        self.truncate(keep)
        return self.kv_length

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
    ) -> GenerationResult:
        """Generate a completion, one token step at a time over the live KV cache.

        Args:
            prompt: Token ids, chat messages (the model's chat template is applied) or text.
            max_new_tokens: Upper bound on new tokens (also capped by the context).
            temperature: 0 for greedy decoding; > 0 samples.
            top_p: Nucleus sampling mass (sampling only).
            seed: Makes sampling reproducible.
            stop: Strings that end generation; the returned text stops before them.
            on_token: Receives text deltas as they are decoded; they concatenate to ``text``.
            prefix_cache: From :meth:`prefill` (or loaded from disk); used when the prompt
                starts with its tokens, otherwise ignored with a warning. Never modified.

        Returns:
            The text, token ids, counts, timings and stop reason.
        """
        started = time.perf_counter()
        ((ids, limit),), sampler = self._prepare([prompt], max_new_tokens, temperature, top_p, seed)
        decoding = Decoding(self.decode, self.eos_token_ids, limit, stop, on_token, started)  # type: ignore[attr-defined]
        return self._decode(ids, decoding, sampler, prefix_cache)

    def _prepare(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
    ) -> tuple[list[tuple[list[int], int]], Sampler]:
        """Checked arguments: (prompt ids, new-token limit) per prompt, and the sampler."""
        check_sampling(temperature, top_p)
        batch = [self._prompt_ids(p) for p in prompts]
        if any(not ids for ids in batch):
            raise ValueError("empty prompt")
        jobs = [(ids, self._max_new(len(ids), max_new_tokens)) for ids in batch]
        return jobs, self.make_sampler(temperature, top_p, seed)

    def _decode(
        self, ids: list[int], decoding: Decoding, sampler: Sampler, prefix_cache: Any = None
    ) -> GenerationResult:
        """The generation loop: reuse what can be reused, then one token step per new token."""
        reused = 0
        if not decoding.done:
            with self.inference():
                reused = self.sync(ids, prefix_cache)
                logits = self.eval_last(ids[reused:])
                while not decoding.add(sampler(logits)):
                    logits = self.eval_last(decoding.token_ids[-1:])
            self._end_call()
        return decoding.result(len(ids), reused)

    def _end_call(self) -> None:
        """Hook after a generation or scoring call: drop state the backend does not keep."""

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[GenerationResult]:
        """Generate for several prompts (one after another unless the backend batches).

        Args:
            prompts: Token ids, chat messages or texts.
            max_new_tokens: Upper bound on new tokens per prompt.
            temperature: 0 for greedy decoding; > 0 samples (one sampler for the batch).
            top_p: Nucleus sampling mass (sampling only).
            seed: Makes sampling reproducible.
            stop: Strings that end a prompt's generation.

        Returns:
            One result per prompt, in order.
        """
        started = time.perf_counter()
        if not prompts:
            return []
        jobs, sampler = self._prepare(prompts, max_new_tokens, temperature, top_p, seed)
        return self._generate_batch(jobs, sampler, stop, started)

    def _generate_batch(
        self,
        jobs: list[tuple[list[int], int]],
        sampler: Sampler,
        stop: Sequence[str] | None,
        started: float,
    ) -> list[GenerationResult]:
        """Default batch: each prompt through the token loop in turn."""
        return [
            self._decode(ids, Decoding(self.decode, self.eos_token_ids, limit, stop), sampler)  # type: ignore[attr-defined]
            for ids, limit in jobs
        ]

    def next_token_logits(self, ids: list[int], cache: Any | None = None) -> Any:
        """Logits (float32, ``[vocab]``) for the token after ``ids``.

        Args:
            ids: The full sequence so far.
            cache: A prefix cache ``ids`` starts with (loaded, not modified). Without it,
                backends with ``implicit_prefix_reuse`` reuse what the KV cache still holds.
        """
        if not ids:
            raise ValueError("ids is empty")
        ids = [int(t) for t in ids]
        with self.inference():
            held = self.sync(ids, cache)
            logits = self._as_float32(self.eval_last(ids[held:]))
        self._end_call()
        return logits

    def _as_float32(self, logits: Any) -> Any:
        """Logits as float32 (numpy here; the transformers backend returns a torch tensor)."""
        return logits.astype("float32")
