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

import time
from collections.abc import Sequence
from typing import Any, Literal

from haystack import Document, component
from haystack.dataclasses import ChatMessage
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.decoding.speculative import SpeculativeConfig
from ragkit.errors import InvalidParameter
from ragkit.models.chat import chat_reply, merge_generation_kwargs
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["RapidReader", "SpeculativeGenerator"]

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

    fixed_prompt: list[int] | None = None
    prefix_cache: Any = None

    def generate(self, chat: list[dict[str, str]], **kwargs: Any) -> Any:
        if self.fixed_prompt is not None:  # RAPID: prompt ids built around a cached prefix
            out = self.decoder.generate(self.fixed_prompt, prefix_cache=self.prefix_cache, **kwargs)
        else:
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
        learn_across_calls: bool = False,
        max_ngram: int = 3,
        tree_width: int = 0,
        device: str = "auto",
        compile_draft_step: bool = False,
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
            learn_across_calls: Keep one adaptive policy for all calls (see
                :meth:`answer_policy`); default: a fresh one per answer.
            max_ngram: Longest n-gram the n-gram drafter matches.
            tree_width: LongSpec-style tree drafting with this many alternatives per level
                (see :mod:`ragkit.decoding.tree`): trees ``gamma`` deep, verified in one pass
                under a tree attention mask, greedy only, transformers backend; the adaptive
                policy does not apply to trees. 0 (default): chain drafts.
            device: transformers device (``auto``, ``cpu``, ``cuda``). On CUDA the models
                run in bf16 with a pre-allocated static KV cache.
            compile_draft_step: ``torch.compile`` the model drafter's one-token step (CUDA
                graphs on CUDA; transformers backend, static cache). The first answers pay
                the compilation.
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
        if compile_draft_step and backend != "transformers":
            raise InvalidParameter(
                "compile_draft_step", f"needs backend: transformers, not {backend!r}"
            )
        if tree_width < 0:
            raise InvalidParameter("tree_width", f"must be >= 0, got {tree_width}")
        if tree_width and backend != "transformers":
            raise InvalidParameter(
                "tree_width", f"tree drafting needs backend: transformers, not {backend!r}"
            )
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
        self.learn_across_calls = learn_across_calls
        self.max_ngram = max_ngram
        self.tree_width = tree_width
        self.device = device
        self.compile_draft_step = compile_draft_step
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.generation_kwargs = dict(generation_kwargs or {})
        self._target: Any = None
        self._draft_lm: Any = None
        self._policy: Any = None

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

    def _load_lm(self, name: str, *, drafter: bool = False) -> Any:
        if self.backend == "llama.cpp":
            from ragkit.models.llamacpp import LlamaCppLM

            return LlamaCppLM.load(name, n_ctx=self.n_ctx, n_threads=self.n_threads)
        from ragkit.models.causal_lm import CausalLM

        compiled = drafter and self.compile_draft_step
        return CausalLM.load(
            name, self.device, kv_cache="static" if compiled else "auto", compile_step=compiled
        )

    def warm_up(self) -> None:
        """Load the target and, for model drafters, the drafter (a separate instance)."""
        if self._target is None:
            self._target = self._load_lm(self.model)
        if self._draft_lm is None and self.drafter != "ngram":
            name = self.model if self.drafter.startswith("self") else str(self.draft_model)
            self._draft_lm = self._load_lm(name, drafter=True)

    def close(self) -> None:
        """Release both models."""
        for lm in (self._target, self._draft_lm):
            if lm is not None:
                lm.close()
        self._target = self._draft_lm = None

    def _decoder(
        self, draft_messages: list[ChatMessage] | None, documents: Sequence[Document]
    ) -> Any:
        prompt = None
        if draft_messages:
            prompt = [{"role": m.role.value, "content": m.text or ""} for m in draft_messages]
        return self.build_decoder(prompt, sorted(documents, key=_document_order))

    def build_decoder(self, draft_prompt: Any, ordered: Sequence[Document]) -> Any:
        """One answer's decoder: the configured drafter over ``ordered`` (in document order).

        Args:
            draft_prompt: The model drafter's prompt (chat messages or token ids; ``None``:
                the target's prompt).
            ordered: The passages the n-gram drafter searches, already in document order.
        """
        from ragkit.decoding.drafters import FallbackDrafter, ModelDrafter, NgramDrafter
        from ragkit.decoding.speculative import SpeculativeDecoder
        from ragkit.decoding.tree import NgramTreeDrafter, TopKTreeDrafter, TreeSpeculativeDecoder

        target = self._target
        sources = [target.encode(d.content or "") for d in ordered if d.content]
        ngram = NgramDrafter(sources, max_ngram=self.max_ngram)
        drafter: Any = ngram
        if self.drafter != "ngram":
            drafter = ModelDrafter(
                self._draft_lm, draft_prompt, confidence=self.confidence, target=target
            )
            if self.drafter.endswith("+ngram"):
                drafter = FallbackDrafter(drafter, ngram)
        if self.tree_width:
            tree: Any = (
                NgramTreeDrafter(sources, max_ngram=self.max_ngram)
                if self.drafter == "ngram"
                else TopKTreeDrafter(drafter)
            )
            return TreeSpeculativeDecoder(target, tree, depth=self.gamma, width=self.tree_width)
        config = SpeculativeConfig(
            gamma=self.gamma,
            eta=self.eta,
            alpha=self.alpha,
            residual=self.residual,
            confidence=self.confidence,
        )
        return SpeculativeDecoder(target, drafter, config, self.answer_policy())

    def gamma_policy(self) -> Any:
        """The adaptive policy of the latest answer (``None`` before one, or when not adaptive)."""
        return self._policy

    def answer_policy(self) -> Any:
        """The adaptive draft-length policy for one new answer (``None`` when not adaptive).

        By default each answer gets a fresh policy. With ``learn_across_calls`` the generator
        keeps one: the backoff and plain rate it measured carry into the next answer (see
        :meth:`~ragkit.decoding.policy.AdaptiveGamma.begin_answer`), which saves the probes
        where a drafter never pays but also skips stretches where it would (in the README's
        bench run it won at 2k tokens and lost at 8k, hence off by default).
        """
        from ragkit.decoding.policy import AdaptiveGamma

        if not self.adaptive or self.tree_width:
            return None
        if self._policy is None or not self.learn_across_calls:
            self._policy = AdaptiveGamma(gamma_max=self.gamma)
        else:
            self._policy.begin_answer()
        return self._policy

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
        reply.meta["speculative"] = self.stats_meta(run.stats)
        return out

    def stats_meta(self, stats: Any) -> dict[str, Any]:
        """One call's counters, plus what the adaptive policy has learned after it."""
        meta: dict[str, Any] = {"drafter": self.drafter, **stats.as_dict()}
        if self._policy is not None:
            meta["policy"] = self._policy.state()
        return meta


