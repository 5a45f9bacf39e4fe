"""Human-readable rendering of an Adaptive-Note trace (``ragkit query --trace``)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_trace", "is_note_trace"]


def _refs(refs: list[dict[str, Any]], limit: int = 6) -> str:
    names = [str(r.get("title") or r.get("id")) for r in refs]
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(none)"


def _clip(text: str, n: int = 240) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 3] + "..."


def is_note_trace(trace: Any) -> bool:
    """Whether a component's ``trace`` output is an Adaptive-Note loop record."""
    return isinstance(trace, dict) and "initial" in trace and "steps" in trace


def format_trace(trace: dict[str, Any]) -> str:
    """Every step of the loop: queries, retrieved sources, note diff, verdict, then the stop reason.

    Args:
        trace: ``NoteResult.trace`` (also in ``--json`` output under ``trace``).

    Returns:
        Multi-line text.
    """
    s = trace.get("settings", {})
    lines = [
        "adaptive note "
        f"(max_step={s.get('max_step')}, max_fail_step={s.get('max_fail_step')}, "
        f"top_k={s.get('top_k')}, max_top_k={s.get('max_top_k')}, dedup={s.get('dedup')}, "
        f"fail_count={s.get('fail_count')})"
    ]
    init = trace.get("initial", {})
    lines.append(f"step 0  search: {_clip(init.get('search', ''), 120)}")
    lines.append(f"        retrieved: {_refs(init.get('retrieved', []))}")
    note = init.get("note", "")
    lines.append(f"        initial note ({len(note.split())} words): {_clip(note)}")
    for step in trace.get("steps", []):
        n = step.get("step")
        lines.append(f"step {n}  queries: {' | '.join(step.get('queries', [])) or '(none)'}")
        if "retrieved" in step:
            skipped = step.get("skipped_seen", 0)
            extra = f" ({skipped} already read, skipped)" if skipped else ""
            lines.append(
                f"        retrieved {len(step['retrieved'])} new{extra}: {_refs(step['retrieved'])}"
            )
        diff = step.get("note_diff")
        if diff:
            lines.append(
                f"        note diff: +{diff['added']} / -{diff['removed']} words "
                f"({diff['words_before']} -> {diff['words_after']})"
                + (f'; added: "{diff["added_sample"]}"' if diff.get("added_sample") else "")
            )
        verdict = step.get("verdict")
        if verdict:
            decision = "kept the refined note" if step.get("kept") else "kept the previous note"
            lines.append(
                f"        verdict: {'better' if verdict['better'] else 'not better'} "
                f"({verdict['source']}: {_clip(verdict['raw'], 60)!r}) -> {decision}; "
                f"failures {step.get('fails')}"
            )
    lines.append(f"stop: {trace.get('stop_reason')}")
    for warning in trace.get("warnings", []):
        lines.append(f"warning: {warning}")
    lines.append(f"best note: {_clip(trace.get('note', ''), 400)}")
    t = trace.get("totals", {})
    reused = t.get("prefix_tokens_reused", 0)
    lines.append(
        f"cost: {t.get('llm_calls')} LLM calls, {t.get('prompt_tokens')} prompt tokens"
        + (f" ({reused} reused from the KV cache)" if reused else "")
        + f", {t.get('completion_tokens')} completion tokens, {t.get('passages_read')} passages "
        f"read, {t.get('seconds', t.get('llm_seconds'))} s"
    )
    return "\n".join(lines)
