"""The one dispatch from a memory kind to its backend: a new memory, or a saved one loaded.

:mod:`~ragkit.memory.kv` holds the windowed memory both kinds share and :mod:`~ragkit.memory.gist`
builds on it; this module sits above both, so neither backend imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.memory.backend import (
    CorruptMemoryError,
    MemoryMismatchError,
    MemorySettings,
    check_identity,
    read_manifest,
)
from ragkit.memory.gist import GistMemory
from ragkit.memory.kv import BACKEND_VERSION, KVMemory, WindowedMemory

if TYPE_CHECKING:
    from ragkit.memory.lm import MemoryLM

__all__ = ["KINDS", "load_memory", "new_memory"]

KINDS: dict[str, type[WindowedMemory]] = {"kv": KVMemory, "gist": GistMemory}
"""Memory kind (``MemorySettings.kind``, the manifest's ``kind``) -> its backend class."""


def new_memory(
    lm: MemoryLM, settings: MemorySettings, *, gist_cache: Path | None = None
) -> WindowedMemory:
    """An empty memory of the configured kind (a gist memory caches gists in ``gist_cache``)."""
    if settings.kind == "gist":
        return GistMemory(lm, settings, gist_cache=gist_cache)
    return KINDS[settings.kind](lm, settings)


def load_memory(
    directory: Path, lm: MemoryLM, *, rebuild: str = "ragkit memory build"
) -> WindowedMemory:
    """Load a saved memory of either kind, after checking its manifest against ``lm``.

    Args:
        directory: The memory directory.
        lm: The memory model that will use it (must be the one that built it).
        rebuild: The command that rebuilds this memory, quoted in errors.

    Raises:
        NoMemoryError: Nothing saved there.
        CorruptMemoryError: Files missing, truncated or altered.
        MemoryMismatchError: Built by another model, backend or format.
    """
    manifest = read_manifest(directory)
    check_identity(manifest, lm, directory, rebuild)
    cls = KINDS.get(str(manifest.get("kind")))
    if cls is None or manifest.get("backend_version") != BACKEND_VERSION:
        raise MemoryMismatchError(
            f"memory at {directory} is a {manifest.get('kind')!r} memory version "
            f"{manifest.get('backend_version')}, this ragkit reads kv/gist version "
            f"{BACKEND_VERSION}; rebuild it: {rebuild}"
        )
    try:
        settings = MemorySettings(**(manifest.get("settings") or {}))
    except Exception as exc:  # noqa: BLE001 - pydantic error: a foreign or altered manifest
        raise CorruptMemoryError(f"memory at {directory} has invalid settings: {exc}") from None
    memory = cls(lm, settings)
    memory._restore(directory, manifest)
    return memory
