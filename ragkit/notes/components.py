"""Haystack wrapper of the Adaptive-Note loop: :class:`AdaptiveNoteAnswerer` (question -> answer).

The loop needs a generator many times per question (notes, queries, verdicts, answer), which a
Haystack pipeline graph cannot express without a cycle. So the answerer *owns* its generator and
context fitter as nested components, configured in YAML as ``{type, init_parameters}`` under its
``generator`` and ``fitter`` parameters. Profiles override them by name exactly as they override
the top-level ``generator``/``fitter`` of other pipelines (:func:`ragkit.pipeline.apply_overrides`
applies an override to nested components of the same name), so ``--profile cpu-quality`` swaps
in llama.cpp here too. Retrieval is the hybrid of ``pipelines/rag_short.yaml`` (BM25 + dense,
reciprocal rank fusion) over the store that ``ragkit.load_pipeline`` binds.
"""

from __future__ import annotations

import time
from typing import Any

from haystack import Document, component
from haystack.dataclasses import ChatMessage, GeneratedAnswer
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.notes.loop import ChatLLM, Fit, LLMReply, NoteSettings, Passage, run_adaptive_note
from ragkit.notes.prompts import load_prompt_set
from ragkit.stores.components import StoreBound

__all__ = [
    "DEFAULT_FITTER",
    "DEFAULT_GENERATOR",
    "AdaptiveNoteAnswerer",
    "fitter_fit",
    "generator_llm",
]

DEFAULT_GENERATOR: dict[str, Any] = {
    "type": "ragkit.models.components.LocalChatGenerator",
    "init_parameters": {"model": "smollm2-135m-instruct"},
}
DEFAULT_FITTER: dict[str, Any] = {
    "type": "ragkit.answering.components.ContextFitter",
    "init_parameters": {"tokenizer": "smollm2-135m-instruct", "context_tokens": 8192},
}


def _component(value: Any, default: dict[str, Any], name: str) -> Any:
    """A sub-component from an instance, a ``{type, init_parameters}`` mapping, or the default."""
    from ragkit.pipeline import build_component_spec

    if value is None:
        value = default
    if isinstance(value, dict):
        return build_component_spec(value, f"init_parameters.{name}")
    if not callable(getattr(value, "run", None)):
        raise TypeError(
            f"{name}: expected a Haystack component or a {{type, init_parameters}} mapping"
        )
    return value


def _label(doc: Document) -> str:
    """Short name of a passage for the trace: its title, else file name and character span."""
    if doc.meta.get("title"):
        return str(doc.meta["title"])
    source = str(doc.meta.get("source") or doc.id)
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    start = doc.meta.get("start")
    return f"{name}@{start}" if start is not None else name


def generator_llm(generator: Any, callback: SyncStreamingCallbackT | None = None) -> ChatLLM:
    """Adapt a Haystack chat generator to the loop's :class:`ChatLLM` (usage read from reply meta).

    Args:
        generator: Any chat generator (``run(messages, generation_kwargs, streaming_callback)``).
        callback: Streams the final answer only.

    Returns:
        The callable the loop uses; ``max_tokens`` goes out as ``generation_kwargs``, which
        ragkit's generators and OpenAI-compatible ones both read.
    """

    def call(messages: list[dict[str, str]], max_tokens: int, final: bool = False) -> LLMReply:
        chat = [
            ChatMessage.from_system(m["content"])
            if m["role"] == "system"
            else ChatMessage.from_user(m["content"])
            for m in messages
        ]
        kwargs: dict[str, Any] = {"generation_kwargs": {"max_tokens": max_tokens}}
        if final and callback is not None:
            kwargs["streaming_callback"] = callback
        start = time.perf_counter()
        reply = generator.run(messages=chat, **kwargs)["replies"][0]
        meta = reply.meta or {}
        usage = meta.get("usage") or {}
        timings = meta.get("timings") or {}
        return LLMReply(
            text=reply.text or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            prefix_tokens_reused=int(timings.get("prefix_tokens_reused") or 0),
            seconds=time.perf_counter() - start,
        )

    return call


def fitter_fit(fitter: Any) -> Fit:
    """Adapt a ``ContextFitter``-like component (``run(question, documents)``) to the loop's fit."""

    def fit(question: str, texts: list[str]) -> list[str]:
        docs = [Document(content=t) for t in texts]
        out = fitter.run(question=question, documents=docs)["documents"]
        return [d.content or "" for d in out]

    return fit


