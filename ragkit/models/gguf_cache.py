"""Convert a GGUF file once into a safetensors model directory and reuse it.

Loading a GGUF through transformers dequantizes every tensor (~35 s for SmolLM2 on 2 cores);
loading the converted safetensors takes about a second. The converted directory carries a
``manifest.json`` (format version, source size/mtime/sha256, transformers version, size, time
and sha256 of every written file) that is verified on reuse, so a corrupt or stale cache is
rebuilt instead of silently loaded: a file written to since the conversion is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ragkit.atomic import file_sha256
from ragkit.models.artifact import (
    MANIFEST_NAME,
    build_once,
    file_entry,
    file_problem,
    list_files,
    manifest_problem,
    read_manifest,
)
from ragkit.models.errors import ModelLoadError

__all__ = [
    "MANIFEST_NAME",
    "FORMAT_VERSION",
    "converted_dir_for",
    "default_cache_dir",
    "ensure_converted",
    "file_sha256",
    "read_manifest",
    "verify_converted",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$RAGKIT_CACHE``, else ``$XDG_CACHE_HOME/ragkit``, else ``~/.cache/ragkit``."""
    env = os.environ.get("RAGKIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ragkit"


def converted_dir_for(gguf_path: Path, cache_dir: Path | str | None = None) -> Path:
    """Cache directory for one GGUF file, keyed by its resolved path (content is in the manifest)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    resolved = Path(gguf_path).resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return root / "gguf" / f"{resolved.stem}-{key}"


def _source_info(gguf_path: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Path, size, mtime and sha256 of the source; the stored hash is reused when unchanged."""
    return {"path": str(gguf_path), **file_entry(gguf_path, previous)}


def verify_converted(directory: Path, gguf_path: Path, *, full: bool = True) -> str | None:
    """Check a converted directory against its manifest and source.

    Args:
        directory: The converted model directory.
        gguf_path: The GGUF it should have been converted from.
        full: Also hash every file written to since the conversion (~0.5 s per GB; see
            :func:`ragkit.models.artifact.file_problem`); otherwise sizes only.

    Returns:
        ``None`` when valid, else a short reason (for the rebuild warning).
    """
    import transformers

    manifest, problem = manifest_problem(directory, FORMAT_VERSION)
    if problem:
        return problem
    if manifest.get("transformers_version") != transformers.__version__:
        return (
            f"written by transformers {manifest.get('transformers_version')}, "
            f"running {transformers.__version__}"
        )
    stored = manifest.get("source") or {}
    source = _source_info(gguf_path, stored)
    if stored.get("size") != source["size"] or stored.get("sha256") != source["sha256"]:
        return "source GGUF changed"
    return file_problem(directory, manifest.get("files"), full=full)


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantize the GGUF with transformers and save model, tokenizer and config to ``out``.

    ``save_pretrained`` refuses GGUF-loaded models, so the model is rebuilt from its config
    (without the GGUF quantization entry) and the dequantized state dict, then saved once.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = ""
    state = loaded.state_dict()
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = rebuilt.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF file {gguf_path} converted with missing tensors {list(missing)[:5]} "
            f"or unexpected tensors {list(unexpected)[:5]}"
        )
    rebuilt.generation_config = loaded.generation_config
    del loaded, state
    rebuilt.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _write_manifest(out: Path, source: dict[str, Any]) -> None:
    import transformers

    manifest = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "transformers_version": transformers.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": list_files(out),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def ensure_converted(
    gguf_path: Path | str,
    cache_dir: Path | str | None = None,
    *,
    verify: bool = True,
) -> Path:
    """Return a verified safetensors directory for ``gguf_path``, converting it if needed.

    Args:
        gguf_path: The GGUF file.
        cache_dir: Cache root (default :func:`default_cache_dir`); tests pass a tmp dir.
        verify: On reuse, hash every cached file changed since the conversion (detects
            corruption); ``False`` checks sizes.

    Returns:
        The directory to pass to ``from_pretrained``.

    Raises:
        ModelLoadError: The GGUF is missing or fails to convert; the message names the file.
    """
    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    target = converted_dir_for(gguf_path, cache_dir)

    def convert(tmp: Path, previous: dict[str, Any] | None) -> None:
        source = _source_info(gguf_path, previous)
        _convert(gguf_path, tmp)
        _write_manifest(tmp, source)

    build_once(
        target,
        what="converted model cache",
        problem=lambda: verify_converted(target, gguf_path, full=verify),
        build=convert,
        failure=lambda exc: ModelLoadError(f"failed to convert GGUF file {gguf_path}: {exc}"),
    )
    return target
