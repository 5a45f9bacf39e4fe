"""Haystack components for MemoRAG: ``MemoryRecall`` (question -> clues) and ``ClueRetriever``.

``MemoryRecall`` loads the store's memory (checked for staleness and model identity; built into
a content-hash cache for in-memory stores such as per-question evaluation) and asks it for clue
spans, surrogate questions and optionally a draft answer. ``ClueRetriever`` runs every clue, the
draft and the question through the hybrid retrievers (dense + BM25, reciprocal-rank fusion), takes
top-k per query and returns the union ordered by corpus position (or fused score). Both emit a
``trace`` that ``ragkit query --trace/--json`` shows: the clues, and which clue found which passage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from haystack import Document, component
from pydantic import Field

from ragkit.errors import InvalidParameter, check_count
from ragkit.memory.backend import MemorySettings
from ragkit.memory.store import NAME_PATTERN
from ragkit.models.registry import model_files
from ragkit.models.spec import ModelSpec, resolve_spec
from ragkit.settings import Settings, coerce, put_nested, upgrade_flat
from ragkit.stores.components import StoreBound
from ragkit.stores.store import RagkitStore  # at run time: the loader resolves the hints

if TYPE_CHECKING:
    from ragkit.memory.kv import WindowedMemory
    from ragkit.memory.lm import MemoryLM
    from ragkit.memory.store import MemorySpec

__all__ = ["ClueRetriever", "MemoryOptions", "MemoryRecall", "memory_spec_for_pipeline"]

logger = logging.getLogger(__name__)


class MemoryOptions(Settings, MemorySettings):
    """Which memory of the store a ``MemoryRecall`` reads (``name``), and how it is built.

    The building keys are :class:`~ragkit.memory.backend.MemorySettings`' own (``kind``,
    ``window_tokens``, ``task_tokens``, ``gist_chunk_tokens``, ``min_words``...), inherited so
    that they are defined once.

    Attributes:
        name: Memory name under ``<store>/memory/``.
    """

    name: str = Field(default="default", pattern=NAME_PATTERN)

    def settings(self) -> MemorySettings:
        """The backend settings these options give (recorded in the memory's manifest)."""
        return MemorySettings(**self.model_dump(exclude={"name"}))


_DEFAULT_MEMORY_MODEL = ModelSpec(backend="llama.cpp", n_ctx=8192)
"""The memory model: the registry's packaged model on llama.cpp (fast long prefill on a CPU)."""

_MOVED = {
    "model_backend": "model.backend",
    "n_ctx": "model.n_ctx",
    "n_threads": "model.n_threads",
    **{
        key: f"memory.{key}"
        for key in (
            "name",
            "kind",
            "window_tokens",
            "task_tokens",
            "gist_chunk_tokens",
            "min_words",
        )
    },
}
"""Flat init parameters of the release before -> their nested keys."""


@component
class MemoryRecall(StoreBound):
    """Question -> clues from the corpus's global memory (MemoRAG).

    ### Usage example
    ```python
    recall = MemoryRecall(store=".ragkit", memory={"kind": "gist"}, draft=True)
    clues = recall.run(question="Who founded the company that makes the Model S?")["clues"]
    ```
    """

    model_files = staticmethod(model_files)

    def __init__(
        self,
        store: str | RagkitStore | None = None,
        model: ModelSpec | dict[str, Any] | str | None = None,
        memory: MemoryOptions | dict[str, Any] | None = None,
        draft: bool = True,
        answer_hint: bool = True,
        auto_build: bool = False,
        embedding_model: str | None = None,
    ) -> None:
        """Configure the memory; the model loads in :meth:`warm_up`.

        Args:
            store: Store location, or an open store (``ragkit.open_store``); the pipeline
                loader binds its own store.
            model: The memory model (:class:`~ragkit.models.spec.ModelSpec`: ``name``,
                ``backend``, ``n_ctx``, ``n_threads``; a name alone is ``{name: NAME}``); it
                must be the one that built the memory. Default: the registry's packaged model
                on llama.cpp with an 8k context (``n_ctx`` bounds the window size).
            memory: Which memory and how it is cut (:class:`MemoryOptions`: ``name``, ``kind``,
                ``window_tokens``, ``task_tokens``, ``gist_chunk_tokens``, ``min_words``).
            draft: Also ask the memory for a draft answer (one more generation per window);
                it becomes a retrieval query.
            answer_hint: Pass the draft on as ``draft`` for the prompt ("the answer might be").
            auto_build: Build a missing memory for an on-disk store on first use (otherwise
                that is an error naming ``ragkit memory build``).
            embedding_model: The store's embedding model (the store checks it); None takes
                the store's record.

        Raises:
            InvalidParameter: Naming the bad key (``store``, ``model.n_ctx``, ``memory.kind``).
        """
        self.init_store(store)
        self.model = resolve_spec(model, _DEFAULT_MEMORY_MODEL, "model")
        self.memory_options = coerce(MemoryOptions, memory, "memory")
        self.draft = draft
        self.answer_hint = answer_hint
        self.auto_build = auto_build
        self.embedding_model = embedding_model
        self._lm: MemoryLM | None = None
        self._memory: WindowedMemory | None = None
        self._memory_store: RagkitStore | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialize with the model and the memory options as nested mappings."""
        from haystack.core.serialization import default_to_dict

        return default_to_dict(
            self,
            store=self.serialized_store(),
            model=self.model.to_dict(),
            memory=self.memory_options.to_dict(),
            draft=self.draft,
            answer_hint=self.answer_hint,
            auto_build=self.auto_build,
            embedding_model=self.embedding_model,
        )

    @classmethod
    def upgrade_init_parameters(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Init parameters with the flat ones of the release before moved to their nested keys."""
        if not set(_MOVED) & set(params):
            return dict(params)
        return upgrade_flat(cls.__name__, params, _MOVED)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryRecall:
        """Deserialize; flat parameters of the release before load with a deprecation warning."""
        from haystack.core.serialization import default_from_dict

        params = cls.upgrade_init_parameters(data.get("init_parameters") or {})
        return default_from_dict(cls, {**data, "init_parameters": params})

    def spec(self) -> MemorySpec:
        """The memory spec these parameters describe (what ``ragkit memory build`` builds)."""
        from ragkit.memory.store import MemorySpec

        options = self.memory_options
        return MemorySpec(
            name=options.name,
            model=self.model.name,
            model_backend="llamacpp" if self.model.backend == "llama.cpp" else "transformers",
            n_ctx=self.model.n_ctx,
            n_threads=self.model.n_threads,
            settings=options.settings(),
        )

    @classmethod
    def from_model(cls, lm: MemoryLM, **kwargs: Any) -> MemoryRecall:
        """Use an already-loaded memory model (tests, shared models)."""
        kwargs.setdefault("model", {"name": lm.name})
        instance = cls(**kwargs)
        instance._lm = lm
        return instance

    def bind_store(self, store: RagkitStore) -> None:
        """Use ``store``; its memory is (re)loaded on the next question."""
        StoreBound.bind_store(self, store)  # @component rebuilds the class: no zero-arg super()
        self._memory = None
        self._memory_store = None

    def warm_up(self) -> None:
        """Load the memory model."""
        if self._lm is None:
            self._lm = self.spec().load_lm()

    def close(self) -> None:
        """Release the memory model, the memory and a store this component opened."""
        if self._lm is not None:
            inner = getattr(self._lm, "lm", None)
            if inner is not None and hasattr(inner, "close"):
                inner.close()
            self._lm = None
        self._memory = None
        StoreBound.close(self)

    def memory(self) -> WindowedMemory:
        """The bound store's memory (loaded once per store)."""
        from ragkit.memory.store import open_memory

        store = self.open_bound_store()
        if self._memory is None or self._memory_store is not store:
            self.warm_up()
            assert self._lm is not None
            self._memory = open_memory(store, self.spec(), self._lm, auto_build=self.auto_build)
            self._memory_store = store
        return self._memory

    @component.output_types(clues=dict[str, Any], draft=str, trace=dict[str, Any])
    def run(self, question: str) -> dict[str, Any]:
        """Ask the memory for clues about ``question``.

        Returns:
            ``clues``: the clue set (``queries``: kind/text/window per retrieval query);
            ``draft``: the draft answer for the prompt hint ("" when off or empty);
            ``trace``: clues, rejected lines, fallback flag, memory calls and seconds.
        """
        memory = self.memory()
        clues = memory.recall_clues(question, draft=self.draft)
        data = clues.as_dict()
        data["queries"] = [
            {"kind": q.kind, "text": q.text, "window": q.window} for q in clues.queries()
        ]
        trace = {k: v for k, v in data.items() if k != "raw"}
        trace["windows"] = len(memory.windows)
        if clues.fallback:
            note = "no usable clue line from the memory; retrieving with the question alone"
            trace["note"] = note
            logger.info("%s (question %r)", note, question)
        hint = (clues.draft or "") if self.answer_hint else ""
        return {"clues": data, "draft": hint, "trace": trace}


@component
class ClueRetriever(StoreBound):
    """Clues -> passages: hybrid retrieval per clue, union ordered by corpus position or score.

    Examples:
        ``clues`` is ``MemoryRecall``'s output; BM25 alone needs no model:

        >>> from haystack import Document
        >>> from ragkit import ClueRetriever, MemoryStore, open_store, release_store
        >>> store = open_store(MemoryStore())
        >>> store.write([
        ...     Document(content="The Nile flows north into the Mediterranean."),
        ...     Document(content="Etna is an active volcano in Sicily."),
        ...     Document(content="Jupiter is the largest planet of the solar system."),
        ... ])
        3
        >>> clues = {"queries": [{"kind": "clue", "text": "volcano in Sicily"},
        ...                      {"kind": "clue", "text": "largest planet"}]}
        >>> retriever = ClueRetriever(store=store, top_k=1, dense=False)
        >>> out = retriever.run(clues=clues)
        >>> sorted(d.content for d in out["documents"])
        ['Etna is an active volcano in Sicily.', 'Jupiter is the largest planet of the solar system.']
        >>> release_store(store)
    """

    model_files = staticmethod(model_files)

    def __init__(
        self,
        store: str | RagkitStore | None = None,
        top_k: int = 3,
        order: Literal["position", "score"] = "position",
        candidates: int = 10,
        dense: bool = True,
        bm25: bool = True,
        max_documents: int | None = None,
        embedding_model: str | None = None,
    ) -> None:
        """Configure retrieval per clue.

        Args:
            store: Store location, or an open store (``ragkit.open_store``); the pipeline
                loader binds its own store.
            top_k: Passages kept per query (upstream ``ret_hit=3``); a call's ``top_k``
                overrides it.
            order: ``position`` (corpus order, upstream) or ``score`` (reciprocal-rank fusion
                over all queries).
            candidates: Hits per retriever per query before fusion.
            dense: Use dense retrieval.
            bm25: Use BM25 retrieval.
            max_documents: Cap on the union (best fused score kept), ``None`` for all.
            embedding_model: The store's embedding model; None takes the store's record.

        Raises:
            InvalidParameter: Naming the bad parameter.
        """
        check_count("top_k", top_k)
        check_count("candidates", candidates)
        if not (dense or bm25):
            raise InvalidParameter("bm25", "dense and bm25 are both off; enable one or both")
        if order not in ("position", "score"):
            raise InvalidParameter("order", f"must be 'position' or 'score', got {order!r}")
        if max_documents is not None and (
            not isinstance(max_documents, int)
            or isinstance(max_documents, bool)
            or max_documents < 1
        ):
            raise InvalidParameter(
                "max_documents", f"must be an integer >= 1 or null, got {max_documents!r}"
            )
        self.init_store(store)
        self.top_k = top_k
        self.order = order
        self.candidates = candidates
        self.dense = dense
        self.bm25 = bm25
        self.max_documents = max_documents
        self.embedding_model = embedding_model
        self._embedder: Any = None

    def warm_up(self) -> None:
        """Load the query embedder and open the store."""
        store = self.open_bound_store()
        if self.dense and self._embedder is None:
            from ragkit.retrieval.embedders import query_embedder_for

            self._embedder = query_embedder_for(store, self.embedding_model)

    def _search(self, store: RagkitStore, text: str, top_k: int) -> list[Document]:
        lists: list[list[Document]] = []
        if self.dense:
            self.warm_up()
            emb = self._embedder.run(text=text)["embedding"]
            lists.append(store.dense_search(emb, top_k=max(self.candidates, top_k)))
        if self.bm25:
            lists.append(store.bm25_search(text, top_k=max(self.candidates, top_k)))
        if len(lists) == 1:
            return lists[0][:top_k]
        from haystack.components.joiners import DocumentJoiner

        joiner = DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=top_k)
        return joiner.run(documents=lists)["documents"]

    @component.output_types(documents=list[Document], trace=dict[str, Any])
    def run(self, clues: dict[str, Any], top_k: int | None = None) -> dict[str, Any]:
        """Retrieve top-k per query in ``clues["queries"]`` and return the union.

        Args:
            clues: ``MemoryRecall``'s ``clues`` output.
            top_k: This call's passages per query (default: the init ``top_k``).

        Returns:
            ``documents`` (``meta["found_by"]``: indexes of the queries that found each) and
            ``trace`` (each query with the passages it found).

        Raises:
            InvalidParameter: ``top_k`` is not an integer >= 1.
        """
        from ragkit.memory.clues import Query, union_hits

        k = self.top_k if top_k is None else check_count("top_k", top_k)
        store = self.open_bound_store()
        queries = [
            Query(q.get("kind", "question"), q["text"], q.get("window"))
            for q in clues.get("queries") or []
            if (q.get("text") or "").strip()
        ]
        if not queries and clues.get("question"):
            queries = [Query("question", str(clues["question"]))]
        hits = [(q, self._search(store, q.text, k)) for q in queries]
        docs, per_query = union_hits(hits, order=self.order)
        if self.max_documents is not None and len(docs) > self.max_documents:
            keep = {
                d.id for d in sorted(docs, key=lambda d: -(d.score or 0.0))[: self.max_documents]
            }
            docs = [d for d in docs if d.id in keep]
        passages = [
            {
                "id": d.id,
                "title": d.meta.get("title") or d.meta.get("source"),
                "found_by": [queries[i].text for i in d.meta.get("found_by", [])],
            }
            for d in docs
        ]
        return {"documents": docs, "trace": {"queries": per_query, "passages": passages}}


