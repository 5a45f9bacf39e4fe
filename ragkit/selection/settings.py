"""Nested settings of :class:`~ragkit.selection.components.ChunkSelector`: search, utility, scorer.

``ChunkSelector(budget, tokenizer, search=MCTSSettings(...), utility=UtilitySettings(...),
scorer=ScorerSettings(...))`` instead of 21 flat parameters. :class:`MCTSSettings` is the one
place the search settings live: the algorithm's :class:`~ragkit.selection.mcts.MCTSConfig` is
derived from it per call, never stored beside it. :func:`upgrade_selector` reads the flat
parameters of the release before, with a deprecation warning per parameter naming its new key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from ragkit.errors import InvalidParameter
from ragkit.selection.mcts import MCTSConfig
from ragkit.settings import Settings, upgrade_flat

__all__ = ["MCTSSettings", "ScorerSettings", "UtilitySettings", "upgrade_selector"]


class MCTSSettings(Settings):
    """CORAG's search: exploration, cost penalty, iterations and the upstream variants.

    Attributes:
        c: UCB exploration weight C (rewards are normalized to [0, 1]; see ``MCTSConfig``).
        lam: Cost penalty lambda (U subtracts lambda * cost / B); >= 0.
        iterations: MCTS iterations (>= 1); each expands one node, all its children.
        agent: ``rule`` adjusts (C, lambda, iterations) per question type (see
            ``ragkit.selection.agent``); ``static`` uses the values above as they are.
        backprop: Only the ``best`` child's reward (paper; default) or ``all`` (official code;
            searches shallowly with many candidates, see ``MCTSConfig``).
        pick: Final state by own ``score`` (official code) or ``average`` reward (paper).
        normalize: Scale rewards to [0, 1] inside UCB (False: raw rewards, as upstream).
    """

    # defaults are the algorithm's own (one place); the checks too (see _check)
    c: float = MCTSConfig.c
    lam: float = MCTSConfig.lam
    iterations: int = MCTSConfig.iterations
    agent: Literal["rule", "static"] = "rule"
    backprop: Literal["all", "best"] = MCTSConfig.backprop
    pick: Literal["score", "average"] = MCTSConfig.pick
    normalize: bool = MCTSConfig.normalize

    @model_validator(mode="after")
    def _check(self) -> MCTSSettings:
        self.config()  # the algorithm's own checks, naming the key
        return self

    def config(self) -> MCTSConfig:
        """The search algorithm's config for these settings."""
        return MCTSConfig(
            c=self.c,
            lam=self.lam,
            iterations=self.iterations,
            backprop=self.backprop,
            pick=self.pick,
            normalize=self.normalize,
        )


class UtilitySettings(Settings):
    """Weights of the default state score, :class:`~ragkit.selection.utility.CombinationUtility`.

    Attributes:
        redundancy: Near-duplicate penalty weight.
        similarity_margin: Cosine above which two chunks count as redundant.
        coverage: Question-term coverage weight.
        retrieval_weight: Weight of the retriever's rank relative to embedding relevance (1:
            equal; 0: relevance alone, CORAG's reward without a prior).
        link: Bonus per selected chunk whose ``meta["title"]`` the question or another selected
            chunk names (multi-hop bridges; 0 turns it off).
    """

    redundancy: float = 1.0
    similarity_margin: float = 0.6
    coverage: float = 0.3
    retrieval_weight: float = Field(default=0.0, ge=0)
    link: float = Field(default=0.0, ge=0)


class ScorerSettings(Settings):
    """What scores a state (a combination of chunks), and with which model.

    Attributes:
        kind: ``utility`` (cached embeddings, microseconds per state; the CPU default),
            ``embedding`` (embeds each concatenated state), ``llm`` (P("yes") of a causal LM)
            or ``cross_encoder`` (sentence-transformers; none ships offline).
        model: Model for the scorer (default: MiniLM, or the packaged causal LM for ``llm``;
            required for ``cross_encoder``).
        device: ``auto``, ``cpu`` or ``cuda`` for the scorer model.
        reuse_embeddings: For the utility, use ``Document.embedding`` and the
            ``query_embedding`` input when given instead of embedding again; they must come
            from the same model as ``model`` (MiniLM by default, like the store).
    """

    kind: Literal["utility", "llm", "cross_encoder", "embedding"] = "utility"
    model: str | None = None
    device: str = "auto"
    reuse_embeddings: bool = True

    @model_validator(mode="after")
    def _check(self) -> ScorerSettings:
        if self.kind == "cross_encoder" and not self.model:
            raise InvalidParameter(
                "model",
                "must be a cross-encoder directory or hub id (kind: cross_encoder has no default)",
            )
        return self


# ---------------------------------------------------------------------- the flat form (deprecated)

_MOVED = {
    **{name: f"search.{name}" for name in MCTSSettings.model_fields},
    **{name: f"utility.{name}" for name in UtilitySettings.model_fields},
    "scorer_model": "scorer.model",
    "device": "scorer.device",
    "reuse_embeddings": "scorer.reuse_embeddings",
}


def _upgrade_scorer(params: dict[str, Any]) -> list[tuple[str, str]]:
    """The old ``scorer: NAME`` string as ``scorer: {kind: NAME}``."""
    kind = params.get("scorer")
    if not isinstance(kind, str):
        return []
    params["scorer"] = {"kind": kind}
    return [(f"'scorer: {kind}'", f"'scorer: {{kind: {kind}}}'")]


def upgrade_selector(params: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ChunkSelector``'s init parameters in the nested form (flat ones warn and move)."""
    if not (set(_MOVED) & set(params) or isinstance(params.get("scorer"), str)):
        return dict(params)
    return upgrade_flat("ChunkSelector", params, _MOVED, custom=_upgrade_scorer)
