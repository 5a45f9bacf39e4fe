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
from typing import Any, Self

from haystack import Document, component
from haystack.dataclasses import ChatMessage
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.decoding.settings import (
    NgramSpec,
    RapidContext,
    SpeculativeSettings,
    check_speculation,
    resolve_drafter,
    upgrade_speculative,
)
from ragkit.documents import document_position
from ragkit.models.chat import chat_reply, merge_generation_kwargs
from ragkit.models.spec import ModelSpec, resolve_spec
from ragkit.settings import coerce

__all__ = [
    "ModelSpec",
    "NgramSpec",
    "RapidContext",
    "RapidReader",
    "SpeculativeGenerator",
    "SpeculativeSettings",
]

_DEFAULT_TARGET = ModelSpec()
"""The speculative generator's target: the registry's packaged model on transformers."""
_DEFAULT_READER = ModelSpec(backend="llama.cpp", n_ctx=16384)
"""The RAPID reader's target: llama.cpp (fast prefill on a CPU), room for a long document."""


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


class _TargetAndDrafter:
    """What the two speculative components share: a target model and the flat-to-nested upgrade."""

    target: ModelSpec

    @property
    def model(self) -> str:
        """The target's name: reply meta's ``model``, as with ragkit's other generators."""
        return self.target.name

    @classmethod
    def upgrade_init_parameters(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Init parameters with the flat ones of the release before moved to their nested keys."""
        return upgrade_speculative(cls.__name__, params)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Deserialize; flat parameters of the release before load with a deprecation warning."""
        from haystack.core.serialization import default_from_dict

        params = cls.upgrade_init_parameters(data.get("init_parameters") or {})
        return default_from_dict(cls, {**data, "init_parameters": params})


@component
class SpeculativeGenerator(_TargetAndDrafter):
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
        target: ModelSpec | dict[str, Any] | str | None = None,
        drafter: ModelSpec | NgramSpec | dict[str, Any] | str | None = None,
        speculation: SpeculativeSettings | dict[str, Any] | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Store and check settings; models load in :meth:`warm_up`.

        Args:
            target: The target model (:class:`~ragkit.models.spec.ModelSpec` or its mapping;
                a name alone is ``{name: NAME}``). Default: the registry's packaged model on
                transformers. On CUDA the models run in bf16 with a pre-allocated static KV
                cache.
            drafter: ``ngram`` / ``{kind: ngram, max_ngram: 3}`` (prompt lookup in the prompt
                and ``documents``), or a model spec reading ``draft_messages`` (same vocabulary
                and backend as the target; keys it leaves out are the target's, so ``{}`` is a
                second instance of the target).
            speculation: Draft length, knowledge transfer, adaptivity, tree drafting and an
                n-gram ``fallback`` for a model drafter (:class:`SpeculativeSettings`).
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.

        Raises:
            InvalidParameter: Naming the bad key (``speculation.gamma`` <= 0, ``speculation.eta``
                < 0, ``speculation.alpha`` outside (0, 1], an unknown backend...).
        """
        self.target = resolve_spec(target, _DEFAULT_TARGET, "target")
        self.drafter = resolve_drafter(drafter, self.target)
        self.speculation = coerce(SpeculativeSettings, speculation, "speculation")
        check_speculation(self.target, self.drafter, self.speculation)
        merge_generation_kwargs(generation_kwargs)
        self.generation_kwargs = dict(generation_kwargs or {})
        self._target: Any = None
        self._draft_lm: Any = None
        self._policy: Any = None

    @classmethod
    def from_models(
        cls, target_lm: Any, draft_lm: Any | None = None, /, **kwargs: Any
    ) -> SpeculativeGenerator:
        """Wrap already-loaded models (shares weights and caches with other components).

        Args:
            target_lm: The loaded target backend.
            draft_lm: A loaded drafter backend (a separate instance) for model drafters.
            **kwargs: Init arguments (``target``, ``drafter``, ``speculation``, ...); ``target``
                defaults to the loaded model's name.
        """
        kwargs.setdefault("target", {"name": target_lm.name})
        instance = cls(**kwargs)
        instance._target, instance._draft_lm = target_lm, draft_lm
        return instance

    def warm_up(self) -> None:
        """Load the target and, for model drafters, the drafter (a separate instance)."""
        if self._target is None:
            self._target = self.target.load()
        if self._draft_lm is None and isinstance(self.drafter, ModelSpec):
            compiled = self.speculation.compile_draft_step
            self._draft_lm = self.drafter.load(
                kv_cache="static" if compiled else "auto", compile_step=compiled
            )

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
        # corpus order: source, passage position, character offset (as MemoRAG's union)
        return self.build_decoder(prompt, sorted(documents, key=document_position))

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

        target, spec = self._target, self.speculation
        sources = [target.encode(d.content or "") for d in ordered if d.content]
        lookup = self.drafter if isinstance(self.drafter, NgramSpec) else spec.fallback
        drafter: Any = None
        if isinstance(self.drafter, ModelSpec):
            drafter = ModelDrafter(
                self._draft_lm, draft_prompt, confidence=spec.confidence, target=target
            )
        if lookup is not None:
            ngram = NgramDrafter(sources, max_ngram=lookup.max_ngram)
            drafter = ngram if drafter is None else FallbackDrafter(drafter, ngram)
        if spec.tree_width:
            tree: Any = (
                NgramTreeDrafter(sources, max_ngram=self.drafter.max_ngram)
                if isinstance(self.drafter, NgramSpec)
                else TopKTreeDrafter(drafter)
            )
            return TreeSpeculativeDecoder(target, tree, depth=spec.gamma, width=spec.tree_width)
        return SpeculativeDecoder(target, drafter, spec.config(), self.answer_policy())

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

        spec = self.speculation
        if not spec.adaptive or spec.tree_width:
            return None
        if self._policy is None or not spec.learn_across_calls:
            self._policy = AdaptiveGamma(gamma_max=spec.gamma)
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

    def drafter_label(self) -> str:
        """What drafts, for reply meta: ``ngram``, ``self`` or ``model``, ``+ngram`` on fallback."""
        if isinstance(self.drafter, NgramSpec):
            return "ngram"
        label = "self" if self.drafter.name == self.target.name else "model"
        return label + ("+ngram" if self.speculation.fallback is not None else "")

    def stats_meta(self, stats: Any) -> dict[str, Any]:
        """One call's counters, plus what the adaptive policy has learned after it."""
        meta: dict[str, Any] = {"drafter": self.drafter_label(), **stats.as_dict()}
        if self._policy is not None:
            meta["policy"] = self._policy.state()
        return meta


@component
class RapidReader(_TargetAndDrafter):
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
        target: ModelSpec | dict[str, Any] | str | None = None,
        drafter: ModelSpec | NgramSpec | dict[str, Any] | str | None = None,
        speculation: SpeculativeSettings | dict[str, Any] | None = None,
        context: RapidContext | dict[str, Any] | None = None,
        instruction: str | None = None,
        cache_dir: str | None = None,
        persist_prefix: bool = True,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Store and check settings; models load in :meth:`warm_up`.

        Args:
            target: The model that reads the whole document (a
                :class:`~ragkit.models.spec.ModelSpec` or its mapping). Default: the registry's
                packaged model on llama.cpp with a 16k context (``n_ctx`` bounds the document).
            drafter: As :class:`SpeculativeGenerator`; a model drafter reads the retrieved chunks.
            speculation: As :class:`SpeculativeGenerator` (:class:`SpeculativeSettings`).
            context: Chunking, the drafter's budget and the target's truncation
                (:class:`RapidContext`).
            instruction: What the prompt asks before the document (default: a short answer).
            cache_dir: Where document prefix states are saved (default ``$RAGKIT_CACHE/rapid``).
            persist_prefix: Save and reuse document prefix states on disk.
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.

        Raises:
            InvalidParameter: Naming the bad key (``speculation.gamma``, ``context.ratio``...).
        """
        from ragkit.decoding.rapid import DEFAULT_INSTRUCTION

        target_spec = resolve_spec(target, _DEFAULT_READER, "target")
        self._spec = SpeculativeGenerator(
            target=target_spec,
            drafter=drafter,
            speculation=speculation,
            generation_kwargs=generation_kwargs,
        )
        self.target = self._spec.target
        self.drafter = self._spec.drafter
        self.speculation = self._spec.speculation
        self.context = coerce(RapidContext, context, "context")
        self.instruction = instruction
        self._instruction = instruction or DEFAULT_INSTRUCTION
        self.cache_dir = cache_dir
        self.persist_prefix = persist_prefix
        self.generation_kwargs = dict(generation_kwargs or {})
        self._memo: tuple[str, Any] | None = None

    @classmethod
    def from_models(
        cls, target_lm: Any, draft_lm: Any | None = None, /, **kwargs: Any
    ) -> RapidReader:
        """Wrap already-loaded models (the bench and tests share them across runs).

        Args:
            target_lm: The loaded target backend.
            draft_lm: A loaded drafter backend for model drafters.
            **kwargs: Init arguments; ``target`` defaults to the loaded model's name.
        """
        kwargs.setdefault("target", {"name": target_lm.name})
        instance = cls(**kwargs)
        instance._spec._target, instance._spec._draft_lm = target_lm, draft_lm
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
        context = self.context
        prompt = build_rapid_prompt(
            target,
            document,
            question,
            chunk_tokens=context.chunk_tokens,
            budget_tokens=context.budget_tokens,
            ratio=context.ratio,
            # room for the question (~64 tokens) and the whole answer, whatever reserve_tokens says
            reserve_tokens=max(context.reserve_tokens, int(kwargs.get("max_new_tokens", 256)) + 64),
            truncation=context.truncation,
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
        # the decoder first: it refuses a drafter of another vocabulary, before the document's
        # prefill (seconds to minutes) is spent
        decoder = self._decoder(prompt.draft_ids, chunks)
        state, cache_info = self.prefix_state(prompt.prefix_ids)
        run = _SpeculativeRun(decoder, target)
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
