"""Parse the memory reviewer's verdict: strict JSON first, then a tolerant keyword fallback.

Small models often wrap the JSON in prose or code fences, use single quotes, or answer with a bare
word; the parser accepts those, and anything with no verdict at all counts as "not better" (the
safe choice: the current best note is kept) with ``source == "unparsed"`` so the trace shows it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Verdict", "parse_verdict"]

VerdictSource = Literal["json", "keyword", "unparsed", "unchanged", "first note"]

_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_STATUS = re.compile(r"""["']?status["']?\s*[:=]\s*["']?(true|false|yes|no)\b""", re.IGNORECASE)
_WORD = re.compile(r"\b(true|false|yes|no)\b", re.IGNORECASE)
_TRUTHY = {"true": True, "yes": True, "false": False, "no": False}


@dataclass(frozen=True)
class Verdict:
    """The reviewer's decision on a refined note.

    Attributes:
        better: Whether the refined note is a significant improvement (keep it).
        source: How it was read: ``json`` (strict), ``keyword`` (fallback), ``unparsed``, or
            ``unchanged`` (the refined note equals the old one; the reviewer is not asked), or
            ``first note`` (the old note was empty, so any note is better; not asked either).
        raw: The reviewer's reply, for the trace.
    """

    better: bool
    source: VerdictSource
    raw: str


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _TRUTHY.get(value.strip().lower())
    return None


def parse_verdict(text: str) -> Verdict:
    """Read ``{"status": "True"}``-style verdicts; fall back to a status or yes/no/true/false word.

    Args:
        text: The reviewer's reply.

    Returns:
        The verdict; with no JSON status and no verdict word, ``better=False, source="unparsed"``.
    """
    raw = text or ""
    for match in _OBJECT.finditer(raw):
        try:
            obj = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            status = next((v for k, v in obj.items() if str(k).lower() == "status"), None)
            value = _as_bool(status)
            if value is not None:
                return Verdict(value, "json", raw)
    found = _STATUS.search(raw) or _WORD.search(raw)
    if found:
        return Verdict(_TRUTHY[found.group(1).lower()], "keyword", raw)
    return Verdict(False, "unparsed", raw)
