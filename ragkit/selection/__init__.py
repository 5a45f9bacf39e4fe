"""CORAG chunk selection: MCTS over ordered chunk combinations under a token budget."""

from __future__ import annotations

from ragkit._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
