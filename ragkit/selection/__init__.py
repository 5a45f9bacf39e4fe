"""CORAG chunk selection: MCTS over ordered chunk combinations under a token budget."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChunkSelector": "ragkit.selection.components",
    "CombinationUtility": "ragkit.selection.utility",
    "MCTSConfig": "ragkit.selection.mcts",
    "Selection": "ragkit.selection.mcts",
    "count_feasible_states": "ragkit.selection.mcts",
    "greedy_fill": "ragkit.selection.mcts",
    "mcts_select": "ragkit.selection.mcts",
    "question_type": "ragkit.selection.agent",
    "rule_config": "ragkit.selection.agent",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load names lazily so importing the package does not import Haystack."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit.selection' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