@component
class AdaptiveNoteAnswerer(StoreBound):
    """Answers from an iteratively refined note (Adaptive-Note), with a per-step trace.

    Outputs ``answers`` (one ``GeneratedAnswer`` whose meta holds ``usage`` summed over all LLM
    calls, ``timings`` and the ``trace``), ``documents`` (every passage read in any step, in
    reading order), ``note`` (the best note) and ``trace``.

    ### Usage example
    ```python
    answerer = AdaptiveNoteAnswerer(store=".ragkit", max_step=3)
    answerer.warm_up()
    out = answerer.run(question="Which river is longer, the Nile or the Amazon?")
    out["answers"][0].data, out["trace"]["stop_reason"]
    ```
    """

    def __init__(
        self,
        generator: Any = None,
        fitter: Any = None,
        store: str | None = None,
        embedding_model: str = "minilm",
        candidates: int = 20,
        weights: list[float] | None = None,
        top_k: int = 5,
        max_top_k: int = 15,
        max_step: int = 3,
        max_fail_step: int = 1,
        query_max_chars: int = 500,
        dedup: str = "always",
        fail_count: str = "consecutive",
        note_max_tokens: int = 160,
        query_max_tokens: int = 64,
        verdict_max_tokens: int = 32,
        answer_max_tokens: int = 64,
        prompts: str | dict[str, str] | None = None,
    ) -> None:
        """Configure the loop; nothing loads until :meth:`warm_up`.

        Args:
            generator: Chat generator component, or its ``{type, init_parameters}`` mapping
                (default: SmolLM2 locally). Any Haystack chat generator works.
            fitter: Context fitter (component or mapping) that trims notes and passages to the
                reader's context, never the question (default: SmolLM2 tokenizer, 8k).
            store: Store location; bound by ``ragkit.load_pipeline`` when it has a store.
            embedding_model: Query embedder (the model the store was built with).
            candidates: Passages each of BM25 and dense retrieval hand to the fusion.
            weights: Fusion weights of BM25 and dense (default equal).
            top_k: Passages per retrieval (paper runs: 5).
            max_top_k: Cap on passages read in all steps together (upstream: 15).
            max_step: Refinement rounds at most (paper runs: 3).
            max_fail_step: Rejected refinements that stop the loop (paper runs: 1).
            query_max_chars: Search string (new questions + question) cut to this many characters.
            dedup: ``always`` (skip passages already read) or ``near_cap`` (upstream: only when
                the step could pass ``max_top_k``).
            fail_count: ``consecutive`` or ``total`` (upstream) rejections count to the budget.
            note_max_tokens: Token cap on written notes.
            query_max_tokens: Token cap on generated search questions.
            verdict_max_tokens: Token cap on the reviewer's reply.
            answer_max_tokens: Token cap on the answer.
            prompts: Prompt overrides: a mapping ``role -> template`` or a YAML file of one
                (roles: system, init_note, queries, refine, compare, answer).
        """
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.generator = _component(generator, DEFAULT_GENERATOR, "generator")
        self.fitter = _component(fitter, DEFAULT_FITTER, "fitter")
        self.store = store
        self.embedding_model = embedding_model
        self.candidates = candidates
        self.weights = list(weights) if weights is not None else None
        self.top_k = top_k
        self.max_top_k = max_top_k
        self.max_step = max_step
        self.max_fail_step = max_fail_step
        self.query_max_chars = query_max_chars
        self.dedup = dedup
        self.fail_count = fail_count
        self.note_max_tokens = note_max_tokens
        self.query_max_tokens = query_max_tokens
        self.verdict_max_tokens = verdict_max_tokens
        self.answer_max_tokens = answer_max_tokens
        self.prompts = prompts
        self._settings = NoteSettings(
            max_step=max_step,
            max_fail_step=max_fail_step,
            top_k=top_k,
            max_top_k=max_top_k,
            query_max_chars=query_max_chars,
            dedup=dedup,  # type: ignore[arg-type]  # NoteSettings checks the value
            fail_count=fail_count,  # type: ignore[arg-type]
            note_max_tokens=note_max_tokens,
            query_max_tokens=query_max_tokens,
            verdict_max_tokens=verdict_max_tokens,
            answer_max_tokens=answer_max_tokens,
        )
        self._prompt_set = load_prompt_set(prompts, "init_parameters.prompts")
        self._embedder: Any = None
        self._joiner: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Serialize with the generator and fitter nested as ``{type, init_parameters}``."""
        from haystack.core.serialization import component_to_dict, default_to_dict

        params = {name: getattr(self, name) for name in _INIT_NAMES}
        params["generator"] = component_to_dict(self.generator, "generator")
        params["fitter"] = component_to_dict(self.fitter, "fitter")
        return default_to_dict(self, **params)

    def warm_up(self) -> None:
        """Load the generator, tokenizer and query embedder; open the store."""
        from haystack.components.joiners.document_joiner import DocumentJoiner

        from ragkit.retrieval.embedders import TextEmbedder

        for part in (self.generator, self.fitter):
            if hasattr(part, "warm_up"):
                part.warm_up()
        if self._embedder is None:
            self._embedder = TextEmbedder(model=self.embedding_model)
            self._embedder.warm_up()
        if self._joiner is None:
            self._joiner = DocumentJoiner(
                join_mode="reciprocal_rank_fusion", weights=self.weights or [0.5, 0.5]
            )
        self.open_bound_store()

    def close(self) -> None:
        """Release the generator's model and a store this component opened itself."""
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()
        self._embedder = None
        StoreBound.close(self)  # the @component class is rebuilt, so no zero-arg super()

    # ------------------------------------------------------------------ adapters for the loop

    def _search(self, query: str, top_k: int) -> list[Passage]:
        store = self.open_bound_store()
        embedding = self._embedder.run(text=query)["embedding"]
        dense = store.dense_search(embedding, top_k=self.candidates)
        lexical = store.bm25_search(query, top_k=self.candidates)
        fused = self._joiner.run(documents=[lexical, dense], top_k=top_k)["documents"]
        return [
            Passage(
                id=str(d.id),
                text=d.content or "",
                title=d.meta.get("title"),
                label=_label(d),
                ref=d,
            )
            for d in fused
        ]

    @component.output_types(
        answers=list[GeneratedAnswer], documents=list[Document], note=str, trace=dict
    )
    def run(
        self,
        question: str,
        top_k: int | None = None,
        streaming_callback: SyncStreamingCallbackT | None = None,
    ) -> dict[str, Any]:
        """Run the loop for one question.

        Args:
            question: The question.
            top_k: Passages per retrieval for this call (default: ``top_k``).
            streaming_callback: Receives the final answer's tokens (the loop's own calls are
                not streamed).

        Returns:
            ``answers``, ``documents`` (all passages read), ``note`` and ``trace``.
        """
        self.warm_up()
        settings = self._settings
        if top_k is not None:
            from dataclasses import replace

            settings = replace(settings, top_k=top_k)
        start = time.perf_counter()
        result = run_adaptive_note(
            question,
            generator_llm(self.generator, streaming_callback),
            self._search,
            settings,
            self._prompt_set,
            fitter_fit(self.fitter),
        )
        seconds = time.perf_counter() - start
        totals = result.trace["totals"]
        usage = {
            "llm_calls": totals["llm_calls"],
            "prompt_tokens": totals["prompt_tokens"],
            "completion_tokens": totals["completion_tokens"],
            "total_tokens": totals["prompt_tokens"] + totals["completion_tokens"],
            "prefix_tokens_reused": totals["prefix_tokens_reused"],
            "passages_read": totals["passages_read"],
        }
        result.trace["totals"]["seconds"] = round(seconds, 3)
        documents = [p.ref for p in result.passages if isinstance(p.ref, Document)]
        answer = GeneratedAnswer(
            data=result.answer,
            query=question,
            documents=documents,
            meta={
                "usage": usage,
                "timings": {"seconds": seconds, "llm_seconds": totals["llm_seconds"]},
                "note": result.note,
                "stop_reason": result.stop_reason,
                "trace": result.trace,
            },
        )
        return {
            "answers": [answer],
            "documents": documents,
            "note": result.note,
            "trace": result.trace,
        }


_INIT_NAMES = (
    "generator",
    "fitter",
    "store",
    "embedding_model",
    "candidates",
    "weights",
    "top_k",
    "max_top_k",
    "max_step",
    "max_fail_step",
    "query_max_chars",
    "dedup",
    "fail_count",
    "note_max_tokens",
    "query_max_tokens",
    "verdict_max_tokens",
    "answer_max_tokens",
    "prompts",
)