def memory_spec_for_pipeline(
    path: str | Path,
    overrides: dict[str, dict[str, Any]] | None = None,
    **changes: Any,
) -> MemorySpec:
    """The memory spec of a pipeline's ``MemoryRecall`` (after profile overrides), with changes.

    ``ragkit memory build`` uses it so the memory it builds is the one ``ragkit query`` with the
    same pipeline and profile will load (same model, kind and window settings).

    Args:
        path: Pipeline YAML with a ``MemoryRecall`` component.
        overrides: Profile component overrides.
        **changes: ``MemoryRecall`` init parameters to set (``None`` values are ignored).

    Raises:
        PipelineError: The pipeline has no ``MemoryRecall`` component.
    """
    from pydantic import ValidationError

    from ragkit.pipeline import PipelineError, apply_overrides, read_pipeline_yaml

    data, source = read_pipeline_yaml(path)
    data = apply_overrides(data, overrides)
    comps = data.get("components") if isinstance(data, dict) else None
    for name, body in (comps or {}).items():
        if isinstance(body, dict) and str(body.get("type", "")).endswith(".MemoryRecall"):
            try:
                params = MemoryRecall.upgrade_init_parameters(
                    dict(body.get("init_parameters") or {})
                )
                for key, value in changes.items():
                    if value is not None:
                        put_nested(params, _CHANGES.get(key, key), value)
                params.pop("store", None)
                return MemoryRecall(**params).spec()
            except InvalidParameter as exc:
                where = f"{source}: components.{name}.init_parameters.{exc.parameter}"
                raise PipelineError([f"{where}: {exc.message}"]) from None
            except (ValidationError, TypeError, ValueError) as exc:
                raise PipelineError([f"{source}: components.{name}: {_one_line(exc)}"]) from None
    raise PipelineError([f"{source}: no MemoryRecall component; use a memory pipeline (memorag)"])


