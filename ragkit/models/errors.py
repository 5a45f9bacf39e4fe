"""Exceptions raised by the model layer, kept import-light so callers can catch them cheaply."""

from __future__ import annotations

from ragkit.errors import RagkitError

__all__ = [
    "CapabilityError",
    "ContextLengthError",
    "ModelLoadError",
    "PrefixCacheError",
    "UnknownModelError",
]


class UnknownModelError(RagkitError, ValueError):
    """A model name is neither packaged, an existing path, nor a plausible hub id."""


class ModelLoadError(RagkitError, RuntimeError):
    """A model (or its device) could not be loaded; the message names the model and the fix."""


class CapabilityError(RagkitError, RuntimeError):
    """A backend lacks a capability (logits, KV/prefix cache) that a method needs."""


class PrefixCacheError(RagkitError, ValueError):
    """A saved prefix cache is corrupt or was built for another model, dtype or format."""


class ContextLengthError(RagkitError, ValueError):
    """A prompt does not fit in the model's context window."""
