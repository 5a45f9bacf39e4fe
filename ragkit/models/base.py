"""Backend-neutral contract for language models used by ragkit's algorithms.

The transformers backend (:class:`ragkit.models.causal_lm.CausalLM`) implements it today; a
llama.cpp or server backend can implement the same protocol later. Token ids are plain
``list[int]`` and texts plain ``str`` so algorithms never need torch. Capabilities that not every
backend has (raw logits, reusable KV/prefix caches) are flagged by ``supports_logits`` and
``supports_prefix_cache``; calling them on a backend without them raises :class:`CapabilityError`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, Unpack, runtime_checkable

from ragkit.models.errors import CapabilityError, ContextLengthError

__all__ = [
    "CapabilityError",
    "ChatMessageDict",
    "GenerationOptions",
    "GenerationResult",
    "LanguageModel",
    "SamplingOptions",
    "StopReason",
    "require_capability",
    "truncate_passages_to_fit",
]

logger = logging.getLogger(__name__)

StopReason = Literal["eos", "stop", "length"]
ChatMessageDict = dict[str, str]
"""A chat message as ``{"role": "user" | "system" | "assistant", "content": "..."}``."""


class SamplingOptions(TypedDict, total=False):
    """Keyword options of ``generate`` and ``generate_batch`` (and chat ``generation_kwargs``).

    Attributes:
        max_new_tokens: Upper bound on new tokens (also capped by the context).
        temperature: 0 for greedy decoding; > 0 samples.
        top_p: Nucleus sampling mass (sampling only).
        seed: Makes sampling reproducible.
        stop: Strings that end generation; the text stops before them.
    """

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: Sequence[str] | None


class GenerationOptions(SamplingOptions, total=False):
    """``generate``'s options: sampling plus streaming and a reusable prefix cache.

    Attributes:
        on_token: Receives text deltas as they are decoded.
        prefix_cache: A backend's prefix cache the prompt starts with.
    """

    on_token: Callable[[str], None] | None
    prefix_cache: Any | None


@dataclass
class GenerationResult:
    """What one generation produced, with the counts and timings benchmarks and UIs need.

    Attributes:
        text: Generated text, cut before a stop string; special tokens removed.
        token_ids: Generated token ids (no prompt; EOS not included).
        prompt_tokens: Prompt length in tokens (including any reused prefix).
        completion_tokens: ``len(token_ids)``.
        seconds: Wall time of the whole call.
        first_token_seconds: Wall time until the first new token was chosen.
        stop_reason: ``eos`` (model ended), ``stop`` (a stop string), ``length`` (token limit).
        prefix_tokens_reused: Prompt tokens served from a prefix cache instead of computed.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_seconds: float
    stop_reason: StopReason
    prefix_tokens_reused: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per wall second of the whole call (prefill included)."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class LanguageModel(Protocol):
    """What ragkit's algorithms need from a causal language model."""

    name: str
    supports_logits: bool
    supports_prefix_cache: bool

    @property
    def context_length(self) -> int:
        """Maximum prompt + completion tokens."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens added)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` with special tokens removed."""
        ...

    def apply_chat_template(self, messages: list[ChatMessageDict]) -> list[int]:
        """Prompt token ids for a chat, ending with the assistant turn header."""
        ...

    def generate(
        self, prompt: list[int] | list[ChatMessageDict] | str, **options: Unpack[GenerationOptions]
    ) -> GenerationResult:
        """Generate a completion; ``on_token`` receives text deltas as they are produced."""
        ...

    def generate_batch(
        self,
        prompts: Sequence[list[int] | list[ChatMessageDict] | str],
        **options: Unpack[SamplingOptions],
    ) -> list[GenerationResult]:
        """Generate completions for several prompts at once."""
        ...

    def logprobs(self, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
        """Log-probability of each continuation token given the prompt and earlier tokens."""
        ...

    def next_token_logprobs(
        self, prompts: Sequence[list[int]], candidate_ids: Sequence[int]
    ) -> list[list[float]]:
        """Next-token log-probabilities of ``candidate_ids`` after each prompt (batched)."""
        ...

    def prefill(self, prefix_ids: list[int]) -> Any:
        """Compute a reusable cache for a prompt prefix (needs ``supports_prefix_cache``)."""
        ...


def require_capability(model: object, capability: str, purpose: str) -> None:
    """Raise :class:`CapabilityError` unless ``model`` advertises ``capability``.

    Args:
        model: Any :class:`LanguageModel`.
        capability: ``supports_logits`` or ``supports_prefix_cache``.
        purpose: What needed it, for the message (e.g. ``"LLM relevance scoring"``).
    """
    if not getattr(model, capability, False):
        what = {"supports_logits": "token logits", "supports_prefix_cache": "a reusable KV cache"}
        name = getattr(model, "name", type(model).__name__)
        raise CapabilityError(
            f"{purpose} needs {what.get(capability, capability)}, which backend "
            f"{type(model).__name__} ({name}) does not provide; use the transformers backend "
            "(ragkit.models.CausalLM)"
        )


def truncate_passages_to_fit(
    question: str,
    passages: Sequence[str],
    budget: int,
    *,
    count_tokens: Callable[[str], int],
    trim: Callable[[str, int], str] | None = None,
    overhead: int = 0,
    min_trimmed_tokens: int = 16,
) -> list[str]:
    """Keep as many passages (in rank order) as fit in ``budget`` tokens; never cut the question.

    Passages after the first one that does not fit are dropped; that one is trimmed to the room
    left when at least ``min_trimmed_tokens`` remain. A warning says what was dropped, since a
    silently shortened context changes answers.

    Args:
        question: The question; always kept whole.
        passages: Passages, best first.
        budget: Tokens available for question + passages + ``overhead``.
        count_tokens: Token counter of the model that will read the prompt.
        trim: ``trim(text, n_tokens)`` returning a prefix of ``text`` of at most ``n_tokens``;
            without it the overflowing passage is dropped instead of trimmed.
        overhead: Tokens for the template around the question and passages.
        min_trimmed_tokens: Smallest useful trimmed passage.

    Returns:
        The passages to use (possibly fewer and the last one shorter).

    Raises:
        ContextLengthError: The question alone (plus overhead) does not fit.
    """
    left = budget - overhead - count_tokens(question)
    if left < 0:
        raise ContextLengthError(
            f"the question alone needs {budget - left} tokens, more than the budget of {budget}; "
            "shorten the question or use a model with a longer context"
        )
    kept: list[str] = []
    trimmed = False
    for passage in passages:
        need = count_tokens(passage)
        if need <= left:
            kept.append(passage)
            left -= need
            continue
        if trim is not None and left >= min_trimmed_tokens:
            kept.append(trim(passage, left))
            trimmed = True
        break
    dropped = len(passages) - len(kept)
    if dropped or trimmed:
        message = (
            f"prompt exceeds the {budget}-token budget: of {len(passages)} passages kept "
            f"{len(kept) - trimmed} whole, trimmed {int(trimmed)}, dropped {dropped}"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logger.warning(message)
    return kept


class PromptHelpers:
    """Prompt plumbing shared by the backends (transformers, llama.cpp).

    A backend provides ``name``, ``context_length``, ``encode``, ``decode``, ``count_tokens``,
    ``apply_chat_template`` and ``_encode_text`` (raw text -> ids, with the backend's BOS rule).
    """

    name: str
    _context_hint = "use fewer or shorter passages (see truncate_passages_to_fit)"

    def _prompt_ids(self, prompt: Any) -> list[int]:
        """Token ids for a string, chat messages or ids."""
        if isinstance(prompt, str):
            return self._encode_text(prompt)  # type: ignore[attr-defined]
        if prompt and isinstance(prompt[0], dict):
            return self.apply_chat_template(prompt)  # type: ignore[attr-defined]
        return [int(t) for t in prompt]

    def _max_new(self, prompt_len: int, max_new_tokens: int) -> int:
        """New-token budget left by the context; refuses a prompt that does not fit at all."""
        room = self.context_length - prompt_len  # type: ignore[attr-defined]
        if room <= 0:
            raise ContextLengthError(
                f"prompt has {prompt_len} tokens but {self.name} has a "
                f"{self.context_length}-token context; {self._context_hint}"  # type: ignore[attr-defined]
            )
        if max_new_tokens > room:
            logger.info("max_new_tokens %d capped to %d by the context", max_new_tokens, room)
        return max(0, min(max_new_tokens, room))

    def truncate_passages_to_fit(
        self,
        question: str,
        passages: Sequence[str],
        budget: int | None = None,
        *,
        reserve_new_tokens: int = 256,
        overhead: int = 64,
    ) -> list[str]:
        """Drop/trim passages (never the question) so the prompt fits; warns when it cuts.

        Args:
            question: Kept whole.
            passages: Best first.
            budget: Token budget; default ``context_length - reserve_new_tokens``.
            reserve_new_tokens: Room kept for the answer when ``budget`` is not given.
            overhead: Tokens for the chat template and instructions.
        """
        if budget is None:
            budget = self.context_length - reserve_new_tokens  # type: ignore[attr-defined]

        def trim(text: str, n: int) -> str:
            return self.decode(self.encode(text)[:n])  # type: ignore[attr-defined]

        return truncate_passages_to_fit(
            question,
            passages,
            budget,
            count_tokens=self.count_tokens,  # type: ignore[attr-defined]
            trim=trim,
            overhead=overhead,
        )
