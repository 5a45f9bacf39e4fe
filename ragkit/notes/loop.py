"""Adaptive-Note's Retriever-and-Memory loop as plain code over an LLM and a retriever interface.

A *note* is the memory. The collector asks new questions from the question, the best note and
past queries, retrieves passages not read yet, and refines the note with them; the reviewer (an
LLM judge) keeps the refined note only when it is a significant improvement. The loop stops on
the failure budget, the evidence cap, ``max_step``, a retrieval with no (new) evidence, or a
generator error; the answer is written from the best note alone. At most ``2 + 3 * max_step``
LLM calls per question. No Haystack or torch here: callers adapt their generator and retriever
(see :mod:`ragkit.notes.components`), tests use scripted ones.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ragkit.errors import InvalidParameter
from ragkit.notes.prompts import PromptSet
from ragkit.notes.verdict import Verdict, parse_verdict

__all__ = [
    "ChatLLM",
    "LLMReply",
    "NoteResult",
    "NoteSettings",
    "Passage",
    "Retriever",
    "note_diff",
    "run_adaptive_note",
]

logger = logging.getLogger(__name__)

StopReason = Literal[
    "max steps",
    "failure budget",
    "evidence cap",
    "no evidence",
    "no new evidence",
    "generator error",
]


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as the loop sees it.

    Attributes:
        id: Stable identity, used to skip passages already read.
        text: The passage text.
        title: Its title, shown to the LLM before the text when there is one.
        label: Short name for the trace (default: title, else id).
        ref: The backend's own object (e.g. a Haystack Document), handed back untouched.
    """

    id: str
    text: str
    title: str | None = None
    label: str | None = None
    ref: Any = None


@dataclass(frozen=True)
class LLMReply:
    """One LLM reply with what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefix_tokens_reused: int = 0
    seconds: float = 0.0


class ChatLLM(Protocol):
    """Generates one reply for a chat (system + user messages), at most ``max_tokens`` long."""

    def __call__(
        self, messages: list[dict[str, str]], max_tokens: int, final: bool = False
    ) -> LLMReply:
        """Reply to ``messages``; ``final`` marks the answer call (e.g. to stream it)."""
        ...


class Retriever(Protocol):
    """Returns the best ``top_k`` passages for a query, best first."""

    def __call__(self, query: str, top_k: int) -> list[Passage]:
        """Search."""
        ...


Fit = Callable[[str, list[str]], list[str]]
"""Fits texts (most important first) next to the question into the reader's context."""


def _no_fit(question: str, texts: list[str]) -> list[str]:
    return texts


