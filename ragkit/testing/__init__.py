"""Helpers for users' own tests: a scripted chat generator, a fixed relevance scorer and a local
OpenAI-style chat server.

Names load on first access so ``import ragkit.testing`` does not import Haystack.
"""

from __future__ import annotations

from ragkit._lazy import lazy_exports

_EXPORTS = {
    "FixedRelevanceScorer": "ragkit.testing.scorer",
    "FixedScorerError": "ragkit.testing.scorer",
    "OpenAICompatServer": "ragkit.testing.openai_server",
    "ScriptedChatGenerator": "ragkit.testing.scripted",
    "ScriptedGeneratorError": "ragkit.testing.scripted",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
