"""Verified artifact directories: files plus a manifest of their sizes and sha256, published atomically.

Prefix caches (transformers KV tensors, llama.cpp context states) and converted GGUF models are
expensive to build and dangerous to misuse, so each is a directory holding its files and a
``manifest.json`` (format version, owner identity, ``files: {name: {size, sha256}}``). This
module writes such a directory into a temp dir and renames it into place, and reads one back,
checking the manifest and every file before anything is trusted; :func:`build_once` builds a
cached one under a file lock. The callers add only what is specific to them (which model owns
it, what the files contain).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragkit.atomic import file_sha256, publish_dir

__all__ = [
    "MANIFEST_NAME",
    "build_once",
    "file_entry",
    "file_problem",
    "list_files",
    "unchanged_since",
    "manifest_problem",
    "read_manifest",
    "read_verified",
    "write_verified",
]

MANIFEST_NAME = "manifest.json"

logger = logging.getLogger(__name__)

Writer = Callable[[Path], None]
"""Writes one file at the path it is given."""


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of an artifact directory, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_problem(directory: Path, format_version: int) -> tuple[dict[str, Any], str | None]:
    """An artifact directory's manifest, and what makes it unusable before any source check.

    Every cache (converted GGUFs, ONNX exports) starts its check the same way: the directory,
    a readable manifest, the format its reader understands. Returns the manifest (empty when
    none) and ``None``, or a short reason (for the rebuild warning).
    """
    if not directory.is_dir():
        return {}, "missing"
    manifest = read_manifest(directory)
    if manifest is None:
        return {}, "manifest missing or unreadable"
    if manifest.get("format_version") != format_version:
        return manifest, f"format version {manifest.get('format_version')} != {format_version}"
    return manifest, None


def unchanged_since(meta: Mapping[str, Any], stat: os.stat_result) -> bool:
    """Whether a file is the one an entry ``{size, mtime_ns, sha256}`` recorded when it was hashed.

    Nothing has written to it since: a write, a truncation or a replacement changes its time.
    Its recorded hash can then be trusted without reading the file again (~0.5 s per GB).
    """
    return (
        meta.get("size") == stat.st_size
        and meta.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(meta.get("sha256"), str)
    )


def file_entry(path: Path, previous: Any = None) -> dict[str, Any]:
    """``{size, mtime_ns, sha256}`` of a file; ``previous``'s hash is reused when unchanged."""
    stat = path.stat()
    entry: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if isinstance(previous, Mapping) and unchanged_since(previous, stat):
        entry["sha256"] = previous["sha256"]
    else:
        entry["sha256"] = file_sha256(path)
    return entry


def file_problem(directory: Path, files: Any, *, full: bool = True) -> str | None:
    """Check the files a manifest lists; ``None`` when all match, else a short reason.

    A file whose size and modification time are the ones the manifest recorded when it hashed
    the file is not hashed again: nothing has written to it since (a write, a truncation or a
    replacement changes its time). Rehashing on every load cost ~1 s per load for SmolLM2's
    540 MB of converted weights and grows with the model; the assembled GGUF files of
    :mod:`ragkit.models.chunked_gguf` are trusted the same way. Manifests written before the
    time was recorded get every file hashed.

    Args:
        directory: The artifact directory.
        files: The manifest's ``files`` mapping ``{name: {"size", "sha256", "mtime_ns"}}``.
        full: Also hash each file changed since it was listed (otherwise sizes only).
    """
    if not isinstance(files, dict) or not files:
        return "manifest lists no files"
    for name, meta in files.items():
        path = directory / name
        meta = meta if isinstance(meta, dict) else {}
        try:
            stat = path.stat()
        except OSError:
            return f"{name} missing"
        if stat.st_size != meta.get("size"):
            return f"{name} has the wrong size"
        if full and not unchanged_since(meta, stat) and file_sha256(path) != meta.get("sha256"):
            return f"{name} checksum mismatch"
    return None


def list_files(
    directory: Path, *, recursive: bool = False, hash_limit: int | None = None
) -> dict[str, dict[str, Any]]:
    """``{name: {size, sha256, mtime_ns}}`` of the regular files in ``directory`` (no manifest).

    Args:
        directory: The artifact directory.
        recursive: Also list files in subdirectories, named by their relative path (a memory
            keeps one state directory per window).
        hash_limit: Files of this size or more get no ``sha256``: they are state blobs that carry
            their own checksum, and hashing gigabytes twice would double a save.
    """
    paths = directory.rglob("*") if recursive else directory.iterdir()
    listed: dict[str, dict[str, Any]] = {}
    for path in sorted(paths):
        if not path.is_file() or path == directory / MANIFEST_NAME:
            continue
        size = path.stat().st_size
        entry = file_entry(path) if hash_limit is None or size < hash_limit else {"size": size}
        listed[str(path.relative_to(directory))] = entry
    return listed