_CHANGES = {**_MOVED, "model": "model.name"}
"""``memory_spec_for_pipeline``'s flat changes (the CLI's options) -> nested keys."""


def _one_line(exc: Exception) -> str:
    """A pydantic error as ``field: message`` pairs on one line; other errors as their text."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return " ".join(str(exc).split())


def format_memory_trace(trace: dict[str, Any]) -> list[str]:
    """Readable lines for ``ragkit query --trace``: the clues, then which clue found which passage.

    Args:
        trace: ``QueryResult.trace`` (component name -> its ``trace`` output).

    Returns:
        Lines for the MemoRAG components found in ``trace`` (empty when there are none).
    """
    lines: list[str] = []
    for name, data in trace.items():
        if not isinstance(data, dict):
            continue
        if "queries" in data and "windows" in data:  # MemoryRecall
            lines.append(
                f"{name}: {data.get('llm_calls')} memory calls over {data.get('windows')} "
                f"window(s), {float(data.get('seconds') or 0):.1f} s"
            )
            for q in data["queries"]:
                lines.append(f"  {q['kind']:<9} {q['text']}")
            for r in data.get("rejected") or []:
                lines.append(f"  rejected  {r}")
            if data.get("note"):
                lines.append(f"  note: {data['note']}")
        elif "passages" in data and "queries" in data:  # ClueRetriever
            lines.append(f"{name}: {len(data['passages'])} passages")
            for p in data["passages"]:
                lines.append(f"  {p.get('title') or p['id']}")
                for clue in p.get("found_by") or []:
                    lines.append(f"    <- {clue}")
    return lines
