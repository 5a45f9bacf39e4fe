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

import dataclasses
import time
from typing import Any

from haystack import Document, component
from haystack.components.generators.chat.types import ChatGenerator
from haystack.dataclasses import ChatMessage, GeneratedAnswer
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.answering.components import ContextFitter
from ragkit.errors import InvalidParameter, check_count, clip
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, model_files
from ragkit.notes.loop import ChatLLM, Fit, LLMReply, NoteSettings, Passage, run_adaptive_note
from ragkit.notes.prompts import load_prompt_set
from ragkit.settings import upgrade_flat
from ragkit.stores.components import StoreBound
from ragkit.stores.store import RagkitStore  # at run time: the loader resolves the hints

__all__ = [
    "DEFAULT_FITTER",
    "DEFAULT_GENERATOR",
    "AdaptiveNoteAnswerer",
    "fitter_fit",
    "generator_llm",
]

DEFAULT_GENERATOR: dict[str, Any] = {
    "type": "ragkit.models.components.LocalChatGenerator",
    "init_parameters": {"model": DEFAULT_CAUSAL_MODEL},
}
DEFAULT_FITTER: dict[str, Any] = {
    "type": "ragkit.answering.components.ContextFitter",
    "init_parameters": {"tokenizer": DEFAULT_CAUSAL_MODEL, "context_tokens": 8192},
}


def _component(value: Any, default: dict[str, Any], name: str) -> Any:
    """A sub-component from an instance, a ``{type, init_parameters}`` mapping, or the default.

    A mapping gets ragkit's pipeline checks (allowlist, parameter names and types) with errors
    naming ``init_parameters.NAME...``; ``from_dict`` deserializes it the Haystack way first.
    """
    from ragkit.pipeline import build_component_spec

    if value is None:
        value = default
    if isinstance(value, dict):
        return build_component_spec(value, f"init_parameters.{name}")
    if not callable(getattr(value, "run", None)):
        raise InvalidParameter(
            name,
            f"expected a Haystack component or a {{type, init_parameters}} mapping, got "
            f"{clip(value)}",
        )
    return value


_LOOP_KEYS = frozenset(f.name for f in dataclasses.fields(NoteSettings))
"""The loop's settings: nested under ``loop`` (flat init parameters before)."""


def _note_settings(value: Any, parameter: str = "loop") -> NoteSettings:
    """``value`` (settings, a mapping of their fields, or None) as checked ``NoteSettings``.

    Raises:
        InvalidParameter: Naming the bad key (``loop.dedup``); for the run-time ``top_k``
            override, ``top_k``.
    """
    if value is None:
        return NoteSettings()
    if isinstance(value, NoteSettings):
        return value
    if not isinstance(value, dict):
        raise InvalidParameter(parameter, f"expected a mapping of loop settings, got {clip(value)}")
    unknown = sorted(set(value) - _LOOP_KEYS)
    if unknown:
        raise InvalidParameter(
            f"{parameter}.{unknown[0]}", f"unknown key; accepted: {', '.join(sorted(_LOOP_KEYS))}"
        )
    try:
        return NoteSettings(**value)
    except InvalidParameter as exc:
        where = parameter if parameter != "loop" else f"loop.{exc.parameter}"
        raise InvalidParameter(where, exc.message) from None


def _label(doc: Document) -> str:
    """Short name of a passage for the trace: its title, else file name and character span."""
    if doc.meta.get("title"):
        return str(doc.meta["title"])
    source = str(doc.meta.get("source") or doc.id)
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    start = doc.meta.get("start")
    return f"{name}@{start}" if start is not None else name


