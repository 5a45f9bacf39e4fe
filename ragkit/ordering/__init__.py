"""Context ordering: Jin et al.'s retrieval reordering with hard-negative demotion."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HardNegativePolicy": "ragkit.ordering.hard_negatives",
    "Treatment": "ragkit.ordering.hard_negatives",
    "edge_positions": "ragkit.ordering.hard_negatives",
    "plan_order": "ragkit.ordering.hard_negatives",
    "Reorderer": "ragkit.ordering.components",
    "edge_layout": "ragkit.ordering.components",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load names lazily so importing the package does not import Haystack."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit.ordering' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
