"""Haystack wrapper: :class:`SpeculativeGenerator`, a drop-in chat generator that speculates.

Same ``run`` inputs and reply meta as ragkit's other chat generators (``messages``,
``generation_kwargs``, ``streaming_callback``; ``model``, ``finish_reason``, ``usage``,
``timings``), plus ``meta["speculative"]``: accepted tokens per target call, acceptance rate,
tokens/s and the raw counters. Two optional inputs carry RAPID's retrieval side:

* ``draft_messages``: the drafter's own prompt (the question over the retrieved chunks, built
  by a second prompt builder); without it a model drafter reads the target's prompt.
* ``documents``: the retrieved chunks; put back in document order, they are the n-gram
  drafter's lookup sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from haystack import Document, component
from haystack.dataclasses import ChatMessage
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.decoding.speculative import SpeculativeConfig
from ragkit.errors import InvalidParameter
from ragkit.models.chat import chat_reply, merge_generation_kwargs
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["SpeculativeGenerator"]

DrafterKind = Literal["ngram", "self", "model", "self+ngram", "model+ngram"]
_DRAFTERS = ("ngram", "self", "model", "self+ngram", "model+ngram")
_BACKENDS = ("transformers", "llama.cpp")


def _document_order(doc: Document) -> tuple[str, int, int, str]:
    """Corpus order: source, passage position, character offset (as MemoRAG's union)."""
    from ragkit.memory.clues import document_position

    return document_position(doc)


class _SpeculativeRun:
    """Adapter giving :func:`chat_reply` a ``generate`` that speculates and keeps its stats."""

    def __init__(self, decoder: Any, target: Any) -> None:
        self.decoder = decoder
        self.target = target
        self.stats: Any = None

    def generate(self, chat: list[dict[str, str]], **kwargs: Any) -> Any:
        out = self.decoder.generate(chat, **kwargs)
        self.stats = out.stats
        return out.result


@component
class SpeculativeGenerator:
    """Chat generation with speculative decoding (RAPID's RAG drafter, n-gram lookup, or both).

    Greedy decoding (``temperature`` 0, the default) gives exactly the target's own greedy
    answer; sampling with ``eta == 0`` is distributed exactly as the target's; ``eta > 0``
    is RAPID's knowledge transfer toward the retrieval-grounded drafter (a quality change).

    ### Usage example
    ```python
    gen = SpeculativeGenerator(drafter="ngram", generation_kwargs={"max_new_tokens": 64})
    out = gen.run([ChatMessage.from_user(document + "\\n\\n" + question)], documents=chunks)
    out["replies"][0].meta["speculative"]["tokens_per_target_call"]
    ```
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        backend: Literal["transformers", "llama.cpp"] = "transformers",
        drafter: DrafterKind = "ngram",
        draft_model: str | None = None,
        gamma: int = 10,
        eta: float = 0.0,
        alpha: float = 0.1,
        residual: Literal["paper", "code"] = "paper",
        confidence: float = 0.1,
        adaptive: bool = True,
        max_ngram: int = 3,
        device: str = "auto",
        n_ctx: int = 8192,
        n_threads: int | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Store and check settings; models load in :meth:`warm_up`.

        Args:
            model: The target model (packaged name, hub id, directory or ``.gguf``).
            backend: ``transformers`` or ``llama.cpp``.
            drafter: ``ngram`` (prompt lookup in the prompt and ``documents``), ``self`` (a
                second instance of the target reading ``draft_messages``), ``model`` (
                ``draft_model`` reading ``draft_messages``), or either model drafter with
                ``+ngram`` as the fallback when the model is not confident.
            draft_model: The drafter model for ``model`` drafters (same vocabulary).
            gamma: Most tokens drafted per target call.
            eta: RAPID knowledge-transfer step (0: lossless).
            alpha: Plausibility mask threshold for the transfer, in (0, 1].
            residual: ``paper`` or ``code`` residual rule on rejection.
            confidence: The model drafter stops before a token less probable than this.
            adaptive: Adapt gamma to measured acceptance and turn drafting off where it is
                measured slower than plain decoding.
            max_ngram: Longest n-gram the n-gram drafter matches.
            device: transformers device (``auto``, ``cpu``, ``cuda``).
            n_ctx: llama.cpp context to allocate.
            n_threads: llama.cpp threads (``None``: llama.cpp's choice).
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.

        Raises:
            InvalidParameter: Naming the bad parameter (gamma <= 0, eta < 0, alpha outside
                (0, 1], an unknown drafter or backend, a model drafter without a model).
        """
        SpeculativeConfig(
            gamma=gamma, eta=eta, alpha=alpha, residual=residual, confidence=confidence
        )
        if backend not in _BACKENDS:
            raise InvalidParameter("backend", f"must be one of {_BACKENDS}, got {backend!r}")
        if drafter not in _DRAFTERS:
            raise InvalidParameter("drafter", f"must be one of {_DRAFTERS}, got {drafter!r}")
        if drafter.startswith("model") and not draft_model:
            raise InvalidParameter("draft_model", f"drafter {drafter!r} needs a draft_model")
        if max_ngram < 1:
            raise InvalidParameter("max_ngram", f"must be >= 1, got {max_ngram}")
        merge_generation_kwargs(generation_kwargs)
        self.model = model
        self.backend = backend
        self.drafter = drafter
        self.draft_model = draft_model
        self.gamma = gamma
        self.eta = eta
        self.alpha = alpha
        self.residual = residual
        self.confidence = confidence
        self.adaptive = adaptive
        self.max_ngram = max_ngram
        self.device = device
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.generation_kwargs = dict(generation_kwargs or {})
        self._target: Any = None
        self._draft_lm: Any = None

    @classmethod
    def from_models(
        cls, target: Any, draft_lm: Any | None = None, **kwargs: Any
    ) -> SpeculativeGenerator:
        """Wrap already-loaded models (shares weights and caches with other components).

        Args:
            target: The loaded target backend.
            draft_lm: A loaded drafter backend (a separate instance) for model drafters.
            **kwargs: Other init arguments (``drafter``, ``gamma``, ...).
        """
        instance = cls(model=target.name, **kwargs)
        instance._target, instance._draft_lm = target, draft_lm
        return instance

    def _load_lm(self, name: str) -> Any:
        if self.backend == "llama.cpp":
            from ragkit.models.llamacpp import LlamaCppLM

            return LlamaCppLM.load(name, n_ctx=self.n_ctx, n_threads=self.n_threads)
        from ragkit.models.causal_lm import CausalLM

        return CausalLM.load(name, self.device)

    def warm_up(self) -> None:
        """Load the target and, for model drafters, the drafter (a separate instance)."""
        if self._target is None:
            self._target = self._load_lm(self.model)
        if self._draft_lm is None and self.drafter != "ngram":
            name = self.model if self.drafter.startswith("self") else str(self.draft_model)
            self._draft_lm = self._load_lm(name)

    def close(self) -> None:
        """Release both models."""
        for lm in (self._target, self._draft_lm):
            if lm is not None:
                lm.close()
        self._target = self._draft_lm = None

    def _decoder(
        self, draft_messages: list[ChatMessage] | None, documents: Sequence[Document]
    ) -> Any:
        from ragkit.decoding.drafters import FallbackDrafter, ModelDrafter, NgramDrafter
        from ragkit.decoding.policy import AdaptiveGamma
        from ragkit.decoding.speculative import SpeculativeDecoder

        target = self._target
        ordered = sorted(documents, key=_document_order)
        ngram = NgramDrafter(
            [target.encode(d.content or "") for d in ordered if d.content],
            max_ngram=self.max_ngram,
        )
        drafter: Any = ngram
        if self.drafter != "ngram":
            prompt = None
            if draft_messages:
                prompt = [{"role": m.role.value, "content": m.text or ""} for m in draft_messages]
            drafter = ModelDrafter(
                self._draft_lm, prompt, confidence=self.confidence, target=target
            )
            if self.drafter.endswith("+ngram"):
                drafter = FallbackDrafter(drafter, ngram)
        config = SpeculativeConfig(
            gamma=self.gamma,
            eta=self.eta,
            alpha=self.alpha,
            residual=self.residual,
            confidence=self.confidence,
        )
        policy = AdaptiveGamma(gamma_max=self.gamma) if self.adaptive else None
        return SpeculativeDecoder(target, drafter, config, policy)

    @component.output_types(replies=list[ChatMessage])
    def run(
        self,
        messages: list[ChatMessage],
        draft_messages: list[ChatMessage] | None = None,
        documents: list[Document] | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        streaming_callback: SyncStreamingCallbackT | None = None,
    ) -> dict[str, list[ChatMessage]]:
        """Generate one assistant reply by drafting and verifying.

        Args:
            messages: The target's conversation (e.g. the question over the whole document).
            draft_messages: The model drafter's conversation (the question over the retrieved
                chunks); ``None``: the drafter reads ``messages``.
            documents: Retrieved chunks, searched in document order by the n-gram drafter.
            generation_kwargs: Per-call overrides of the init ``generation_kwargs``.
            streaming_callback: Receives a chunk per text delta, then a final chunk.

        Returns:
            ``{"replies": [ChatMessage]}``; meta as the other generators plus ``speculative``
            (``tokens_per_target_call``, ``acceptance_rate``, ``tokens_per_second``, ...).
        """
        self.warm_up()
        run = _SpeculativeRun(self._decoder(draft_messages, documents or []), self._target)
        out = chat_reply(
            self, run, messages, self.generation_kwargs, generation_kwargs, streaming_callback
        )
        reply = out["replies"][0]
        reply.meta["speculative"] = {"drafter": self.drafter, **run.stats.as_dict()}
        return out
