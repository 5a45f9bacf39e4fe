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

from ragkit.models.chat import ChatGeneratorBase
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

if TYPE_CHECKING:
    from ragkit.models.llamacpp import LlamaCppLM

__all__ = ["LlamaCppChatGenerator"]


@component
class LlamaCppChatGenerator(ChatGeneratorBase):
    """Chat generation with a GGUF model on llama.cpp (packaged SmolLM2 by default), streaming.

    Consecutive calls that share a prompt prefix (system prompt, a document asked about
    repeatedly, a growing conversation) reuse llama.cpp's KV cache for that prefix.

    ### Usage example
    ```python
    gen = LlamaCppChatGenerator("qwen2.5-coder-1.5b-instruct", n_ctx=8192)
    out = gen.run(
        [ChatMessage.from_user("What is BM25?")],
        generation_kwargs={"max_new_tokens": 64},
        streaming_callback=lambda chunk: print(chunk.content, end="", flush=True),
    )
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
        self._init_generation(model, generation_kwargs)
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    @classmethod
    def _settings_of(cls, lm: LlamaCppLM) -> dict[str, Any]:
        return {"n_ctx": lm.context_length}

    def _load(self) -> LlamaCppLM:
        """Load the GGUF (memory-mapped: about a second; Qwen is assembled once on first use)."""
        from ragkit.models.llamacpp import LlamaCppLM

        return LlamaCppLM.load(self.model, n_ctx=self.n_ctx, n_threads=self.n_threads)
