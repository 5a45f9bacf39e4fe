"""What every ragkit chat generator component shares, whatever backend it loads.

:class:`ChatGeneratorBase` holds the Haystack ``run`` (streaming chunks, reply meta with usage
and timings), ``from_model``, ``warm_up``/``close`` and the generation-kwargs checks;
:class:`ragkit.models.components.LocalChatGenerator` (transformers) and
:class:`ragkit.models.llamacpp_components.LlamaCppChatGenerator` (llama.cpp) only say how to load
their model. Profiles can therefore swap backends without changing pipelines or reply meta.

Each reply's ``meta["timings"]`` splits its wall time into ``prefill_s`` (prompt preparation and
evaluation, until the first token is chosen) and ``decode_s`` (the rest), because the two scale
with different things (prompt length vs answer length) and are tuned by different settings.
:func:`reader_timings` sums them over every reply made while it is open, however deep in a
pipeline the generator sits (Adaptive-Note's loop calls its generator several times per question).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk
from haystack.dataclasses.streaming_chunk import (
    ComponentInfo,
    SyncStreamingCallbackT,
    select_streaming_callback,
)

from ragkit.errors import InvalidParameter
from ragkit.models.base import SamplingOptions

__all__ = [
    "GENERATION_KEYS",
    "ChatGeneratorBase",
    "ReaderTimings",
    "chat_reply",
    "merge_generation_kwargs",
    "reader_timings",
    "split_timings",
]

GENERATION_KEYS = tuple(SamplingOptions.__annotations__)
"""``max_new_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``."""
_ALIASES = {"stop_words": "stop", "stop_sequences": "stop", "max_tokens": "max_new_tokens"}
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


@dataclass
class ReaderTimings:
    """Prefill and decode seconds summed over the replies made while :func:`reader_timings` is open.

    Attributes:
        calls: Replies ragkit's chat generators made (each adds its split).
        prefill_s: Sum of the replies' ``prefill_s``.
        decode_s: Sum of the replies' ``decode_s``.
    """

    calls: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def add(self, prefill_s: float, decode_s: float) -> None:
        """Count one reply's split."""
        self.calls += 1
        self.prefill_s += prefill_s
        self.decode_s += decode_s


# The open ledger, if any. A context variable rather than an argument because the generators
# that report into it sit anywhere in a pipeline (nested in Adaptive-Note's answerer, wrapped by
# RAPID's reader), and Haystack passes no per-run context down to them; it is unset outside a
# ``with reader_timings()`` block, and asyncio/to_thread copies carry it to worker threads.
_LEDGER: ContextVar[ReaderTimings | None] = ContextVar("ragkit_reader_timings", default=None)


@contextlib.contextmanager
def reader_timings() -> Iterator[ReaderTimings]:
    """Sum the prefill/decode split of every ragkit chat reply made inside the block.

    Yields:
        The ledger; ``calls == 0`` after the block means no ragkit generator replied (no reader
        ran, or the reader is one that does not report a split, e.g. an OpenAI-compatible server).
    """
    ledger = ReaderTimings()
    token = _LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        _LEDGER.reset(token)


def split_timings(seconds: float, first_token_seconds: float) -> tuple[float, float]:
    """(prefill_s, decode_s) of one generation: until the first token is chosen, then the rest.

    The first token comes out of the prompt's last position, so the time until it is chosen is
    the prefill (plus prompt rendering and tokenization, which are milliseconds); every later
    token is a one-token decode step.
    """
    prefill = min(max(first_token_seconds, 0.0), seconds)
    return prefill, max(seconds - prefill, 0.0)


