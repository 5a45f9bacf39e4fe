"""Context ordering: Jin et al.'s retrieval reordering with hard-negative demotion."""

from __future__ import annotations

from ragkit._lazy import lazy_exports

_EXPORTS = {
    "HardNegativePolicy": "ragkit.ordering.hard_negatives",
    "Treatment": "ragkit.ordering.hard_negatives",
    "edge_positions": "ragkit.ordering.hard_negatives",
    "plan_order": "ragkit.ordering.hard_negatives",
    "Reorderer": "ragkit.ordering.components",
    "edge_layout": "ragkit.ordering.components",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