def write_verified(
    target: str | Path,
    files: Mapping[str, bytes | Writer],
    manifest: Mapping[str, Any],
    *,
    recursive: bool = False,
    hash_limit: int | None = None,
) -> Path:
    """Write ``files`` and a manifest listing their sizes and sha256 into ``target`` atomically.

    The directory is built under a temp name beside ``target`` and renamed into place, so a
    reader sees the old artifact or the complete new one, never a partial one.

    Args:
        target: The artifact directory to create or replace.
        files: File name -> its bytes, or a function that writes it at a given path.
        manifest: The caller's manifest fields (``files`` is added here).
        recursive: A writer may create a directory; list the files inside it too.
        hash_limit: See :func:`list_files`.

    Returns:
        ``target`` as a ``Path``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                content(tmp / name)
        data = {
            **manifest,
            "files": list_files(tmp, recursive=recursive, hash_limit=hash_limit),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(data, indent=1), encoding="utf-8")
        publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_verified(
    directory: str | Path,
    *,
    what: str,
    format_version: int,
    error: type[Exception],
    rebuild: str,
    expect: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read and check an artifact's manifest and files; raise ``error`` on any mismatch.

    Args:
        directory: The artifact directory.
        what: What it is, for messages (``"prefix cache"``).
        format_version: The only ``format_version`` accepted.
        error: Exception class raised with a one-line message.
        rebuild: The fix, appended to version messages (``"rebuild it with prefill()"``).
        expect: Manifest fields that must have exactly these values (checked before the
            files are hashed); the caller checks richer conditions itself afterwards.

    Returns:
        The manifest.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    if manifest is None:
        raise error(f"{what} {root} is missing or corrupt: no readable {MANIFEST_NAME}")
    version = manifest.get("format_version")
    if version != format_version:
        raise error(
            f"{what} {root} has format version {version}, expected {format_version}; {rebuild}"
        )
    for key, value in (expect or {}).items():
        if manifest.get(key) != value:
            raise error(
                f"{what} {root} has {key} {manifest.get(key)!r}, expected {value!r}; {rebuild}"
            )
    problem = file_problem(root, manifest.get("files"))
    if problem is not None:
        raise error(f"{what} {root} is corrupt: {problem} (checksum check)")
    return manifest


def build_once(
    target: Path,
    *,
    what: str,
    problem: Callable[[], str | None],
    build: Callable[[Path, dict[str, Any] | None], None],
    failure: Callable[[Exception], Exception],
) -> bool:
    """Reuse a valid cached artifact directory, or build it once under a file lock.

    Two processes that first need the artifact at the same time (a server and an eval) build it
    once: the second waits on the lock, then finds the first one's result. A stale or corrupt
    directory is rebuilt with a warning; temp dirs left by a killed build are removed.

    Args:
        target: The artifact directory.
        what: Its name in the rebuild warning (``"converted model cache"``).
        problem: Checks the existing ``target``: ``None`` when valid, else a short reason.
        build: Writes the artifact (files and manifest) into the temp dir it is given; gets the
            old manifest's ``source`` entry (``None`` if there was none) to reuse its hashes.
        failure: Turns an exception of ``build`` into the error raised (a
            :class:`~ragkit.models.errors.ModelLoadError` passes through as it is).

    Returns:
        Whether it was built (``False``: the cached one was valid); a build is logged with its
        time.
    """
    from filelock import FileLock

    from ragkit.models.errors import ModelLoadError

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        if target.exists():
            reason = problem()
            if reason is None:
                return False
            message = f"{what} {target} is invalid ({reason}); rebuilding"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build; we hold the lock
        previous = (read_manifest(target) or {}).get("source") if target.exists() else None
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        started = time.perf_counter()
        try:
            build(tmp, previous)
        except ModelLoadError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise failure(exc) from exc
        except BaseException:  # interrupted: leave nothing half-written behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish_dir(tmp, target)
    logger.info("built %s %s in %.1f s", what, target, time.perf_counter() - started)
    return True
