"""Run a query pipeline for one question and pull out answer, sources, ranking and usage.

Shared by ``ragkit query`` and ``ragkit eval`` so both read pipeline results the same way.

The reader never answers from nothing: when the component that builds its prompt is handed no
passages, the reader is not asked (``no_passages: skip``, the default) unless the pipeline's
``metadata`` says ``no_passages: read`` (its prompt template then words the no-evidence case,
e.g. with ``{% if not documents %}``). A citation ``[n]`` of a passage the reader was not given
is removed from the answer (and from what streams) and reported. ``top_k`` above what the
retrievers return widens them, up to the store's size; fewer passages than asked are reported.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ragkit.errors import InvalidInputError
from ragkit.pipeline import run_inputs

if TYPE_CHECKING:
    from haystack import Document, Pipeline

    from ragkit.stores.store import RagkitStore

#: What a run does when the reader would be given no passages: not ask it, or ask it anyway.
NO_PASSAGES_MODES = ("skip", "read")


@dataclass
class QueryResult:
    """What one question produced."""

    answer: str | None
    sources: list[Document]
    ranked: list[Document]
    seconds: float
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    empty_store: bool = False  # nothing indexed: the pipeline (and its reader) did not run
    shaping: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    # lines for the user (store damage, a truncated document): :func:`ragkit.ask` fills them;
    # ``ragkit query`` prints them on stderr, so they are not part of ``as_dict`` (``--json``)
    warnings: list[str] = field(default_factory=list)
    # the reader was given no passages, so it was not asked (``no_passages: skip``)
    reader_skipped: bool = False
    # citation numbers removed from the answer: passages the reader was not given
    removed_citations: list[int] = field(default_factory=list)
    # fewer passages than ``top_k`` asked for: requested, returned, store_chunks and reason
    top_k_shortfall: dict[str, Any] | None = None
    # how many passages the reader's prompt was given (None: not known for this pipeline)
    passages_given: int | None = None
    # the first-stage retrievers' candidates before fusion and the top-k cut (not in ``--json``)
    candidates: list[Document] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Lines for the user about this result: removed citations, fewer passages than asked."""
        lines = []
        if self.removed_citations:
            cited = ", ".join(f"[{n}]" for n in self.removed_citations)
            lines.append(
                f"the answer cited {cited} but the reader was given "
                f"{_passages(self.passages_given)}; removed the citation"
                f"{'s' if len(self.removed_citations) > 1 else ''} from the answer"
            )
        if self.top_k_shortfall:
            short = self.top_k_shortfall
            lines.append(
                f"asked for {short['requested']} passages, got {short['returned']}: "
                f"{short['reason']}"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json``."""

        def doc(d: Document, rank: int) -> dict[str, Any]:
            return {
                "rank": d.meta.get("source_index", rank),
                "id": d.id,
                "score": d.score,
                "source": d.meta.get("source"),
                "title": d.meta.get("title"),
                "start": d.meta.get("start"),
                "end": d.meta.get("end"),
                "content": d.content,
            }

        out = {
            "answer": self.answer,
            "sources": [doc(d, i + 1) for i, d in enumerate(self.sources)],
            "passages": [doc(d, i + 1) for i, d in enumerate(self.ranked)],
            "seconds": self.seconds,
            "usage": self.usage,
            "timings": self.timings,
            "no_passages": not self.ranked and not self.sources,
            "empty_store": self.empty_store,
            "reader_skipped": self.reader_skipped,
            "removed_citations": self.removed_citations,
            "top_k_shortfall": self.top_k_shortfall,
        }
        if self.shaping:
            out["shaping"] = self.shaping
        if self.trace:
            out["trace"] = self.trace
        return out


_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;-]\s*\d+)*\](?:\s*\[\d+(?:\s*[,;-]\s*\d+)*\])*")


def strip_citations(answer: str) -> str:
    """The answer without passage markers like ``[1]`` or ``[2, 3]``, for scoring against gold text."""
    return _CITATION.sub("", answer).strip()


# one citation group with the blank before it: ``[2]``, ``[1, 3]``, ``[2-4]``
_GROUP = re.compile(r"(\s*)\[(\d+(?:\s*[,;-]\s*\d+)*)\]")
# the end of a streamed text that may still change: citation groups (the last maybe still open,
# each decided by what follows it) or the blank before one
_OPEN_END = re.compile(r"(?:\s*\[[\d\s,;-]*\]?)+$|\s+$")


def _passages(n: int | None) -> str:
    return "no passages" if not n else f"{n} passage{'s' if n != 1 else ''}"


def remove_uncited(answer: str, given: int) -> tuple[str, list[int]]:
    """``answer`` without citations of passages the reader was not given, and their numbers.

    A citation ``[n]`` names the n-th passage of the prompt; one with ``n`` outside ``1..given``
    (any at all when ``given`` is 0) cites nothing and is removed. In a group (``[1, 7]``) only
    the bad numbers go; a group left empty goes with the blank before it (kept when another
    group follows: ``Paris [5][1]`` becomes ``Paris [1]``).

    Args:
        answer: The reader's answer text.
        given: How many passages the reader's prompt held.

    Returns:
        The cleaned answer and the removed numbers, in order of appearance (each once).
    """
    removed: list[int] = []

    def fix(match: re.Match[str]) -> str:
        items = re.split(r"\s*[,;]\s*", match.group(2).strip())
        kept = []
        for item in items:
            bad = [n for n in map(int, re.split(r"\s*-\s*", item)) if not 1 <= n <= given]
            removed.extend(n for n in dict.fromkeys(bad) if n not in removed)
            if not bad:
                kept.append(item)
        if len(kept) == len(items):
            return match.group(0)
        if kept:
            return f"{match.group(1)}[{', '.join(kept)}]"
        return match.group(1) if answer.startswith("[", match.end()) else ""

    return _GROUP.sub(fix, answer), removed


class _CitationStream:
    """Streams an answer with :func:`remove_uncited` applied, holding back what may be a citation.

    Text that could still become a citation group (an open ``[12``, or blanks before one) is
    held until it is decided, so the streamed text equals the cleaned answer.
    """

    def __init__(self, emit: Callable[[Any], None], given: Callable[[], int | None]) -> None:
        self.emit = emit
        self.given = given
        self.held = ""
        self.last: Any = None

    def _send(self, chunk: Any, text: str) -> None:
        self.emit(replace(chunk, content=text))

    def __call__(self, chunk: Any) -> None:
        given = self.given()
        content = getattr(chunk, "content", None)
        if given is None or not isinstance(content, str) or not content:
            if getattr(chunk, "finish_reason", None):
                self.flush()  # the answer is complete: what is held comes before the last chunk
            self.emit(chunk)
            return
        self.last = chunk
        text = self.held + content
        match = _OPEN_END.search(text)
        cut = match.start() if match else len(text)
        self.held = text[cut:]
        ready = remove_uncited(text[:cut], given)[0]
        if ready:
            self._send(chunk, ready)

    def flush(self) -> None:
        """Send what is still held (the end of the answer)."""
        given = self.given()
        if self.held and self.last is not None and given is not None:
            rest = remove_uncited(self.held, given)[0]
            if rest:
                self._send(self.last, rest)
        self.held = ""


def retriever_components(pipe: Pipeline) -> list[str]:
    """Components that output ``documents`` without receiving any: the first-stage retrievers."""
    producers = [
        name for name, comp in pipe.walk() if "documents" in comp.__haystack_output__._sockets_dict
    ]
    consumers = {r for _, r, d in pipe.graph.edges(data=True) if d["to_socket"].name == "documents"}
    return [p for p in producers if p not in consumers]


def ranking_components(pipe: Pipeline) -> list[str]:
    """Components whose ``documents`` output is the retrieval ranking (last stage before reading)."""
    producers = [
        name for name, comp in pipe.walk() if "documents" in comp.__haystack_output__._sockets_dict
    ]
    consumers = {r for _, r, d in pipe.graph.edges(data=True) if d["to_socket"].name == "documents"}
    fused = [c for c in producers if c in consumers and "top_k" in pipe.inputs(True).get(c, {})]
    return fused or [p for p in producers if p not in consumers][:1] or producers[-1:]


def _bound_stores(pipe: Pipeline) -> list[RagkitStore]:
    """The ragkit stores the pipeline's components read (each once)."""
    from ragkit.stores.components import StoreBound

    stores = {}
    for _, comp in pipe.walk():
        store = comp.current_store() if isinstance(comp, StoreBound) else None
        if store is not None:
            stores[id(store)] = store
    return list(stores.values())


def _sockets(comp: Any, kind: str) -> dict[str, Any]:
    return getattr(comp, kind)._sockets_dict  # type: ignore[no-any-return]


def reader_feeds(pipe: Pipeline) -> list[tuple[str, str]]:
    """``(prompt, reader)`` pairs: a component handed the passages feeding a generator directly.

    The prompt component has a connected ``documents`` input (e.g. ``ChatPromptBuilder``) and
    an output connected to a component with a ``replies`` output (the reader).
    """
    pairs = []
    for sender, receiver in pipe.graph.edges():
        prompt, reader = pipe.get_component(sender), pipe.get_component(receiver)
        documents = _sockets(prompt, "__haystack_input__").get("documents")
        if documents is None or not documents.senders:
            continue
        if "replies" in _sockets(reader, "__haystack_output__") and (sender, receiver) not in pairs:
            pairs.append((sender, receiver))
    return pairs


class _ReaderGate:
    """For one run: counts the passages the reader's prompt is given, skips a reader given none.

    The prompt components' and readers' ``run`` are wrapped on the instances while the run lasts
    (Haystack calls ``instance.run``) and restored after it.
    """

    def __init__(self, pipe: Pipeline, mode: str) -> None:
        self.pipe = pipe
        self.mode = mode
        self.pairs = reader_feeds(pipe)
        self.given: int | None = None
        self.skipped = False
        self.streams: list[_CitationStream] = []

    def _observe(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            self.given = len(kwargs.get("documents") or [])
            return original(**kwargs)

        return run

    def _guard(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            if self.mode == "skip" and self.given == 0:
                self.skipped = True
                return {"replies": []}
            try:
                return original(**kwargs)
            finally:
                for stream in self.streams:
                    stream.flush()

        return run

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the prompt components and readers for the run; restore them after it."""
        missing = object()
        wrapped: list[tuple[Any, Any]] = []
        wrappers = [(p, self._observe) for p in dict.fromkeys(p for p, _ in self.pairs)]
        wrappers += [(r, self._guard) for r in dict.fromkeys(r for _, r in self.pairs)]
        try:
            for name, wrap in wrappers:
                comp = self.pipe.get_component(name)
                wrapped.append((comp, vars(comp).get("run", missing)))
                comp.run = wrap(comp.run)
            yield
        finally:
            for comp, before in reversed(wrapped):
                if before is missing:
                    vars(comp).pop("run", None)
                else:
                    comp.run = before

    def stream(self, callback: Any | None) -> Any | None:
        """``callback`` behind a :class:`_CitationStream` when the passage count will be known."""
        if callback is None or not self.pairs:
            return callback
        stream = _CitationStream(callback, lambda: self.given)
        self.streams.append(stream)
        # a function, not the object: Haystack deep-copies a run's inputs, and copies functions
        # by reference, so the stream the reader feeds is the one flushed after it
        return lambda chunk: stream(chunk)


def no_passages_mode(pipe: Pipeline, no_passages: str | None) -> str:
    """The run's setting: the argument, else the pipeline's ``metadata.no_passages``, else skip."""
    if no_passages is None:
        no_passages = (pipe.metadata or {}).get("no_passages", "skip")
    if no_passages not in NO_PASSAGES_MODES:
        raise InvalidInputError(
            f"no_passages (pipeline metadata) must be {' or '.join(NO_PASSAGES_MODES)}, "
            f"not {no_passages!r}"
        )
    return str(no_passages)


def _widen_retrievers(pipe: Pipeline, inputs: dict[str, dict[str, Any]], top_k: int) -> None:
    """Give ``top_k`` to retrievers upstream of the ranking stage that return fewer by default.

    :func:`~ragkit.pipeline.run_inputs` hands ``top_k`` to the ranking stage (e.g. the fusion
    joiner) only, so the retrievers keep their wider lists; a ``top_k`` above a retriever's own
    would come back short, so it widens that retriever.
    """
    for name, sockets in pipe.inputs().items():
        if "top_k" not in sockets or "top_k" in inputs.get(name, {}):
            continue
        own = getattr(pipe.get_component(name), "top_k", None)
        if isinstance(own, int) and not isinstance(own, bool) and own < top_k:
            inputs.setdefault(name, {})["top_k"] = top_k


def _shortfall(top_k: int, returned: int, chunks: int) -> dict[str, Any]:
    if returned >= chunks:
        reason = f"the store holds only {chunks} chunk{'s' if chunks != 1 else ''}"
    else:
        reason = (
            f"retrieval found only {returned} matching passage{'s' if returned != 1 else ''} "
            f"among the store's {chunks} chunks"
        )
    return {"requested": top_k, "returned": returned, "store_chunks": chunks, "reason": reason}


def answer_question(
    pipe: Pipeline,
    question: str,
    top_k: int | None = None,
    streaming_callback: Any | None = None,
    extra_inputs: dict[str, Any] | None = None,
    no_passages: str | None = None,
) -> QueryResult:
    """Run ``pipe`` on ``question``; works for retrieval-only and answering pipelines.

    When every store the pipeline reads is empty nothing runs: a reader given no passages would
    answer from nothing, so the result has no answer and ``empty_store`` set. When the store
    has chunks but the reader's prompt gets no passages, the reader is not asked either
    (``reader_skipped``), unless ``no_passages`` is ``"read"``. Citations of passages the reader
    was not given are removed (``removed_citations``). ``top_k`` above a retriever's own widens
    it, up to the store's size; fewer passages than ``top_k`` set ``top_k_shortfall``.
    ``extra_inputs`` fills further open sockets by name (the ``document`` of ``ragkit query
    --document``).

    Args:
        pipe: A warmed-up query pipeline.
        question: The question.
        top_k: How many passages retrieval hands on; None: the pipeline's own.
        streaming_callback: Receives the answer's pieces as they are generated.
        extra_inputs: Further inputs by socket name.
        no_passages: ``"skip"`` or ``"read"``; None: the pipeline's ``metadata.no_passages``,
            else ``"skip"``.

    Returns:
        The :class:`QueryResult`.

    Raises:
        InvalidInputError: ``no_passages`` (or the pipeline's setting) is not skip or read.
    """
    mode = no_passages_mode(pipe, no_passages)
    rankers = ranking_components(pipe)
    retrievers = [r for r in retriever_components(pipe) if r not in rankers]
    # components that explain their work (e.g. MemoRAG's clues) expose a ``trace`` output
    outputs = pipe.outputs(include_components_with_connected_outputs=True)
    tracers = [name for name, sockets in outputs.items() if "trace" in sockets]
    start = time.perf_counter()
    stores = _bound_stores(pipe)
    chunks = max((st.count() for st in stores), default=None)
    if stores and chunks == 0:
        return QueryResult(None, [], [], time.perf_counter() - start, empty_store=True)
    gate = _ReaderGate(pipe, mode)
    # asking for more than the store holds cannot return more: retrievers get at most its size
    run_k = top_k if top_k is None or chunks is None else max(1, min(top_k, chunks))
    inputs = run_inputs(pipe, question, run_k, gate.stream(streaming_callback), extra_inputs)
    if run_k is not None:
        _widen_retrievers(pipe, inputs, run_k)
    with gate.installed():
        result = pipe.run(
            inputs, include_outputs_from=set(rankers) | set(tracers) | set(retrievers)
        )
    seconds = time.perf_counter() - start
    ranked: list[Document] = []
    for name in rankers:
        if name in result and "documents" in result[name]:
            ranked = result[name]["documents"]
    answer = None
    sources: list[Document] = []
    usage: dict[str, int] = {}
    timings: dict[str, float] = {"total_seconds": seconds}
    trace: dict[str, Any] | None = None
    for outputs in result.values():
        if outputs.get("answers"):
            generated = outputs["answers"][0]
            answer = (generated.data or "").strip()
            sources = list(generated.documents or [])
            meta = generated.meta or {}
            usage = dict(meta.get("usage") or {})
            trace = meta.get("trace") if isinstance(meta.get("trace"), dict) else None
            for key, value in (meta.get("timings") or {}).items():
                if isinstance(value, int | float):
                    timings[f"generate_{key}"] = float(value)
        elif outputs.get("replies") and answer is None:
            reply = outputs["replies"][0]
            answer = (getattr(reply, "text", None) or str(reply)).strip()
            usage = dict((getattr(reply, "meta", {}) or {}).get("usage") or {})
    # context shaping reports (Reorderer, ChunkSelector): unconnected ``shaping`` outputs
    shaping = {
        name: outputs["shaping"]
        for name, outputs in result.items()
        if isinstance(outputs, dict) and isinstance(outputs.get("shaping"), dict)
    }
    removed: list[int] = []
    if answer is not None and gate.given is not None:
        cleaned, removed = remove_uncited(answer, gate.given)
        answer = cleaned.strip()
    if answer is not None and not sources:
        sources = ranked  # nothing cited: show what the reader was given
    shortfall = None
    if top_k is not None and chunks is not None and 0 < len(ranked) < top_k:
        shortfall = _shortfall(top_k, len(ranked), chunks)
    if top_k is not None:
        ranked = ranked[:top_k]
    trace = {n: result[n]["trace"] for n in tracers if "trace" in result.get(n, {})}
    return QueryResult(
        answer,
        sources,
        ranked,
        seconds,
        usage,
        timings,
        shaping=shaping,
        trace=trace,
        reader_skipped=gate.skipped,
        removed_citations=removed,
        top_k_shortfall=shortfall,
        passages_given=gate.given,
        candidates=_candidates(result, retrievers),
    )


def _candidates(result: dict[str, Any], retrievers: list[str]) -> list[Document]:
    """Every passage the first-stage retrievers returned, once each, in retriever order."""
    seen: dict[str, Document] = {}
    for name in retrievers:
        for doc in (result.get(name) or {}).get("documents") or []:
            seen.setdefault(doc.id, doc)
    return list(seen.values())


def shaping_lines(shaping: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable lines for ``ragkit query --trace``: what context shaping did."""
    lines = []
    for name, info in shaping.items():
        if info.get("component") == "Reorderer":
            text = f"{name}: order {' '.join(str(r) for r in info.get('order', []))}"
            text += " (retrieval ranks)" if info.get("reordered") else " (kept, below min_k)"
            hard = info.get("hard_negatives") or []
            if hard:
                text += "; hard negatives: " + ", ".join(
                    f"rank {h['retrieval_rank']} ({h['action']}, relevance {h['relevance']:.3f})"
                    for h in hard
                )
        elif info.get("component") == "ChunkSelector":
            cfg = info.get("config", {})
            text = (
                f"{name}: ranks {' '.join(str(r) for r in info.get('selected', []))} of "
                f"{info.get('candidates')} candidates, {info.get('tokens')}/{info.get('budget')} "
                f"tokens, {info.get('states_scored')} states scored in "
                f"{1000 * info.get('seconds', 0.0):.1f} ms ({info.get('question_type')}: "
                f"C={cfg.get('c')} lambda={cfg.get('lam')} iterations={cfg.get('iterations')})"
            )
            if info.get("fallback"):
                text += f"; fallback: {info['fallback']}"
            if info.get("trimmed"):
                text += "; budget below every chunk: best chunk trimmed"
        else:
            text = f"{name}: {info}"
        lines.append(text)
    return lines