def generator_llm(
    generator: ChatGenerator, callback: SyncStreamingCallbackT | None = None
) -> ChatLLM:
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
    answerer = AdaptiveNoteAnswerer(store=".ragkit", loop={"max_step": 3, "top_k": 5})
    answerer.warm_up()
    out = answerer.run(question="Which river is longer, the Nile or the Amazon?")
    out["answers"][0].data, out["trace"]["stop_reason"]
    ```
    """

    model_files = staticmethod(model_files)

    def __init__(
        self,
        generator: ChatGenerator | dict[str, Any] | None = None,
        fitter: ContextFitter | dict[str, Any] | None = None,
        store: str | RagkitStore | None = None,
        embedding_model: str | None = None,
        candidates: int = 20,
        weights: list[float] | None = None,
        loop: NoteSettings | dict[str, Any] | None = None,
        prompts: str | dict[str, str] | None = None,
    ) -> None:
        """Configure the loop; nothing loads until :meth:`warm_up`.

        Args:
            generator: Chat generator component, or its ``{type, init_parameters}`` mapping
                (default: the registry's packaged model, locally). Any Haystack chat generator
                works.
            fitter: Context fitter (component or mapping) that trims notes and passages to the
                reader's context, never the question (default: the packaged model's tokenizer,
                8k).
            store: Store location, or an open store (``ragkit.open_store``);
                ``ragkit.load_pipeline`` binds its own store.
            embedding_model: Query embedder (the model the store was built with); None
                takes the store's record.
            candidates: Passages each of BM25 and dense retrieval hand to the fusion.
            weights: Fusion weights of BM25 and dense (default equal).
            loop: The loop's settings (:class:`~ragkit.notes.loop.NoteSettings` or its mapping:
                ``top_k``, ``max_top_k``, ``max_step``, ``max_fail_step``, ``query_max_chars``,
                ``dedup``, ``fail_count`` and the ``*_max_tokens`` caps; defaults follow the
                paper's runs).
            prompts: Prompt overrides: a mapping ``role -> template`` or a YAML file of one
                (roles: system, init_note, queries, refine, compare, answer).

        Raises:
            InvalidParameter: Naming the bad parameter or key (``loop.dedup``).
        """
        check_count("candidates", candidates)
        self.generator: ChatGenerator = _component(generator, DEFAULT_GENERATOR, "generator")
        self.fitter: ContextFitter = _component(fitter, DEFAULT_FITTER, "fitter")
        self.init_store(store)
        self.embedding_model = embedding_model
        self.candidates = candidates
        self.weights = list(weights) if weights is not None else None
        self.loop = _note_settings(loop)
        self.prompts = prompts
        self._prompt_set = load_prompt_set(prompts, "prompts")
        self._embedder: Any = None
        self._joiner: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Serialize with the generator and fitter nested as ``{type, init_parameters}``."""
        from haystack.core.serialization import component_to_dict, default_to_dict

        return default_to_dict(
            self,
            generator=component_to_dict(self.generator, "generator"),
            fitter=component_to_dict(self.fitter, "fitter"),
            store=self.serialized_store(),
            embedding_model=self.embedding_model,
            candidates=self.candidates,
            weights=self.weights,
            loop=dataclasses.asdict(self.loop),
            prompts=self.prompts,
        )

    @classmethod
    def upgrade_init_parameters(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Init parameters with the flat ones of the release before moved under ``loop``."""
        if not _LOOP_KEYS & set(params):
            return dict(params)
        return upgrade_flat(cls.__name__, params, {k: f"loop.{k}" for k in sorted(_LOOP_KEYS)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptiveNoteAnswerer:
        """Deserialize, building the nested generator and fitter with their own ``from_dict``.

        Raises:
            InvalidParameter: A nested component's bad parameter, named under its key
                (``generator.init_parameters.model``).
        """
        from haystack.core.serialization import default_from_dict
        from haystack.utils import deserialize_chatgenerator_inplace
        from haystack.utils.deserialization import deserialize_component_inplace

        params = cls.upgrade_init_parameters(data.get("init_parameters") or {})
        for key, deserialize in (
            ("generator", deserialize_chatgenerator_inplace),
            ("fitter", deserialize_component_inplace),
        ):
            if isinstance(params.get(key), dict):
                try:
                    deserialize(params, key=key)
                except InvalidParameter as exc:
                    where = f"{key}.init_parameters.{exc.parameter}"
                    raise InvalidParameter(where, exc.message) from None
        return default_from_dict(cls, {**data, "init_parameters": params})

    def warm_up(self) -> None:
        """Load the generator, tokenizer and query embedder; open the store."""
        from haystack.components.joiners.document_joiner import DocumentJoiner

        from ragkit.retrieval.embedders import query_embedder_for

        for part in (self.generator, self.fitter):
            if hasattr(part, "warm_up"):
                part.warm_up()
        store = self.open_bound_store()
        if self._embedder is None:
            self._embedder = query_embedder_for(store, self.embedding_model)
        if self._joiner is None:
            self._joiner = DocumentJoiner(
                join_mode="reciprocal_rank_fusion", weights=self.weights or [0.5, 0.5]
            )

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
        settings = self.loop
        if top_k is not None:
            settings = _note_settings({**dataclasses.asdict(settings), "top_k": top_k}, "top_k")
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
