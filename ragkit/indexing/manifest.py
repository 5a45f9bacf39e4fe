"""The incremental-indexing manifest: which files are indexed, with which content hash.

A file is marked ``pending`` (durably) before any of its chunks are touched and ``done`` only
after its chunks are in both Qdrant and BM25. A run that dies in between leaves ``pending``
entries, and the next run deletes those files' chunks by source and writes them again, so an
interruption can cause neither duplicates nor missing chunks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ragkit.atomic import write_json_atomic
from ragkit.errors import RagkitError

MANIFEST_FORMAT = 1


class ManifestError(RagkitError, RuntimeError):
    """The manifest is unreadable; the message says how to recover."""


@dataclass
class FileEntry:
    """State of one indexed file."""

    sha256: str
    size: int
    chunks: int = 0
    status: str = "pending"  # "pending" until its chunks are fully written, then "done"
    fingerprint: str = ""  # indexing settings it was chunked and embedded with ("" = unknown)


class Manifest:
    """Files -> entries, saved atomically as ``manifest.json`` in the store directory."""

    def __init__(self, path: Path, files: dict[str, FileEntry] | None = None) -> None:
        self.path = path
        self.files: dict[str, FileEntry] = files or {}

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read the manifest, or start empty if there is none yet."""
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')}")
            files = {k: FileEntry(**v) for k, v in data["files"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(
                f"{path} is unreadable ({exc}); delete the store directory and re-index"
            ) from None
        return cls(path, files)

    def save(self) -> None:
        """Write atomically: a crash keeps the previous manifest intact."""
        write_json_atomic(
            self.path,
            {"format": MANIFEST_FORMAT, "files": {k: asdict(v) for k, v in self.files.items()}},
        )

    def under(self, root: Path) -> list[str]:
        """Indexed sources equal to or inside ``root``."""
        r = str(root)
        return [k for k in self.files if k == r or k.startswith(r.rstrip("/") + "/")]

    def total_chunks(self) -> int:
        """Chunks of all completed files."""
        return sum(e.chunks for e in self.files.values() if e.status == "done")
