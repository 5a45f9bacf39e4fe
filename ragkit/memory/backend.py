"""The memory backend interface, its errors, settings and the on-disk manifest.

A backend memorizes corpus units (chunks with their source file), answers memory tasks
(clue spans, surrogate questions, draft answer, key points) and persists itself in a directory
whose ``manifest.json`` records the format and backend versions, the model identity (name and
weights sha256), the corpus hash, token counts, and the size and sha256 of every file. Loading
checks all of it before any state is used: a truncated or foreign memory is refused with a
message that names what differs and the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import RagkitError

if TYPE_CHECKING:
    from ragkit.memory.clues import ClueSet
    from ragkit.memory.lm import MemoryLM

__all__ = [
    "MEMORY_FORMAT",
    "CorruptMemoryError",
    "EmptyCorpusError",
    "GlobalMemoryError",
    "MemoryBackend",
    "MemoryMismatchError",
    "MemorySettings",
    "MemoryUnit",
    "NoMemoryError",
    "StaleMemoryError",
    "read_manifest",
    "sha256_file",
]

MEMORY_FORMAT = 1
MANIFEST = "manifest.json"


class GlobalMemoryError(RagkitError, RuntimeError):
    """A memory cannot be built or used; the message says why and what to run."""


class EmptyCorpusError(GlobalMemoryError):
    """There is nothing to memorize."""


class NoMemoryError(GlobalMemoryError):
    """No memory has been built for this store."""


class CorruptMemoryError(GlobalMemoryError):
    """Memory files are missing, truncated or altered (caught by the manifest)."""


class MemoryMismatchError(GlobalMemoryError):
    """The memory was built by another model, backend or format."""


class StaleMemoryError(GlobalMemoryError):
    """The store changed since the memory was built."""


class MemorySettings(BaseModel):
    """How a memory is built; recorded in its manifest.

    Attributes:
        kind: ``kv`` (the model's KV state over the raw corpus) or ``gist`` (the state over
            model-written gist notes of the corpus, MemoRAG-Lite).
        window_tokens: Corpus tokens per memory window; ``None``: the model's context minus
            ``reserve_tokens``.
        reserve_tokens: Room left in the context for a task's instruction and answer.
        task_tokens: Max new tokens for clue, surrogate and draft tasks (upstream 128).
        gist_chunk_tokens: Corpus tokens per gist chunk (upstream 4096; smaller suits small
            models).
        gist_tokens: Max new tokens per gist (upstream 512).
        min_words: Clue lines need more than this many words (upstream 3).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kv", "gist"] = "kv"
    window_tokens: int | None = Field(default=None, ge=64)
    reserve_tokens: int = Field(default=384, ge=32)
    task_tokens: int = Field(default=128, ge=1)
    gist_chunk_tokens: int = Field(default=1024, ge=16)
    gist_tokens: int = Field(default=256, ge=8)
    min_words: int = Field(default=3, ge=0)


@dataclass(frozen=True)
class MemoryUnit:
    """One piece of corpus text to memorize (a chunk), with the file it came from."""

    key: str
    source: str
    text: str


class MemoryBackend(Protocol):
    """What every memory backend offers (see :mod:`ragkit.memory.kv`, :mod:`ragkit.memory.gist`)."""

    kind: str
    settings: MemorySettings

    def memorize(self, units: Sequence[MemoryUnit]) -> None:
        """Read the corpus into memory (replaces any previous content)."""
        ...

    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Extend the memory with new units without re-reading what it already holds."""
        ...

    def remove_sources(self, sources: Sequence[str]) -> None:
        """Forget every unit of these source files (re-reading only what shared a window)."""
        ...

    def recall_clues(self, question: str, *, draft: bool = False) -> ClueSet:
        """Clue spans and surrogate questions (and a draft answer) for ``question``."""
        ...

    def draft_answer(self, question: str) -> str:
        """The memory's own short answer to ``question``."""
        ...

    def key_points(self) -> list[str]:
        """Numbered key points of the whole memory, one per item."""
        ...

    def save(self, directory: Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the memory and its manifest atomically into ``directory``."""
        ...


def sha256_file(path: Path) -> str:
    """Hex sha256 of a small file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and structurally check a memory manifest, verifying every listed file.

    Raises:
        NoMemoryError: There is no memory in ``directory``.
        CorruptMemoryError: The manifest is unreadable, or a listed file is missing or differs
            from its recorded size and sha256.
    """
    path = directory / MANIFEST
    if not path.exists():
        raise NoMemoryError(f"no memory at {directory}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("manifest has no file list")
    except (OSError, ValueError) as exc:
        raise CorruptMemoryError(
            f"memory at {directory} is corrupt ({MANIFEST}: {exc}); not loaded"
        ) from None
    for name, expected in manifest["files"].items():
        file = directory / name
        try:
            ok = file.stat().st_size == expected.get("size")
            if ok and "sha256" in expected:  # large state blobs are verified by their own loader
                ok = sha256_file(file) == expected["sha256"]
        except OSError:
            ok = False
        if not ok:
            raise CorruptMemoryError(
                f"memory at {directory} is corrupt ({name} is missing or truncated: size or "
                "sha256 differs from the manifest); not loaded"
            )
    return manifest


def check_identity(manifest: dict[str, Any], lm: MemoryLM, directory: Path, rebuild: str) -> None:
    """Refuse a memory built by another model (name or weights) or another backend format."""
    if manifest.get("format") != MEMORY_FORMAT:
        raise MemoryMismatchError(
            f"memory at {directory} has format {manifest.get('format')}, this ragkit reads "
            f"{MEMORY_FORMAT}; rebuild it: {rebuild}"
        )
    built = manifest.get("model") or {}
    mine = lm.identity()
    if any(built.get(k) != mine.get(k) for k in ("backend", "model", "sha256")):

        def label(ident: dict[str, Any]) -> str:
            sha = str(ident.get("sha256") or "")[:12]
            return (
                f"{ident.get('model')!r} ({ident.get('backend')}{', sha256 ' + sha if sha else ''})"
            )

        raise MemoryMismatchError(
            f"memory at {directory} was built with model {label(built)}, not {label(mine)}; "
            f"rebuild it: {rebuild}"
        )
