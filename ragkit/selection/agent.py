"""CORAG's per-query configuration, as a rule instead of the paper's learned MLP agent.

The paper trains an MLP on bge-m3 query embeddings to pick (C, lambda, iterations) per query; no
such training data exists offline, so the default agent is a transparent rule on the question's
length and type. Comparison and multi-hop questions need several chunks that together cover two
entities, so they get more iterations and a smaller cost penalty; short factoid questions need
one good chunk, so they get fewer iterations and a larger penalty (shorter prompts).
"""

from __future__ import annotations

import dataclasses
import re

from ragkit.selection.mcts import MCTSConfig

__all__ = ["question_type", "rule_config"]

_MULTI = re.compile(
    r"\b(both|compare|same|differ\w*|older|younger|earlier|later|first|before|after|either|"
    r"which (?:one|of)|between)\b|\bor\b",
    re.IGNORECASE,
)
_FACTOID = re.compile(r"^\s*(who|when|where|what year|how many|how much|what is|what was)\b", re.I)


def question_type(question: str) -> str:
    """``multi`` (comparison / multi-hop), ``factoid`` (short wh-question) or ``general``."""
    words = len(question.split())
    if _MULTI.search(question) or words > 18:
        return "multi"
    if words <= 8 and _FACTOID.search(question):
        return "factoid"
    return "general"


def rule_config(question: str, base: MCTSConfig) -> tuple[MCTSConfig, str]:
    """Adjust the YAML's (C, lambda, iterations) for one question.

    Args:
        question: The question.
        base: The configured settings (used unchanged for ``general`` questions).

    Returns:
        The settings for this question and its type label (reported in the trace).
    """
    kind = question_type(question)
    if kind == "multi":
        cfg = dataclasses.replace(
            base, iterations=max(1, round(base.iterations * 1.5)), lam=base.lam * 0.5
        )
    elif kind == "factoid":
        cfg = dataclasses.replace(
            base, iterations=max(1, round(base.iterations * 0.75)), lam=base.lam * 1.5
        )
    else:
        cfg = base
    return cfg, kind
