"""File helpers: atomic writes (a crash leaves the old file or the new one, never half) and hashes.

Every persisted artefact in ragkit (manifests, BM25 segments, converted models, KV caches,
eval summaries) goes through these helpers: write to a temp name in the same directory, fsync,
then ``os.replace`` into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Open a temp file beside ``path`` for binary writing; on success it replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Serialize ``obj`` as indented JSON and write it atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(Path(path), text.encode("utf-8"))


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, streamed so large files (model weights) never fill memory."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ids_sha256(ids: Any) -> str:
    """Stable hash of a token id sequence, for cache manifests."""
    import hashlib

    return hashlib.sha256(
        json.dumps([int(i) for i in ids], separators=(",", ":")).encode()
    ).hexdigest()


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a finished temp directory into place; an existing target is moved aside, then removed.

    If another process published the same target first, its copy wins and ours is dropped.
    """
    trash: Path | None = None
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(target, trash)
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
