"""Typed, nested settings for components: pydantic models that YAML writes as plain mappings.

A method component takes a few top-level parameters and groups the rest into settings models
(``ChunkSelector(search=MCTSSettings(...))``). Each model forbids unknown keys, checks types
strictly, and has a ``to_dict`` so that Haystack's default serialization writes it as a nested
mapping; the component's ``__init__`` turns a mapping back into the model (:func:`coerce`). A bad
value raises :class:`~ragkit.errors.InvalidParameter` naming its dotted path (``search.lam``), which
pipeline loading reports as ``components.NAME.init_parameters.search.lam``.

Flat parameters of the release before keep loading for one release: a component's ``from_dict``
moves them to their nested keys with :func:`upgrade_flat`, which warns with a
``DeprecationWarning`` that names the new key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ragkit.errors import InvalidParameter, clip

__all__ = ["Settings", "coerce", "first_problem", "put_nested", "upgrade_flat"]

S = TypeVar("S", bound=BaseModel)

_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


class Settings(BaseModel):
    """Base of nested component settings: strict, closed, immutable, serialized as a mapping."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-basic mapping (Haystack's ``default_to_dict`` calls this)."""
        return self.model_dump(mode="json")


def first_problem(exc: ValidationError, parameter: str) -> InvalidParameter:
    """The first error of a pydantic validation as an :class:`InvalidParameter` with a dotted path.

    A check that raised :class:`InvalidParameter` itself (inside a validator) keeps its own
    parameter name under ``parameter``; a constraint reads ``must be >= 1, got 0``.
    """
    error = exc.errors()[0]
    path = ".".join([parameter, *(str(part) for part in error["loc"])])
    original = (error.get("ctx") or {}).get("error")
    if isinstance(original, InvalidParameter):
        return InvalidParameter(f"{path}.{original.parameter}", original.message)
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        message = f"must be {_BOUNDS[kind]} {bound}, got {clip(value)}"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "missing required key"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected')}, got {clip(value)}"
    elif kind == "value_error":
        message = str(original) if original is not None else error["msg"]
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {clip(value)}"
    return InvalidParameter(path, message)


def coerce(cls: type[S], value: S | Mapping[str, Any] | None, parameter: str) -> S:
    """``value`` as a ``cls`` settings model: the model itself, a mapping of its fields, or None.

    Args:
        cls: The settings model.
        value: What the user passed (YAML gives a mapping).
        parameter: The init parameter's name, for errors.

    Raises:
        InvalidParameter: Naming the bad key (``search.lam``) or the parameter itself.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        fields = ", ".join(cls.model_fields)
        raise InvalidParameter(
            parameter, f"expected a mapping with keys among {fields}, got {clip(value)}"
        )
    try:
        return cls.model_validate(dict(value))
    except ValidationError as exc:
        raise first_problem(exc, parameter) from None


def put_nested(params: dict[str, Any], path: str, value: Any) -> None:
    """Set ``params[a][b]...`` for the dotted ``path`` in place.

    A settings model on the way becomes the mapping of the keys it was given; a string becomes
    ``{"name": STRING}`` (the shorthand of :class:`~ragkit.models.spec.ModelSpec`).
    """
    head, _, rest = path.partition(".")
    if not rest:
        params[head] = value
        return
    inner = params.get(head)
    if isinstance(inner, BaseModel):
        inner = inner.model_dump(exclude_unset=True)
    elif isinstance(inner, str):
        inner = {"name": inner}
    inner = dict(inner) if isinstance(inner, Mapping) else {}
    put_nested(inner, rest, value)
    params[head] = inner


def upgrade_flat(
    component: str,
    params: Mapping[str, Any],
    moved: Mapping[str, str],
    custom: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """Move flat init parameters of the release before to their nested keys, warning for each.

    Args:
        component: The component's class name, for the warning.
        params: The init parameters as given (not changed).
        moved: Old flat name -> new dotted key (``{"lam": "search.lam"}``).
        custom: Upgrades that are not a plain move; it edits the parameters in place and returns
            ``(old, new)`` pairs to warn about, as they should read (``'drafter: self'``).

    Returns:
        The parameters in the nested form. A nested key given explicitly wins over a flat one.
    """
    out = dict(params)
    notes: list[tuple[str, str]] = list(custom(out)) if custom is not None else []
    for old, new in moved.items():
        if old not in out:
            continue
        value = out.pop(old)
        head, _, rest = new.partition(".")
        explicit = out.get(head)
        if isinstance(explicit, BaseModel):
            explicit = explicit.model_dump(exclude_unset=True)
        if not (rest and isinstance(explicit, Mapping) and rest in explicit):
            put_nested(out, new, value)
        notes.append((repr(old), repr(new)))
    for old, new in notes:
        warnings.warn(
            f"{component}: init parameter {old} is deprecated and goes away in the next "
            f"release; use {new}",
            DeprecationWarning,
            stacklevel=3,
        )
    return out
