"""Haystack chat generator over ragkit's llama.cpp backend (:class:`LlamaCppLM`).

``llama-cpp-haystack``'s ``LlamaCppChatGenerator`` serves a generation-only role when a user has
a ``.gguf`` path and wants llama-cpp-python's own generation options (tools, multimodal chat
handlers); it drops into ragkit pipelines unchanged. ragkit's wrapper exists because pipelines
name models by packaged short name (``qwen2.5-coder-1.5b-instruct`` is assembled from chunk
wheels on first use), need the same run signature, reply meta and streaming chunks as
:class:`ragkit.models.LocalChatGenerator` so profiles can swap backends, and share one loaded
:class:`LlamaCppLM` (and its KV cache / prefix states) with scorers and decoders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haystack import component
from haystack.dataclasses import ChatMessage
from haystack.dataclasses.streaming_chunk import (
    SyncStreamingCallbackT,
)

from ragkit.models.components import _generation_kwargs, chat_reply
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

if TYPE_CHECKING:
    from ragkit.models.llamacpp import LlamaCppLM

__all__ = ["LlamaCppChatGenerator"]


@component
class LlamaCppChatGenerator:
    """Chat generation with a GGUF model on llama.cpp (packaged SmolLM2 by default), streaming.

    Consecutive calls that share a prompt prefix (system prompt, a document asked about
    repeatedly, a growing conversation) reuse llama.cpp's KV cache for that prefix.

    ### Usage example
    ```python
    gen = LlamaCppChatGenerator("qwen2.5-coder-1.5b-instruct", generation_kwargs={"max_new_tokens": 64})
    gen.warm_up()
    reply = gen.run([ChatMessage.from_user("What is BM25?")])["replies"][0].text
    ```
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Store settings only; the model loads in :meth:`warm_up`.

        Args:
            model: Packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-1.5b-instruct``,
                ``qwen2.5-coder-0.5b-instruct``) or a ``.gguf`` path.
            n_ctx: Context window (prompt + answer) to allocate.
            n_threads: CPU threads; ``None`` lets llama.cpp choose.
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop`` (aliases ``max_tokens``, ``stop_words`` accepted).
        """
        _generation_kwargs(generation_kwargs)  # fail at construction, not at first query
        self.model = model
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.generation_kwargs = dict(generation_kwargs or {})
        self._lm: LlamaCppLM | None = None

    @classmethod
    def from_model(cls, lm: LlamaCppLM, **kwargs: Any) -> LlamaCppChatGenerator:
        """Wrap an already-loaded model (shares weights and KV cache with other components)."""
        instance = cls(model=lm.name, n_ctx=lm.context_length, **kwargs)
        instance._lm = lm
        return instance

    def warm_up(self) -> None:
        """Load the GGUF (memory-mapped: about a second; Qwen is assembled once on first use)."""
        if self._lm is None:
            from ragkit.models.llamacpp import LlamaCppLM

            self._lm = LlamaCppLM.load(self.model, n_ctx=self.n_ctx, n_threads=self.n_threads)

    def close(self) -> None:
        """Free the llama.cpp model and context."""
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
            messages: The conversation (rendered with the GGUF's own chat template).
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
