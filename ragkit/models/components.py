"""Haystack components over ragkit's model layer: a local chat generator (scorers: ``scorers.py``).

All init arguments are JSON-basic and stored as same-named attributes, so Haystack's default
``to_dict``/``from_dict`` (and pipeline YAML) work unchanged; models load in ``warm_up()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk
from haystack.dataclasses.streaming_chunk import (
    ComponentInfo,
    SyncStreamingCallbackT,
    select_streaming_callback,
)

from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

# the relevance scorers live in ragkit.models.scorers; this import keeps the old path working
from ragkit.models.scorers import (  # noqa: F401
    CrossEncoderScorer,
    EmbeddingSimilarityScorer,
    LLMRelevanceScorer,
)

if TYPE_CHECKING:
    from ragkit.models.causal_lm import CausalLM

__all__ = [
    "CrossEncoderScorer",
    "EmbeddingSimilarityScorer",
    "LLMRelevanceScorer",
    "LocalChatGenerator",
]

_GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "seed", "stop")
_ALIASES = {"stop_words": "stop", "stop_sequences": "stop", "max_tokens": "max_new_tokens"}
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def _generation_kwargs(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Merge generation kwargs (later layers win), mapping common aliases; unknown keys fail."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = _ALIASES.get(key, key)
            if name not in _GENERATION_KEYS:
                allowed = ", ".join(_GENERATION_KEYS)
                raise ValueError(f"unknown generation kwarg {key!r}; allowed: {allowed}")
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

    Shared by the chat generator components so every backend reports replies the same way.
    """
    kwargs = _generation_kwargs(init_kwargs, call_kwargs)
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


@component
class LocalChatGenerator:
    """Chat generation with a local causal LM (packaged SmolLM2 by default), with streaming.

    ### Usage example
    ```python
    gen = LocalChatGenerator(generation_kwargs={"max_new_tokens": 64})
    gen.warm_up()
    reply = gen.run([ChatMessage.from_user("What is BM25?")])["replies"][0].text
    ```
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        generation_kwargs: dict[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """Store settings only; the model loads in :meth:`warm_up`.

        Args:
            model: Packaged name, hub id, local directory or ``.gguf`` file.
            device: ``auto``, ``cpu`` or ``cuda``.
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.
            cache_dir: Where converted GGUF models are cached (default ``$RAGKIT_CACHE``).
        """
        _generation_kwargs(generation_kwargs)  # fail at construction, not at first query
        self.model = model
        self.device = device
        self.dtype = dtype
        self.generation_kwargs = dict(generation_kwargs or {})
        self.cache_dir = cache_dir
        self._lm: CausalLM | None = None

    @classmethod
    def from_model(cls, lm: CausalLM, **kwargs: Any) -> LocalChatGenerator:
        """Wrap an already-loaded model (shares weights with other components)."""
        instance = cls(model=lm.name, **kwargs)
        instance._lm = lm
        return instance

    def warm_up(self) -> None:
        """Load the model once (converted GGUFs load in about a second after the first time)."""
        if self._lm is None:
            from ragkit.models.causal_lm import CausalLM

            self._lm = CausalLM.load(self.model, self.device, self.dtype, self.cache_dir)

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
            messages: The conversation.
            generation_kwargs: Per-call overrides of the init ``generation_kwargs``.
            streaming_callback: Receives a ``StreamingChunk`` per text delta, then a final
                chunk carrying ``finish_reason`` and usage in ``meta``.

        Returns:
            ``{"replies": [ChatMessage]}`` whose meta has ``model``, ``finish_reason``,
            ``usage`` (prompt/completion/total tokens) and ``timings``.
        """
        self.warm_up()
        assert self._lm is not None
        return chat_reply(
            self, self._lm, messages, self.generation_kwargs, generation_kwargs, streaming_callback
        )
