"""Run a query pipeline for one question and pull out answer, sources, ranking and usage.

Shared by ``ragkit query`` and ``ragkit eval`` so both read pipeline results the same way.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragkit.pipeline import run_inputs

if TYPE_CHECKING:
    from haystack import Document, Pipeline


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


def ranking_components(pipe: Pipeline) -> list[str]:
    """Components whose ``documents`` output is the retrieval ranking (last stage before reading)."""
    producers = [
        name for name, comp in pipe.walk() if "documents" in comp.__haystack_output__._sockets_dict
    ]
    consumers = {r for _, r, d in pipe.graph.edges(data=True) if d["to_socket"].name == "documents"}
    fused = [c for c in producers if c in consumers and "top_k" in pipe.inputs(True).get(c, {})]
    return fused or [p for p in producers if p not in consumers][:1] or producers[-1:]


def _all_bound_stores_empty(pipe: Pipeline) -> bool:
    """Whether the pipeline reads ragkit stores and all of them hold no chunks."""
    stores = {}
    for _, comp in pipe.walk():
        current = getattr(comp, "current_store", None)
        store = current() if callable(current) else None
        if store is not None:
            stores[id(store)] = store
    return bool(stores) and all(s.count() == 0 for s in stores.values())


def answer_question(
    pipe: Pipeline,
    question: str,
    top_k: int | None = None,
    streaming_callback: Any | None = None,
    extra_inputs: dict[str, Any] | None = None,
) -> QueryResult:
    """Run ``pipe`` on ``question``; works for retrieval-only and answering pipelines.

    When every store the pipeline reads is empty nothing runs: a reader given no passages would
    answer from nothing, so the result has no answer and ``empty_store`` set. ``extra_inputs``
    fills further open sockets by name (the ``document`` of ``ragkit query --document``).
    """
    rankers = ranking_components(pipe)
    # components that explain their work (e.g. MemoRAG's clues) expose a ``trace`` output
    outputs = pipe.outputs(include_components_with_connected_outputs=True)
    tracers = [name for name, sockets in outputs.items() if "trace" in sockets]
    start = time.perf_counter()
    if _all_bound_stores_empty(pipe):
        return QueryResult(None, [], [], time.perf_counter() - start, empty_store=True)
    result = pipe.run(
        run_inputs(pipe, question, top_k, streaming_callback, extra_inputs),
        include_outputs_from=set(rankers) | set(tracers),
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
    if answer is not None and not sources:
        sources = ranked  # nothing cited: show what the reader was given
    if top_k is not None:
        ranked = ranked[:top_k]
    trace = {n: result[n]["trace"] for n in tracers if "trace" in result.get(n, {})}
    return QueryResult(
        answer, sources, ranked, seconds, usage, timings, shaping=shaping, trace=trace
    )


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
