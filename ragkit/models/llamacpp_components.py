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

from ragkit.errors import InvalidParameter
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
        *,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        flash_attn: bool = False,
        reuse_prefix: bool = True,
    ) -> None:
        """Store and check settings only; the model loads in :meth:`warm_up`.

        The settings after ``generation_kwargs`` are for speed and default to llama.cpp's own
        choices. They are not meant to change answers, but ``flash_attn``, the batch sizes and
        ``reuse_prefix`` change the order of floating-point sums, which can flip a greedy
        near-tie; ``ragkit bench reader`` times each on real RAG prompts and reports whether the
        answers stayed the same (docs/benchmarks/reader.md).

        Args:
            model: Packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-1.5b-instruct``,
                ``qwen2.5-coder-0.5b-instruct``) or a ``.gguf`` path.
            n_ctx: Context window (prompt + answer) to allocate.
            n_threads: CPU threads for decoding (and prompt processing unless
                ``n_threads_batch`` is set); ``None`` lets llama.cpp choose (half the cores for
                decoding, all of them for prompts).
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop`` (aliases ``max_tokens``, ``stop_words`` accepted).
            n_threads_batch: CPU threads for prompt processing (prefill); ``None``: as
                ``n_threads`` when that is set, else all cores.
            n_batch: Prompt tokens handed to llama.cpp per decode call (logical batch).
            n_ubatch: Tokens computed together inside a call (physical batch, at most
                ``n_batch``); ``None``: llama.cpp's default, ``min(n_batch, 512)``.
            flash_attn: Fused attention kernel (less memory traffic on long prompts).
            reuse_prefix: Keep the KV cache between calls so the next prompt's shared start
                (system prompt and fixed instruction) is not recomputed; ``False`` recomputes
                every prompt, so no answer depends on the call before it.

        Raises:
            InvalidParameter: A count below 1 (``n_ctx`` below 0), ``n_ubatch`` above
                ``n_batch``, or a non-boolean ``flash_attn`` / ``reuse_prefix``.
        """
        _check_count("n_ctx", n_ctx, minimum=0, optional=False)
        _check_count("n_threads", n_threads)
        _check_count("n_threads_batch", n_threads_batch)
        _check_count("n_batch", n_batch, optional=False)
        _check_count("n_ubatch", n_ubatch)
        if n_ubatch is not None and n_ubatch > n_batch:
            raise InvalidParameter(
                "n_ubatch",
                f"must be at most n_batch ({n_batch}), got {n_ubatch}: llama.cpp computes at "
                "most n_batch tokens per call; raise n_batch or lower n_ubatch",
            )
        for name, value in (("flash_attn", flash_attn), ("reuse_prefix", reuse_prefix)):
            if not isinstance(value, bool):
                raise InvalidParameter(name, f"must be true or false, got {value!r}")
        self._init_generation(model, generation_kwargs)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.n_batch = n_batch
        self.n_ubatch = n_ubatch
        self.flash_attn = flash_attn
        self.reuse_prefix = reuse_prefix

    @classmethod
    def _settings_of(cls, lm: LlamaCppLM) -> dict[str, Any]:
        return {"n_ctx": lm.context_length}

    def _load(self) -> LlamaCppLM:
        """Load the GGUF (memory-mapped: about a second; Qwen is assembled once on first use)."""
        from ragkit.models.llamacpp import LlamaCppLM

        extra: dict[str, Any] = {"flash_attn": self.flash_attn}
        if self.n_ubatch is not None:
            extra["n_ubatch"] = self.n_ubatch
        if self.n_threads_batch is not None:
            extra["n_threads_batch"] = self.n_threads_batch
        return LlamaCppLM.load(
            self.model,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
            reuse_prefix=self.reuse_prefix,
            **extra,
        )


def _check_count(name: str, value: Any, *, minimum: int = 1, optional: bool = True) -> None:
    """Refuse a thread/batch/context count llama.cpp would reject or silently change."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise InvalidParameter(name, f"must be {allowed}, got {value!r}")