@component
class RapidReader:
    """RAPID long-document QA: the target reads the whole document, the drafter retrieved chunks.

    Per question: the document is fitted to the target's context (``truncation`` policy, never
    silent: the ``trace`` output carries a warning line and the cut), the target's prompt is split
    where the question starts and the document prefix's KV state is loaded from (or computed and
    saved to) ``cache_dir``, keyed by the model and the prefix's content hash, so a second
    question on the same document skips the document's prefill. The document is chunked, the
    chunks ranked by BM25 against the question and about ``max(L / ratio, budget_tokens)``
    tokens of them, in document order, form the drafter's context (see
    :mod:`ragkit.decoding.rapid`). Decoding is :class:`~ragkit.decoding.SpeculativeDecoder`:
    greedy output is the target's own; ``eta > 0`` is RAPID's knowledge transfer.

    ### Usage example
    ```python
    reader = RapidReader(drafter="ngram", generation_kwargs={"max_new_tokens": 32})
    out = reader.run(question="Who built the bridge?", document=open("report.txt").read())
    out["replies"][0].text, out["trace"]["prefix_cache"]["hit"]
    ```
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        backend: Literal["transformers", "llama.cpp"] = "llama.cpp",
        drafter: DrafterKind = "ngram",
        draft_model: str | None = None,
        gamma: int = 10,
        eta: float = 0.0,
        alpha: float = 0.1,
        residual: Literal["paper", "code"] = "paper",
        confidence: float = 0.1,
        adaptive: bool = True,
        learn_across_calls: bool = False,
        max_ngram: int = 3,
        tree_width: int = 0,
        chunk_tokens: int = 128,
        budget_tokens: int = 1024,
        ratio: int = 32,
        reserve_tokens: int = 256,
        truncation: Literal["middle", "head", "error"] = "middle",
        instruction: str | None = None,
        cache_dir: str | None = None,
        persist_prefix: bool = True,
        device: str = "auto",
        compile_draft_step: bool = False,
        n_ctx: int = 16384,
        n_threads: int | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Store and check settings; models load in :meth:`warm_up`.

        Args:
            model: The target model (packaged name, hub id, directory or ``.gguf``).
            backend: ``llama.cpp`` (CPU default) or ``transformers``.
            drafter: As :class:`SpeculativeGenerator`; model drafters read the retrieved chunks.
            draft_model: The drafter model for ``model`` drafters (same vocabulary).
            gamma: Most tokens drafted per target call (> 0).
            eta: RAPID knowledge-transfer step (>= 0; 0 is lossless).
            alpha: Plausibility mask threshold for the transfer, in (0, 1].
            residual: ``paper`` or ``code`` residual rule on rejection.
            confidence: The model drafter stops before a token less probable than this.
            adaptive: Adapt gamma and turn drafting off where it is measured not to pay.
            learn_across_calls: Keep one adaptive policy across questions on this reader.
            max_ngram: Longest n-gram the n-gram drafter matches.
            tree_width: Tree drafting, as :class:`SpeculativeGenerator` (transformers, greedy).
            chunk_tokens: Retrieval chunk size in target tokens (RAPID: 128).
            budget_tokens: Lower bound of the drafter's context in tokens (RAPID: 4096).
            ratio: The drafter's context is at least ``L / ratio`` tokens (RAPID: 32).
            reserve_tokens: Target context kept free for the question and the answer (at least
                ``max_new_tokens + 64`` is kept whatever this says).
            truncation: ``middle``, ``head`` or ``error`` for a document longer than the
                target's context.
            instruction: What the prompt asks before the document (default: a short answer).
            cache_dir: Where document prefix states are saved (default ``$RAGKIT_CACHE/rapid``).
            persist_prefix: Save and reuse document prefix states on disk.
            device: transformers device (``auto``, ``cpu``, ``cuda``; bf16 and a static KV
                cache on CUDA).
            compile_draft_step: As :class:`SpeculativeGenerator` (transformers backend).
            n_ctx: llama.cpp context to allocate (bounds the document the target reads).
            n_threads: llama.cpp threads (``None``: llama.cpp's choice).
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.

        Raises:
            InvalidParameter: Naming the bad parameter.
        """
        from ragkit.decoding.rapid import DEFAULT_INSTRUCTION, check_rapid_settings

        self._spec = SpeculativeGenerator(
            model=model,
            backend=backend,
            drafter=drafter,
            draft_model=draft_model,
            gamma=gamma,
            eta=eta,
            alpha=alpha,
            residual=residual,
            confidence=confidence,
            adaptive=adaptive,
            learn_across_calls=learn_across_calls,
            max_ngram=max_ngram,
            tree_width=tree_width,
            device=device,
            compile_draft_step=compile_draft_step,
            n_ctx=n_ctx,
            n_threads=n_threads,
            generation_kwargs=generation_kwargs,
        )
        check_rapid_settings(chunk_tokens, budget_tokens, ratio, reserve_tokens, truncation)
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
        self.learn_across_calls = learn_across_calls
        self.max_ngram = max_ngram
        self.tree_width = tree_width
        self.chunk_tokens = chunk_tokens
        self.budget_tokens = budget_tokens
        self.ratio = ratio
        self.reserve_tokens = reserve_tokens
        self.truncation = truncation
        self.instruction = instruction
        self._instruction = instruction or DEFAULT_INSTRUCTION
        self.cache_dir = cache_dir
        self.persist_prefix = persist_prefix
        self.device = device
        self.compile_draft_step = compile_draft_step
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.generation_kwargs = dict(generation_kwargs or {})
        self._memo: tuple[str, Any] | None = None

    @classmethod
    def from_models(cls, target: Any, draft_lm: Any | None = None, **kwargs: Any) -> RapidReader:
        """Wrap already-loaded models (the bench and tests share them across runs)."""
        instance = cls(model=target.name, **kwargs)
        instance._spec._target, instance._spec._draft_lm = target, draft_lm
        return instance

    def warm_up(self) -> None:
        """Load the target and, for model drafters, the drafter."""
        self._spec.warm_up()

    def close(self) -> None:
        """Release both models."""
        self._spec.close()
        self._memo = None

    def _store(self) -> Any:
        from ragkit.decoding.rapid import DocumentPrefixStore
        from ragkit.models.gguf_cache import default_cache_dir

        if not self.persist_prefix:
            return DocumentPrefixStore(None)
        return DocumentPrefixStore(self.cache_dir or default_cache_dir() / "rapid")

    def prefix_state(self, prefix_ids: list[int]) -> tuple[Any, dict[str, Any]]:
        """The document prefix's KV state for the target: in its cache, memo, disk or computed.

        Returns:
            The state to pass as ``prefix_cache`` (``None`` when the llama.cpp cache already
            holds the prefix) and a summary (``source``: ``kv``, ``memory``, ``disk`` or
            ``computed``; ``seconds``; ``path``).
        """
        from ragkit.models.driver import common_prefix_length

        target = self._spec._target
        store = self._store()
        key = store.key(target, prefix_ids)
        n = len(prefix_ids)
        if target.implicit_prefix_reuse and common_prefix_length(target.kv_tokens, prefix_ids) == n:
            return None, {"source": "kv", "hit": True, "seconds": 0.0, "tokens": n}
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1], {"source": "memory", "hit": True, "seconds": 0.0, "tokens": n}
        found = store.get(target, prefix_ids)
        self._memo = (key, found.state)
        info = {
            "source": "disk" if found.hit else "computed",
            "hit": found.hit,
            "seconds": round(found.seconds, 4),
            "tokens": n,
            "path": str(found.path) if found.path else None,
        }
        if found.notes:
            info["notes"] = found.notes
        held = (
            target.implicit_prefix_reuse and common_prefix_length(target.kv_tokens, prefix_ids) == n
        )
        return (None if held else found.state), info

    def _decoder(self, draft_ids: list[int], chunks: Sequence[Document]) -> Any:
        """The speculative decoder for one question: chunks are already in document order."""
        return self._spec.build_decoder(draft_ids, chunks)

    @component.output_types(replies=list[ChatMessage], documents=list[Document], trace=dict)
    def run(
        self,
        question: str,
        document: str,
        generation_kwargs: dict[str, Any] | None = None,
        streaming_callback: SyncStreamingCallbackT | None = None,
    ) -> dict[str, Any]:
        """Answer ``question`` over ``document`` with retrieval-augmented speculative decoding.

        Args:
            question: The question.
            document: The long document's text.
            generation_kwargs: Per-call overrides of the init ``generation_kwargs``.
            streaming_callback: Receives a chunk per text delta, then a final chunk.

        Returns:
            ``replies`` (meta as the other generators plus ``speculative``), ``documents`` (the
            retrieved chunks, in document order) and ``trace``: ``rapid`` (document tokens,
            retrieved chunks, ``truncation``), ``prefix_cache`` (``hit``, ``source``,
            ``seconds``), ``speculative`` counters and ``warnings`` (one line per issue).
        """
        from ragkit.decoding.rapid import build_rapid_prompt

        self.warm_up()
        target = self._spec._target
        kwargs = merge_generation_kwargs(self.generation_kwargs, generation_kwargs)
        started = time.perf_counter()
        prompt = build_rapid_prompt(
            target,
            document,
            question,
            chunk_tokens=self.chunk_tokens,
            budget_tokens=self.budget_tokens,
            ratio=self.ratio,
            # room for the question (~64 tokens) and the whole answer, whatever reserve_tokens says
            reserve_tokens=max(self.reserve_tokens, int(kwargs.get("max_new_tokens", 256)) + 64),
            truncation=self.truncation,
            instruction=self._instruction,
        )
        chunks = [
            Document(
                content=c.text,
                meta={
                    "source": "document",
                    "title": f"chunk {c.index}",
                    "chunk": c.index,
                    "start": c.start,
                    "end": c.end,
                    "tokens": c.tokens,
                },
                score=c.score,
            )
            for c in prompt.chunks
        ]
        state, cache_info = self.prefix_state(prompt.prefix_ids)
        run = _SpeculativeRun(self._decoder(prompt.draft_ids, chunks), target)
        run.fixed_prompt = prompt.target_ids
        run.prefix_cache = state
        out = chat_reply(
            self, run, [], self.generation_kwargs, generation_kwargs, streaming_callback
        )
        reply = out["replies"][0]
        stats = self._spec.stats_meta(run.stats)
        reply.meta["speculative"] = stats
        warnings = [prompt.truncation.message()] if prompt.truncation else []
        trace = {
            "rapid": prompt.info(),
            "prefix_cache": cache_info,
            "speculative": stats,
            "seconds": round(time.perf_counter() - started, 4),
            "warnings": warnings,
        }
        return {"replies": out["replies"], "documents": chunks, "trace": trace}
