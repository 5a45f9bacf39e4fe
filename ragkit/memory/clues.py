"""Clues: parse the memory model's outputs into retrieval queries, and merge what they retrieve.

MemoRAG turns three kinds of memory output into queries: recalled text spans, surrogate
questions, and (optionally) a draft answer; the original question is always added last. Span and
question outputs are split one per line and only lines of more than ``min_words`` words are kept
(upstream: > 3 words), so fragments such as ``Sure!`` or a bare title never become queries. Each
query retrieves its own top-k; the union is ordered by document position (upstream) or by fused
score. Pure functions only: no models, no store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ragkit.documents import document_position

if TYPE_CHECKING:
    from haystack import Document

__all__ = [
    "ClueSet",
    "Query",
    "build_clues",
    "clue_lines",
    "document_position",
    "union_hits",
]

ClueKind = Literal["span", "surrogate", "draft", "question"]
Order = Literal["position", "score"]

# list markers the small models like to emit: "1.", "2)", "-", "*", "•", "(3)", "Clue 1:"
_MARKER = re.compile(
    r"^\s*(?:[-*•·]+|\(?\d+[.):]|\(?[a-zA-Z][.)]|(?:clue|question|span|q)\s*\d*\s*[:.)-])\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`"
RRF_K = 60


def clue_lines(text: str) -> list[str]:
    """Non-empty lines of a model output with list markers and surrounding quotes removed."""
    lines: list[str] = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        previous = None
        while line and line != previous:  # "1. - clue" -> "clue"
            previous = line
            line = _MARKER.sub("", line, count=1).strip()
        line = line.strip(_QUOTES).strip()
        if line:
            lines.append(line)
    return lines


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@dataclass(frozen=True)
class Query:
    """One retrieval query derived from the memory (or the question itself)."""

    kind: ClueKind
    text: str
    window: int | None = None


@dataclass
class ClueSet:
    """Everything the memory said about one question, and the queries made from it.

    Attributes:
        question: The user's question (always the last query).
        spans: Kept clue spans, de-duplicated.
        surrogates: Kept surrogate questions, de-duplicated.
        draft: The memory's draft answer, when asked for.
        rejected: Lines dropped by the word filter or as duplicates (shown in the trace).
        fallback: True when no usable clue line came out and only the question retrieves.
        llm_calls: Memory-model generations spent on this question.
        seconds: Wall time of the memory calls.
        raw: The raw outputs per task and window, for the trace.
    """

    question: str
    spans: list[Query] = field(default_factory=list)
    surrogates: list[Query] = field(default_factory=list)
    draft: str | None = None
    rejected: list[str] = field(default_factory=list)
    fallback: bool = False
    llm_calls: int = 0
    seconds: float = 0.0
    raw: list[dict[str, Any]] = field(default_factory=list)

    def queries(self) -> list[Query]:
        """Spans, surrogates, draft (if any) and the question, duplicates removed in that order."""
        out: list[Query] = []
        seen: set[str] = set()
        draft = [Query("draft", self.draft)] if self.draft else []
        for q in [*self.spans, *self.surrogates, *draft, Query("question", self.question)]:
            k = _key(q.text)
            if k and k not in seen:
                seen.add(k)
                out.append(q)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for traces and ``--json``."""
        return {
            "question": self.question,
            "spans": [q.text for q in self.spans],
            "surrogates": [q.text for q in self.surrogates],
            "draft": self.draft,
            "rejected": list(self.rejected),
            "fallback": self.fallback,
            "llm_calls": self.llm_calls,
            "seconds": round(self.seconds, 4),
            "raw": list(self.raw),
        }


def build_clues(
    question: str,
    span_outputs: Sequence[tuple[int | None, str]],
    surrogate_outputs: Sequence[tuple[int | None, str]],
    draft: str | None = None,
    *,
    min_words: int = 3,
) -> ClueSet:
    """Parse raw memory outputs (one per window) into a de-duplicated :class:`ClueSet`.

    Args:
        question: The user's question.
        span_outputs: ``(window, text)`` raw outputs of the clue-span task.
        surrogate_outputs: ``(window, text)`` raw outputs of the surrogate-question task.
        draft: Raw draft answer (first line kept), or None when not asked.
        min_words: Keep lines with more than this many words (upstream: 3).

    Returns:
        The clue set; ``fallback`` is True when neither task gave a usable line.
    """
    clues = ClueSet(question=question)
    seen = {_key(question)}

    def take(outputs: Sequence[tuple[int | None, str]], kind: ClueKind, into: list[Query]) -> None:
        for window, text in outputs:
            clues.raw.append({"task": kind, "window": window, "text": text})
            for line in clue_lines(text):
                k = _key(line)
                if len(line.split()) <= min_words or not k or k in seen:
                    clues.rejected.append(line)
                    continue
                seen.add(k)
                into.append(Query(kind, line, window))

    take(span_outputs, "span", clues.spans)
    take(surrogate_outputs, "surrogate", clues.surrogates)
    if draft is not None:
        clues.raw.append({"task": "draft", "window": None, "text": draft})
        lines = clue_lines(draft)
        clues.draft = lines[0] if lines else None
    clues.fallback = not clues.spans and not clues.surrogates
    return clues


def union_hits(
    hits: Sequence[tuple[Query, Sequence[Document]]],
    order: Order = "position",
    position: Callable[[Document], Any] = document_position,
) -> tuple[list[Document], list[dict[str, Any]]]:
    """Union of every query's hits, each document once, with the queries that found it.

    Args:
        hits: ``(query, ranked documents)`` per query.
        order: ``position``: corpus order, as upstream (the reader sees passages in their
            original order); ``score``: reciprocal-rank fusion over the queries' rankings.
        position: Sort key for ``position`` order.

    Returns:
        The documents (each with ``meta["found_by"]``: indexes into ``hits`` and ``score`` set
        to its fused score), and a trace entry per query: its kind, text and the ids it found.
    """
    from dataclasses import replace

    fused: dict[str, float] = {}
    found_by: dict[str, list[int]] = {}
    first: dict[str, Document] = {}
    trace: list[dict[str, Any]] = []
    for i, (query, docs) in enumerate(hits):
        trace.append(
            {
                "kind": query.kind,
                "query": query.text,
                "window": query.window,
                "found": [d.id for d in docs],
            }
        )
        for rank, doc in enumerate(docs):
            fused[doc.id] = fused.get(doc.id, 0.0) + 1.0 / (RRF_K + rank + 1)
            found_by.setdefault(doc.id, [])
            if i not in found_by[doc.id]:
                found_by[doc.id].append(i)
            first.setdefault(doc.id, doc)
    docs = [
        replace(d, score=fused[d.id], meta={**(d.meta or {}), "found_by": found_by[d.id]})
        for d in first.values()
    ]
    if order == "position":
        docs.sort(key=position)
    elif order == "score":
        docs.sort(key=lambda d: (-(d.score or 0.0), position(d)))
    else:
        raise ValueError(f"order must be 'position' or 'score', not {order!r}")
    return docs, trace
