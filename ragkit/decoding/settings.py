"""Nested settings of the speculative components: the drafter, the speculation loop, RAPID's context.

``SpeculativeGenerator(target, drafter, speculation)`` and ``RapidReader(target, drafter,
speculation, context, ...)`` take these instead of two dozen flat parameters. The drafter is a
:class:`~ragkit.models.spec.ModelSpec` (a second model, or the target's own name for
self-drafting; keys it does not give are the target's) or an :class:`NgramSpec` (prompt lookup).
:func:`upgrade_speculative` reads the flat parameters of the release before, with a deprecation
warning per parameter that names its new key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from ragkit.decoding.rapid import TruncationPolicy
from ragkit.decoding.speculative import SpeculativeConfig
from ragkit.errors import InvalidParameter, clip
from ragkit.models.spec import ModelSpec, resolve_spec
from ragkit.settings import Settings, coerce, upgrade_flat

__all__ = [
    "NgramSpec",
    "RapidContext",
    "SpeculativeSettings",
    "resolve_drafter",
    "upgrade_speculative",
]


class NgramSpec(Settings):
    """Prompt-lookup drafting: continuations of n-grams found in the prompt and the passages.

    Attributes:
        kind: Always ``ngram`` (what tells it from a model drafter in YAML).
        max_ngram: Longest n-gram matched.
    """

    kind: Literal["ngram"] = "ngram"
    max_ngram: int = Field(default=3, ge=1)


class SpeculativeSettings(Settings):
    """How drafts are made long, checked and adapted.

    Attributes:
        gamma: Most tokens drafted per target call (> 0).
        eta: RAPID knowledge-transfer step (>= 0; 0 is lossless).
        alpha: Plausibility mask threshold for the transfer, in (0, 1].
        residual: ``paper`` or ``code`` residual rule on a rejection.
        confidence: A model drafter stops before a token less probable than this, in [0, 1).
        adaptive: Adapt gamma to measured acceptance and turn drafting off where it is
            measured slower than plain decoding.
        learn_across_calls: Keep one adaptive policy across calls (default: a fresh one per
            answer; see ``SpeculativeGenerator.answer_policy``).
        tree_width: LongSpec-style tree drafting with this many alternatives per level (greedy,
            transformers backend; the adaptive policy does not apply). 0: chain drafts.
        compile_draft_step: ``torch.compile`` the model drafter's one-token step (transformers
            backend, static cache); the first answers pay the compilation.
        fallback: For a model drafter: n-gram lookup where the model is not confident.
    """

    # defaults are the decoding loop's own (one place); the checks too (see _check)
    gamma: int = SpeculativeConfig.gamma
    eta: float = SpeculativeConfig.eta
    alpha: float = SpeculativeConfig.alpha
    residual: Literal["paper", "code"] = SpeculativeConfig.residual
    confidence: float = SpeculativeConfig.confidence
    adaptive: bool = True
    learn_across_calls: bool = False
    tree_width: int = Field(default=0, ge=0)
    compile_draft_step: bool = False
    fallback: NgramSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> SpeculativeSettings:
        self.config()  # the loop's own checks, naming the key
        return self

    def config(self) -> SpeculativeConfig:
        """The decoding loop's config for these settings."""
        return SpeculativeConfig(
            gamma=self.gamma,
            eta=self.eta,
            alpha=self.alpha,
            residual=self.residual,
            confidence=self.confidence,
        )


class RapidContext(Settings):
    """What the RAPID target reads (the document, fitted) and the drafter reads (chunks of it).

    Attributes:
        chunk_tokens: Retrieval chunk size in target tokens (RAPID: 128).
        budget_tokens: Lower bound of the drafter's context in tokens (RAPID: 4096).
        ratio: The drafter's context is at least ``L / ratio`` tokens (RAPID: 32).
        reserve_tokens: Target context kept free for the question and the answer (at least
            ``max_new_tokens + 64`` is kept whatever this says).
        truncation: ``middle``, ``head`` or ``error`` for a document longer than the target's
            context.
    """

    chunk_tokens: int = Field(default=128, ge=1)
    budget_tokens: int = Field(default=1024, ge=1)
    ratio: int = Field(default=32, ge=1)
    reserve_tokens: int = Field(default=256, ge=1)
    truncation: TruncationPolicy = "middle"


