"""Helpers for users' own tests: a scripted chat generator and a local OpenAI-style chat server.

Names load on first access so ``import ragkit.testing`` does not import Haystack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OpenAICompatServer": "ragkit.testing.openai_server",
    "ScriptedChatGenerator": "ragkit.testing.scripted",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load public names lazily (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