@dataclass(frozen=True)
class NoteSettings:
    """Loop parameters; defaults follow the paper's published runs.

    Attributes:
        max_step: Refinement rounds at most (paper runs: 3).
        max_fail_step: Rejected refinements that stop the loop (paper runs: 1).
        top_k: Passages per retrieval (paper runs: 5).
        max_top_k: Cap on passages read in all steps together (upstream: 15).
        query_max_chars: The search string (new questions + question) is cut to this (upstream: 500).
        dedup: ``always`` skips passages already read at every step (retrieving ``top_k`` plus
            the number read, so up to ``top_k`` unread ones remain); ``near_cap`` (upstream)
            retrieves ``top_k`` and skips read ones only when this step could pass ``max_top_k``.
        fail_count: ``consecutive`` resets the count when a refinement is kept; ``total``
            (upstream) counts every rejection.
        note_max_tokens: Token cap on a written note (initial and refined).
        query_max_tokens: Token cap on the new search questions.
        verdict_max_tokens: Token cap on the reviewer's reply.
        answer_max_tokens: Token cap on the answer.
    """

    max_step: int = 3
    max_fail_step: int = 1
    top_k: int = 5
    max_top_k: int = 15
    query_max_chars: int = 500
    dedup: Literal["always", "near_cap"] = "always"
    fail_count: Literal["consecutive", "total"] = "consecutive"
    note_max_tokens: int = 160
    query_max_tokens: int = 64
    verdict_max_tokens: int = 32
    answer_max_tokens: int = 64

    def __post_init__(self) -> None:
        """Reject settings that cannot run, naming the field."""
        positive = (
            "max_fail_step",
            "top_k",
            "max_top_k",
            "query_max_chars",
            "note_max_tokens",
            "query_max_tokens",
            "verdict_max_tokens",
            "answer_max_tokens",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidParameter(name, f"must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_step, int) or self.max_step < 0:
            raise InvalidParameter("max_step", f"must be an integer >= 0, got {self.max_step!r}")
        if self.dedup not in ("always", "near_cap"):
            raise InvalidParameter("dedup", f"must be 'always' or 'near_cap', got {self.dedup!r}")
        if self.fail_count not in ("consecutive", "total"):
            raise InvalidParameter(
                "fail_count", f"must be 'consecutive' or 'total', got {self.fail_count!r}"
            )


@dataclass
class NoteResult:
    """What the loop produced for one question.

    Attributes:
        answer: The answer written from the best note.
        note: The best note.
        passages: Every passage read, in reading order (no repeats).
        stop_reason: Why the loop ended.
        trace: JSON-ready record of every step and LLM call (see :func:`run_adaptive_note`).
    """

    answer: str
    note: str
    passages: list[Passage]
    stop_reason: StopReason
    trace: dict[str, Any] = field(default_factory=dict)


def note_diff(old: str, new: str, snippet_words: int = 12) -> dict[str, Any]:
    """A short summary of how a note changed: words added/removed and a sample of what was added."""
    a, b = old.split(), new.split()
    added: list[str] = []
    removed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added.extend(b[j1:j2])
    sample = " ".join(added[:snippet_words]) + (" ..." if len(added) > snippet_words else "")
    return {
        "words_before": len(a),
        "words_after": len(b),
        "added": len(added),
        "removed": removed,
        "added_sample": sample,
    }


def _join_passages(texts: list[str], titles: list[str | None]) -> str:
    lines = []
    for i, (text, title) in enumerate(zip(texts, titles, strict=False), 1):
        if text:
            lines.append(f"[{i}] {title + ': ' if title else ''}{' '.join(text.split())}")
    return "\n".join(lines)


_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


class _Run:
    """State of one question's loop (kept out of the public function for readability)."""

    def __init__(
        self,
        question: str,
        llm: ChatLLM,
        retrieve: Retriever,
        settings: NoteSettings,
        prompts: PromptSet,
        fit: Fit,
    ) -> None:
        self.question = question
        self.llm = llm
        self.retrieve = retrieve
        self.s = settings
        self.prompts = prompts
        self.fit = fit
        self.seen: dict[str, Passage] = {}
        self.calls: list[dict[str, Any]] = []
        self.warnings: list[str] = []

    def call(self, role: str, max_tokens: int, final: bool = False, **values: str) -> str:
        messages = self.prompts.messages(role, question=self.question, **values)
        start = time.perf_counter()
        reply = self.llm(messages, max_tokens, final)
        self.calls.append(
            {
                "role": role,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "prefix_tokens_reused": reply.prefix_tokens_reused,
                "seconds": round(reply.seconds or time.perf_counter() - start, 3),
            }
        )
        return reply.text

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("adaptive-note: %s", message)

    def passages_text(self, passages: list[Passage], note: str | None) -> tuple[str, str]:
        """Fit (note first, then passages) into the context; returns (note, passages) text."""
        texts = [note or ""] if note is not None else []
        texts += [p.text for p in passages]
        fitted = self.fit(self.question, texts) + [""] * len(texts)
        fitted_note = fitted[0] if note is not None else ""
        rest = fitted[1 : len(texts)] if note is not None else fitted[: len(texts)]
        return fitted_note, _join_passages(rest, [p.title for p in passages])

    def fitted_notes(self, *notes: str) -> list[str]:
        return (self.fit(self.question, list(notes)) + [""] * len(notes))[: len(notes)]

    def read(self, passages: list[Passage]) -> None:
        for p in passages:
            self.seen.setdefault(p.id, p)


def _passage_refs(passages: list[Passage]) -> list[dict[str, Any]]:
    return [{"id": p.id, "title": p.label or p.title or p.id} for p in passages]


def run_adaptive_note(
    question: str,
    llm: ChatLLM,
    retrieve: Retriever,
    settings: NoteSettings | None = None,
    prompts: PromptSet | None = None,
    fit: Fit | None = None,
) -> NoteResult:
    """Answer ``question`` with the Retriever-and-Memory loop.

    The trace holds ``question``, ``settings``, ``initial`` (passages and note), ``steps`` (per
    step: ``queries``, ``search``, ``retrieved``, ``skipped_seen``, ``note_diff``, ``verdict``,
    ``kept``, ``fails``), ``stop_reason``, ``warnings``, ``calls`` (role, tokens, seconds per
    LLM call) and ``totals``.

    Args:
        question: The user's question.
        llm: Chat LLM; an exception during the loop keeps the best note so far (warning in the
            trace); one during the final answer propagates.
        retrieve: The search function.
        settings: Loop parameters (defaults: the paper's runs).
        prompts: Prompt set (defaults: :class:`PromptSet`).
        fit: Fits note/passage texts into the reader's context without cutting the question.

    Returns:
        The answer, best note, passages read, stop reason and trace.
    """
    s = settings or NoteSettings()
    run = _Run(question, llm, retrieve, s, prompts or PromptSet(), fit or _no_fit)
    steps: list[dict[str, Any]] = []
    best = ""
    stop: StopReason = "max steps"
    initial: dict[str, Any] = {}

    docs = retrieve(question, s.top_k)[: s.max_top_k]
    initial["search"] = question
    initial["retrieved"] = _passage_refs(docs)
    if not docs:
        stop = "no evidence"
    else:
        run.read(docs)
        _, ptext = run.passages_text(docs, None)
        try:
            best = _one_line(run.call("init_note", s.note_max_tokens, passages=ptext))
        except Exception as exc:  # noqa: BLE001 - any backend failure: answer from what we have
            run.warn(f"initial note: generator failed ({type(exc).__name__}: {exc})")
            stop = "generator error"
    initial["note"] = best

    asked: list[str] = []
    fails = 0
    if stop == "max steps":
        for step in range(s.max_step):
            if len(run.seen) >= s.max_top_k:
                stop = "evidence cap"
                break
            record: dict[str, Any] = {"step": step + 1}
            steps.append(record)
            room = s.max_top_k - len(run.seen)
            try:
                (note_in,) = run.fitted_notes(best)
                past = "\n".join(asked) if asked else "(none)"
                queries = run.call("queries", s.query_max_tokens, note=note_in, past_queries=past)
            except Exception as exc:  # noqa: BLE001
                run.warn(f"step {step + 1}: query generation failed ({type(exc).__name__}: {exc})")
                stop = "generator error"
                break
            queries = "\n".join(
                _LIST_MARK.sub("", q).strip() for q in queries.strip().splitlines() if q.strip()
            )
            asked.append(queries)
            search = (queries + "\n" + question)[: s.query_max_chars]
            record.update(queries=queries.splitlines(), search=search)
            # with dedup="always", ask for enough to still have top_k unread ones after skipping
            want = s.top_k + len(run.seen) if s.dedup == "always" else s.top_k
            found = retrieve(search, want)
            fresh = [p for p in found if p.id not in run.seen]
            # upstream dedups only when this step could pass the cap (dedup="near_cap")
            dedup = s.dedup == "always" or len(run.seen) + s.top_k > s.max_top_k
            docs = (fresh if dedup else found)[:room]
            record["retrieved"] = _passage_refs(docs)
            record["skipped_seen"] = len(found) - len(fresh) if dedup else 0
            if not found:
                stop = "no evidence"
                break
            if not docs:
                stop = "no new evidence"
                break
            run.read(docs)
            try:
                note_in, ptext = run.passages_text(docs, best)
                candidate = _one_line(
                    run.call("refine", s.note_max_tokens, note=note_in, passages=ptext)
                )
                record["note_diff"] = note_diff(best, candidate)
                if candidate.casefold() == best.casefold() or not candidate:
                    # nothing new: "not better" by the reviewer's own rule, without asking it
                    verdict = Verdict(False, "unchanged", "")
                elif not best.strip():
                    # the first passages gave nothing: any evidence beats an empty note
                    verdict = Verdict(True, "first note", "")
                else:
                    note_1, note_2 = run.fitted_notes(best, candidate)
                    raw = run.call("compare", s.verdict_max_tokens, note_1=note_1, note_2=note_2)
                    verdict = parse_verdict(raw)
            except Exception as exc:  # noqa: BLE001
                run.warn(f"step {step + 1}: note refinement failed ({type(exc).__name__}: {exc})")
                stop = "generator error"
                break
            raw = verdict.raw
            if verdict.source == "unparsed":
                run.warn(f"step {step + 1}: reviewer gave no verdict ({raw[:80]!r}); not better")
            kept = verdict.better
            record["verdict"] = {"better": verdict.better, "source": verdict.source, "raw": raw}
            record["kept"] = kept
            if kept:
                best = candidate
                if s.fail_count == "consecutive":
                    fails = 0
            else:
                fails += 1
            record["fails"] = fails
            if fails >= s.max_fail_step:
                stop = "failure budget"
                break

    (note_in,) = run.fitted_notes(best)
    answer = run.call("answer", s.answer_max_tokens, final=True, note=note_in or "(empty)")
    passages = list(run.seen.values())
    totals = {
        "llm_calls": len(run.calls),
        "prompt_tokens": sum(c["prompt_tokens"] for c in run.calls),
        "completion_tokens": sum(c["completion_tokens"] for c in run.calls),
        "prefix_tokens_reused": sum(c["prefix_tokens_reused"] for c in run.calls),
        "llm_seconds": round(sum(c["seconds"] for c in run.calls), 3),
        "passages_read": len(passages),
    }
    trace = {
        "question": question,
        "settings": asdict(s),
        "initial": initial,
        "steps": steps,
        "stop_reason": stop,
        "warnings": run.warnings,
        "note": best,
        "answer": answer.strip(),
        "calls": run.calls,
        "totals": totals,
    }
    return NoteResult(answer.strip(), best, passages, stop, trace)
