"""What every ragkit chat generator component shares, whatever backend it loads.

:class:`ChatGeneratorBase` holds the Haystack ``run`` (streaming chunks, reply meta with usage
and timings), ``from_model``, ``warm_up``/``close`` and the generation-kwargs checks;
:class:`ragkit.models.components.LocalChatGenerator` (transformers) and
:class:`ragkit.models.llamacpp_components.LlamaCppChatGenerator` (llama.cpp) only say how to load
their model. Profiles can therefore swap backends without changing pipelines or reply meta.
"""

from __future__ import annotations

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

__all__ = ["GENERATION_KEYS", "ChatGeneratorBase", "chat_reply", "merge_generation_kwargs"]

GENERATION_KEYS = tuple(SamplingOptions.__annotations__)
"""``max_new_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``."""
_ALIASES = {"stop_words": "stop", "stop_sequences": "stop", "max_tokens": "max_new_tokens"}
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


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
        ``timings`` in its meta.
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
    timings = {
        "seconds": result.seconds,
        "first_token_seconds": result.first_token_seconds,
        "tokens_per_second": result.tokens_per_second,
        "prefix_tokens_reused": result.prefix_tokens_reused,
    }
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