def merge_generation_kwargs(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Merge generation kwargs (later layers win), mapping common aliases; unknown keys fail.

    Args:
        *layers: Init-time defaults, then per-call overrides.

    Returns:
        Keyword arguments for ``generate`` (``max_new_tokens``, ``temperature``, ``top_p``,
        ``seed``, ``stop``).

    Raises:
        InvalidParameter: ``generation_kwargs`` has a key that is neither one of those nor a
            known alias.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = _ALIASES.get(key, key)
            if name not in GENERATION_KEYS:
                allowed = ", ".join(GENERATION_KEYS)
                raise InvalidParameter(
                    "generation_kwargs", f"unknown generation kwarg {key!r}; allowed: {allowed}"
                )
            merged[name] = value
    return merged


def chat_reply(
    component: Any,
    lm: Any,
    messages: list[ChatMessage],
    init_kwargs: dict[str, Any] | None,
    call_kwargs: dict[str, Any] | None,
    streaming_callback: SyncStreamingCallbackT | None,
) -> dict[str, list[ChatMessage]]:
    """One assistant reply from any ragkit backend, with Haystack streaming chunks and usage meta.

    Args:
        component: The calling component (its ``model`` name goes into meta and chunks).
        lm: A loaded backend with ``generate``.
        messages: The conversation.
        init_kwargs: The component's default generation kwargs.
        call_kwargs: Per-call overrides.
        streaming_callback: Receives a chunk per text delta, then a final chunk with usage.

    Returns:
        ``{"replies": [ChatMessage]}`` with ``model``, ``finish_reason``, ``usage`` and
        ``timings`` (``seconds``, ``prefill_s``, ``decode_s``, ...) in its meta; the split is
        also added to the open :func:`reader_timings` ledger, if any.
    """
    kwargs = merge_generation_kwargs(init_kwargs, call_kwargs)
    callback = select_streaming_callback(None, streaming_callback, requires_async=False)
    chat = [{"role": m.role.value, "content": m.text or ""} for m in messages]
    info = ComponentInfo.from_component(component)
    on_token = None
    if callback is not None:
        started = [False]

        def on_token(delta: str) -> None:
            callback(
                StreamingChunk(
                    content=delta,
                    meta={"model": component.model},
                    component_info=info,
                    index=0,
                    start=not started[0],
                )
            )
            started[0] = True

    result = lm.generate(chat, on_token=on_token, **kwargs)
    finish = _FINISH[result.stop_reason]
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
    prefill_s, decode_s = split_timings(result.seconds, result.first_token_seconds)
    timings = {
        "seconds": result.seconds,
        "first_token_seconds": result.first_token_seconds,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "tokens_per_second": result.tokens_per_second,
        "prefix_tokens_reused": result.prefix_tokens_reused,
    }
    ledger = _LEDGER.get()
    if ledger is not None:
        ledger.add(prefill_s, decode_s)
    if callback is not None:
        callback(
            StreamingChunk(
                content="",
                meta={"model": component.model, "usage": usage},
                component_info=info,
                finish_reason=finish,  # type: ignore[arg-type]
            )
        )
    meta = {
        "model": component.model,
        "index": 0,
        "finish_reason": finish,
        "usage": usage,
        "timings": timings,
    }
    return {"replies": [ChatMessage.from_assistant(result.text, meta=meta)]}


class ChatGeneratorBase:
    """Base of ragkit's chat generator components; subclasses implement :meth:`_load`.

    Subclasses are decorated with Haystack's ``@component`` themselves (this base is not a
    component) and store their own init arguments as same-named attributes.
    """

    model: str
    generation_kwargs: dict[str, Any]

    def _init_generation(self, model: str, generation_kwargs: dict[str, Any] | None) -> None:
        """Store the common settings; bad generation kwargs fail here, not at the first query."""
        merge_generation_kwargs(generation_kwargs)
        self.model = model
        self.generation_kwargs = dict(generation_kwargs or {})
        self._lm: Any = None

    def _load(self) -> Any:
        """Load the backend model from the component's settings."""
        raise NotImplementedError

    @classmethod
    def _settings_of(cls, lm: Any) -> dict[str, Any]:
        """Init arguments that describe an already-loaded model (beyond its name)."""
        return {}

    @classmethod
    def from_model(cls, lm: Any, **kwargs: Any) -> Any:
        """Wrap an already-loaded model (shares weights and caches with other components)."""
        instance = cls(model=lm.name, **{**cls._settings_of(lm), **kwargs})  # type: ignore[call-arg]
        instance._lm = lm
        return instance

    def warm_up(self) -> None:
        """Load the model once."""
        if self._lm is None:
            self._lm = self._load()

    def close(self) -> None:
        """Release the model's memory."""
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    @component.output_types(replies=list[ChatMessage])
    def run(
        self,
        messages: list[ChatMessage],
        generation_kwargs: dict[str, Any] | None = None,
        streaming_callback: SyncStreamingCallbackT | None = None,
    ) -> dict[str, list[ChatMessage]]:
        """Generate one assistant reply.

        Args:
            messages: The conversation (rendered with the model's own chat template).
            generation_kwargs: Per-call overrides of the init ``generation_kwargs``.
            streaming_callback: Receives a ``StreamingChunk`` per text delta, then a final
                chunk carrying ``finish_reason`` and usage in ``meta``.

        Returns:
            ``{"replies": [ChatMessage]}`` whose meta has ``model``, ``finish_reason``,
            ``usage`` (prompt/completion/total tokens) and ``timings``.
        """
        self.warm_up()
        return chat_reply(
            self, self._lm, messages, self.generation_kwargs, generation_kwargs, streaming_callback
        )
