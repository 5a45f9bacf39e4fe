"""Adaptive-Note: an iteratively refined note kept only when an LLM judge finds it better.

Layout: :mod:`~ragkit.notes.loop` (the algorithm, over a chat callable and a retriever),
:mod:`~ragkit.notes.prompts` (the prompt set and its overrides), :mod:`~ragkit.notes.verdict`
(the judge's reply), :mod:`~ragkit.notes.trace` (the readable trace) and
:mod:`~ragkit.notes.components` (the Haystack answerer). Names load lazily.
"""

from __future__ import annotations

from ragkit._lazy import lazy_exports

_EXPORTS = {
    "AdaptiveNoteAnswerer": "ragkit.notes.components",
    "generator_llm": "ragkit.notes.components",
    "fitter_fit": "ragkit.notes.components",
    "NoteResult": "ragkit.notes.loop",
    "NoteSettings": "ragkit.notes.loop",
    "Passage": "ragkit.notes.loop",
    "run_adaptive_note": "ragkit.notes.loop",
    "PromptSet": "ragkit.notes.prompts",
    "load_prompt_set": "ragkit.notes.prompts",
    "format_trace": "ragkit.notes.trace",
    "Verdict": "ragkit.notes.verdict",
    "parse_verdict": "ragkit.notes.verdict",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
