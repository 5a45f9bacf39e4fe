"""The Adaptive-Note prompt set, in one place and in our own words, overridable from YAML.

Every call for one question starts with the same system message (instructions shared by all
roles, then the question), so backends that keep a KV cache across calls (llama.cpp) reuse that
prefix; the role's task and its material follow in the user message. Templates use Python
``str.format`` fields; write literal braces as ``{{`` and ``}}``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from ragkit.errors import InvalidParameter

__all__ = ["ROLE_FIELDS", "PromptSet", "load_prompt_set"]

# the fields each template may use (anything else is a typo and fails at load time)
ROLE_FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset({"question"}),
    "init_note": frozenset({"question", "passages"}),
    "queries": frozenset({"question", "note", "past_queries"}),
    "refine": frozenset({"question", "note", "passages"}),
    "compare": frozenset({"question", "note_1", "note_2"}),
    "answer": frozenset({"question", "note"}),
}

_SYSTEM = (
    "You are a careful research assistant. You collect evidence into a short note and use it "
    "to answer one question. Be factual; never invent facts that the text does not state.\n"
    "Question: {question}"
)

_INIT_NOTE = (
    "Task: write a note.\n"
    "Read the passages and write a note of everything in them that helps answer the question: "
    "names, dates, numbers and how they relate. Keep the exact wording of key facts. Leave out "
    "what does not help. Write one short paragraph and nothing else.\n\n"
    "Passages:\n{passages}"
)

_QUERIES = (
    "Task: plan new searches.\n"
    "Here is the current note and the searches already made. Write two new search questions "
    "that would find what the note still lacks to answer the question. Make them short and full "
    "of keywords (names, titles, dates), and different from the earlier searches. Write one "
    "question per line and nothing else.\n\n"
    "Note: {note}\n\n"
    "Earlier searches:\n{past_queries}"
)

_REFINE = (
    "Task: improve the note.\n"
    "Add to the note the facts from the new passages that help answer the question and are not "
    "in it yet, keeping their exact wording. Keep everything useful that the note already says. "
    "Reply with the improved note only, as one short paragraph.\n\n"
    "Note: {note}\n\n"
    "New passages:\n{passages}"
)

_COMPARE = (
    "Task: compare two notes.\n"
    "Judge whether note 2 is clearly better than note 1 for answering the question. Weigh the "
    "key facts, completeness, detail and how directly each helps to answer. If note 2 adds "
    "nothing new, only repeats or rewords note 1, or adds facts that do not help, it is not "
    'better. Reply with JSON only: {{"status": "True"}} if note 2 is clearly better, else '
    '{{"status": "False"}}.\n\n'
    "Note 1: {note_1}\n\n"
    "Note 2: {note_2}"
)

_ANSWER = (
    "Task: answer.\n"
    "Answer the question using only the note. Reply with the answer alone: a name, date, "
    "number, short phrase, or yes/no. No full sentence, no explanation.\n\n"
    "Note: {note}"
)


@dataclass(frozen=True)
class PromptSet:
    """Templates for the shared system message and the five roles of the loop."""

    system: str = _SYSTEM
    init_note: str = _INIT_NOTE
    queries: str = _QUERIES
    refine: str = _REFINE
    compare: str = _COMPARE
    answer: str = _ANSWER

    def messages(self, role: str, **values: str) -> list[dict[str, str]]:
        """The chat for ``role``: the shared system message, then the role's user message.

        Args:
            role: one of ``init_note``, ``queries``, ``refine``, ``compare``, ``answer``.
            **values: the template fields (``question`` always).

        Returns:
            ``[{"role": "system", ...}, {"role": "user", ...}]``.
        """
        template = getattr(self, role)
        return [
            {"role": "system", "content": self.system.format(question=values["question"])},
            {"role": "user", "content": template.format(**values)},
        ]


def _fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_prompt_set(spec: str | dict[str, Any] | None, where: str = "prompts") -> PromptSet:
    """Build a prompt set from the defaults, overriding the roles ``spec`` names.

    Args:
        spec: None (defaults), a mapping ``role -> template``, or the path of a YAML file
            holding that mapping.
        where: how errors name the setting (e.g. ``components.answerer.init_parameters.prompts``).

    Returns:
        The prompt set.

    Raises:
        InvalidParameter: an unknown role, a non-string template, a template field the role
            does not provide, or a malformed template; ``parameter`` is ``where.ROLE`` (for a
            YAML file: ``where``, the message naming the file and the role) and the message
            says the fix.
    """
    if spec is None:
        return PromptSet()
    source: Path | None = None
    if isinstance(spec, str):
        from ragkit.config import read_yaml

        source = Path(spec).expanduser()
        data = read_yaml(source)
    else:
        data = spec

    def fail(role: str | None, message: str) -> NoReturn:
        if source is None:
            raise InvalidParameter(where if role is None else f"{where}.{role}", message)
        raise InvalidParameter(where, f"{source}{'' if role is None else ': ' + role}: {message}")

    if not isinstance(data, dict):
        fail(None, "expected a mapping of role -> template")
    known = [f.name for f in fields(PromptSet)]
    updates: dict[str, str] = {}
    for role, template in data.items():
        if role not in known:
            fail(role, f"unknown prompt role; known: {', '.join(known)}")
        if not isinstance(template, str) or not template.strip():
            fail(role, "expected a non-empty template string")
        try:
            used = _fields_of(template)
        except ValueError as exc:
            fail(role, f"malformed template ({exc}); write literal braces as {{{{ }}}}")
        extra = used - ROLE_FIELDS[role]
        if extra:
            allowed = ", ".join("{" + f + "}" for f in sorted(ROLE_FIELDS[role]))
            fail(role, f"unknown field {{{sorted(extra)[0]}}}; this role offers {allowed}")
        updates[role] = template
    return replace(PromptSet(), **updates)