def resolve_drafter(
    value: ModelSpec | NgramSpec | Mapping[str, Any] | str | None, target: ModelSpec
) -> ModelSpec | NgramSpec:
    """The drafter: n-gram lookup, or a model whose unset keys are the target's.

    ``ngram`` (or a mapping with ``kind: ngram``) is prompt lookup; any other name or mapping
    is a model. A model drafter runs on the target's backend (one decoding loop drives both).

    Raises:
        InvalidParameter: Naming the bad key (``drafter.backend``).
    """
    if value is None or value == "ngram":
        return NgramSpec()
    if isinstance(value, NgramSpec):
        return value
    if isinstance(value, Mapping) and "kind" in value:
        return coerce(NgramSpec, value, "drafter")
    if not isinstance(value, ModelSpec | Mapping | str):
        raise InvalidParameter(
            "drafter", f"expected 'ngram', a model name or a mapping, got {clip(value)}"
        )
    spec = resolve_spec(value, target, "drafter")
    if spec.backend != target.backend:
        raise InvalidParameter(
            "drafter.backend",
            f"must be the target's backend ({target.backend!r}), got {spec.backend!r}",
        )
    return spec


def check_speculation(
    target: ModelSpec, drafter: ModelSpec | NgramSpec, speculation: SpeculativeSettings
) -> None:
    """Refuse combinations that cannot run (errors name the key)."""
    if speculation.compile_draft_step and target.backend != "transformers":
        raise InvalidParameter(
            "speculation.compile_draft_step",
            f"needs target.backend: transformers, not {target.backend!r}",
        )
    if speculation.tree_width and target.backend != "transformers":
        raise InvalidParameter(
            "speculation.tree_width",
            f"tree drafting needs target.backend: transformers, not {target.backend!r}",
        )
    if speculation.fallback is not None and isinstance(drafter, NgramSpec):
        raise InvalidParameter(
            "speculation.fallback", "is for a model drafter; the drafter is already n-gram lookup"
        )


# ---------------------------------------------------------------------- the flat form (deprecated)

_OLD_DRAFTERS = ("self", "model", "self+ngram", "model+ngram")
_MOVED = {
    "model": "target.name",
    "backend": "target.backend",
    "device": "target.device",
    "n_ctx": "target.n_ctx",
    "n_threads": "target.n_threads",
    **{
        name: f"speculation.{name}"
        for name in (
            "gamma",
            "eta",
            "alpha",
            "residual",
            "confidence",
            "adaptive",
            "learn_across_calls",
            "tree_width",
            "compile_draft_step",
        )
    },
}
_RAPID_MOVED = {
    name: f"context.{name}"
    for name in ("chunk_tokens", "budget_tokens", "ratio", "reserve_tokens", "truncation")
}


def _upgrade_drafter(params: dict[str, Any]) -> list[tuple[str, str]]:
    """The old ``drafter`` kind string, ``draft_model`` and ``max_ngram`` in the nested form."""
    notes: list[tuple[str, str]] = []
    kind = params.get("drafter")
    draft_model = params.pop("draft_model", None)
    max_ngram = params.pop("max_ngram", None)
    ngram: dict[str, Any] = {"kind": "ngram"}
    if max_ngram is not None:
        ngram["max_ngram"] = max_ngram
    if isinstance(kind, str) and kind in _OLD_DRAFTERS:
        model = kind.split("+")[0]
        if model == "model":  # (no draft_model: drafter.name is missing, an error naming it)
            params["drafter"] = {"name": draft_model}
            new = "'drafter: {name: MODEL}'"
        else:
            params["drafter"] = {}
            new = "'drafter: {}' (a model drafter with the target's keys)"
        if kind.endswith("+ngram"):
            speculation = params.get("speculation")
            speculation = dict(speculation) if isinstance(speculation, Mapping) else {}
            speculation.setdefault("fallback", ngram)
            params["speculation"] = speculation
            new += " and 'speculation.fallback: {kind: ngram}'"
        notes.append((f"'drafter: {kind}'", new))
        if draft_model is not None:
            notes.append(("'draft_model'", "'drafter.name'"))
        if max_ngram is not None and kind.endswith("+ngram"):
            notes.append(("'max_ngram'", "'speculation.fallback.max_ngram'"))
        return notes
    if draft_model is not None:
        notes.append(("'draft_model'", "'drafter: {name: MODEL}' (ignored with an n-gram drafter)"))
    if max_ngram is not None and kind in (None, "ngram"):
        params["drafter"] = ngram
        notes.append(("'max_ngram'", "'drafter.max_ngram'"))
    return notes


def upgrade_speculative(component: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A ``SpeculativeGenerator``'s or ``RapidReader``'s init parameters in the nested form.

    Flat parameters of the release before move to their nested keys with a
    ``DeprecationWarning`` each; parameters already nested pass unchanged.
    """
    flat = set(_MOVED) | set(_RAPID_MOVED) | {"draft_model", "max_ngram"}
    old_drafter = isinstance(params.get("drafter"), str) and params["drafter"] in _OLD_DRAFTERS
    if not (flat & set(params) or old_drafter):
        return dict(params)
    moved = {**_MOVED, **(_RAPID_MOVED if component == "RapidReader" else {})}
    return upgrade_flat(component, params, moved, custom=_upgrade_drafter)
