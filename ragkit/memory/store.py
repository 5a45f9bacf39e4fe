"""Memory lifecycle beside a store: build, extend, inspect, drop, and detect staleness.

A store's memory lives in ``<store dir>/memory/<name>/``. Its manifest records the store's
corpus hash, derived from the indexing manifest (one content sha256 per indexed file), so a
``ragkit index`` that changes the store makes the memory stale: it is then reported with the
command that fixes it and never used silently. ``ragkit index`` itself never touches the memory.

Stores without a directory (the in-memory stores ``ragkit eval --mode per-question`` builds for
each question) get their memory from a cache keyed by the content hash of their chunks, the
memory model and the settings, so re-running an evaluation re-reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragkit.documents import document_position
from ragkit.memory.backend import (
    GlobalMemoryError,
    MemorySettings,
    MemoryUnit,
    NoMemoryError,
    StaleMemoryError,
    read_manifest,
)
from ragkit.memory.loader import load_memory, new_memory
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

if TYPE_CHECKING:
    from ragkit.memory.kv import WindowedMemory
    from ragkit.memory.lm import MemoryLM
    from ragkit.stores.store import RagkitStore

__all__ = [
    "MemorySpec",
    "build_memory",
    "cached_memory",
    "corpus_hash",
    "corpus_units",
    "drop_memory",
    "memory_dir",
    "memory_info",
    "new_memory",
    "open_memory",
    "source_hashes",
    "spec_from_manifest",
    "update_memory",
]


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Memory names: one path component under ``<store>/memory/``, never ``.``, ``..`` or a path."""


class MemorySpec(BaseModel):
    """Which memory to use and how to build it (shared by the CLI and ``MemoryRecall``).

    Attributes:
        name: Memory name under ``<store>/memory/``.
        model: Memory model (packaged name or path).
        model_backend: ``llamacpp`` or ``transformers``.
        n_ctx: llama.cpp context to allocate; bounds the window size.
        n_threads: llama.cpp threads (``None``: its own choice).
        settings: Backend kind and sizes.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", pattern=NAME_PATTERN)
    model: str = DEFAULT_CAUSAL_MODEL
    model_backend: str = "llamacpp"
    n_ctx: int = Field(default=8192, ge=256)
    n_threads: int | None = None
    settings: MemorySettings = Field(default_factory=MemorySettings)

    def load_lm(self) -> MemoryLM:
        """Load the memory model this spec names."""
        from ragkit.memory.lm import load_memory_lm

        return load_memory_lm(self.model, self.model_backend, self.n_ctx, self.n_threads)


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def corpus_units(store: RagkitStore) -> list[MemoryUnit]:
    """Every chunk of the store, in corpus order (file, then position in the file)."""
    docs = sorted(store.qdrant.filter_documents(), key=document_position)
    return [
        MemoryUnit(str(d.id), str((d.meta or {}).get("source", "")), d.content or "")
        for d in docs
        if (d.content or "").strip()
    ]


def source_hashes(store: RagkitStore, units: list[MemoryUnit] | None = None) -> dict[str, str]:
    """Content hash per source file: from the indexing manifest, else from the chunks."""
    from ragkit.indexing.manifest import Manifest

    if store.directory is not None and (store.directory / "manifest.json").exists():
        man = Manifest.load(store.directory / "manifest.json")
        return {
            src: (e.sha256 if e.status == "done" else f"pending:{e.sha256}")
            for src, e in man.files.items()
        }
    grouped: dict[str, list[list[str]]] = {}
    for u in units if units is not None else corpus_units(store):
        grouped.setdefault(u.source, []).append(
            [u.key, hashlib.sha256(u.text.encode()).hexdigest()]
        )
    return {src: _sha(sorted(items)) for src, items in grouped.items()}


def corpus_hash(sources: dict[str, str]) -> str:
    """One hash for the whole corpus from its per-source hashes."""
    return _sha(sorted(sources.items()))[:32]


def memory_dir(store: RagkitStore, name: str = "default") -> Path:
    """Where the store's memory ``name`` lives.

    Raises:
        InvalidInputError: ``name`` is not a plain name (``..`` would point at the store itself).
        GlobalMemoryError: The store has no directory.
    """
    if not re.fullmatch(NAME_PATTERN, name):
        from ragkit.errors import InvalidInputError

        raise InvalidInputError(
            f"invalid memory name {name!r}: use letters, digits, '_', '.' and '-', starting "
            "with a letter or digit"
        )
    if store.directory is None:
        raise GlobalMemoryError(
            "an in-memory store has no directory to keep a memory in; use an embedded store "
            "(--store DIR)"
        )
    return store.directory / "memory" / name


def _store_label(store: RagkitStore) -> str:
    return str(store.directory) if store.directory is not None else ":memory:"


def rebuild_command(store: RagkitStore, spec: MemorySpec) -> str:
    """The CLI command that (re)builds this memory."""
    parts = [f"ragkit memory build --store {_store_label(store)}"]
    if spec.name != "default":
        parts.append(f"--name {spec.name}")
    parts.append(f"--model {spec.model} --backend {spec.settings.kind}")
    return " ".join(parts)


def gist_cache_dir() -> Path:
    """Where gists are kept by content hash (``$RAGKIT_CACHE/memory/gists``)."""
    return _cache_root() / "gists"


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _summary(memory: WindowedMemory, directory: Path) -> dict[str, Any]:
    return {
        "directory": str(directory),
        "kind": memory.kind,
        "model": memory.lm.name,
        "windows": len(memory.windows),
        "tokens": memory.num_tokens,
        "units": sum(len(w.units) for w in memory.windows),
        "sources": len(memory.sources),
        "build_seconds": round(memory.build_seconds, 3),
        "llm_calls": memory.llm_calls,
        "bytes": _size(directory),
    }


def build_memory(
    store: RagkitStore, spec: MemorySpec, lm: MemoryLM | None = None
) -> dict[str, Any]:
    """Memorize the whole store and save the memory beside it (replacing an older one).

    Raises:
        EmptyCorpusError: The store holds no text.
    """
    lm = lm or spec.load_lm()
    units = corpus_units(store)
    sources = source_hashes(store, units)
    memory = new_memory(lm, spec.settings, gist_cache=gist_cache_dir())
    memory.memorize(units)
    target = memory_dir(store, spec.name)
    memory.save(
        target,
        {
            "corpus_hash": corpus_hash(sources),
            "sources": sources,
            "store": _store_label(store),
            "spec": spec.model_dump(),
        },
    )
    return _summary(memory, target)


def _diff(built: dict[str, str], now: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    added = sorted(s for s in now if s not in built)
    changed = sorted(s for s in now if s in built and built[s] != now[s])
    removed = sorted(s for s in built if s not in now)
    return added, changed, removed


def open_memory(
    store: RagkitStore, spec: MemorySpec, lm: MemoryLM, *, auto_build: bool = False
) -> WindowedMemory:
    """The store's memory, checked against the model and the store's current corpus.

    In-memory stores use :func:`cached_memory`.

    Raises:
        NoMemoryError: None built (unless ``auto_build``).
        StaleMemoryError: The store changed since; the message lists what and the fix.
        MemoryMismatchError / CorruptMemoryError: See :func:`ragkit.memory.loader.load_memory`.
    """
    if store.directory is None:
        return cached_memory(corpus_units(store), spec, lm)
    directory = memory_dir(store, spec.name)
    rebuild = rebuild_command(store, spec)
    if not (directory / "manifest.json").exists():
        if auto_build:
            build_memory(store, spec, lm)
        else:
            raise NoMemoryError(
                f"store {store.directory} has no memory {spec.name!r}; run: {rebuild}"
            )
    memory = load_memory(directory, lm, rebuild=rebuild)
    now = source_hashes(store)
    if memory.meta.get("corpus_hash") != corpus_hash(now):
        added, changed, removed = _diff(memory.meta.get("sources") or {}, now)
        raise StaleMemoryError(
            f"memory {spec.name!r} of store {store.directory} is stale: the store changed since "
            f"it was built ({len(added)} files added, {len(changed)} changed, {len(removed)} "
            f"removed); run `ragkit memory add PATH --store {store.directory}` for the new "
            f"files, or: {rebuild}"
        )
    if memory.settings.kind != spec.settings.kind:
        from ragkit.memory.backend import MemoryMismatchError

        raise MemoryMismatchError(
            f"memory at {directory} is a {memory.settings.kind!r} memory, the pipeline asks for "
            f"{spec.settings.kind!r}; rebuild it: {rebuild}"
        )
    return memory


def update_memory(
    store: RagkitStore, spec: MemorySpec, lm: MemoryLM | None = None
) -> dict[str, Any]:
    """Bring the memory up to date with the store, reading only new and changed files.

    Returns:
        Counts of added, changed and removed files, and the memory summary.
    """
    directory = memory_dir(store, spec.name)
    rebuild = rebuild_command(store, spec)
    if not (directory / "manifest.json").exists():
        raise NoMemoryError(f"store {store.directory} has no memory {spec.name!r}; run: {rebuild}")
    lm = lm or spec.load_lm()
    memory = load_memory(directory, lm, rebuild=rebuild)
    memory.build_seconds = 0.0
    if hasattr(memory, "gist_cache"):
        memory.gist_cache = gist_cache_dir()
    units = corpus_units(store)
    now = source_hashes(store, units)
    added, changed, removed = _diff(memory.meta.get("sources") or {}, now)
    if changed or removed:
        memory.remove_sources([*changed, *removed])
    fresh = set(added) | set(changed)
    memory.add([u for u in units if u.source in fresh])
    if not memory.windows:
        from ragkit.memory.backend import EmptyCorpusError

        raise EmptyCorpusError(f"store {store.directory} is empty: nothing left to memorize")
    memory.save(
        directory,
        {
            "corpus_hash": corpus_hash(now),
            "sources": now,
            "store": _store_label(store),
            "spec": spec.model_dump(),
        },
    )
    return {
        "added": len(added),
        "changed": len(changed),
        "removed": len(removed),
        **_summary(memory, directory),
    }


def spec_from_manifest(store: RagkitStore, name: str = "default") -> MemorySpec:
    """The spec a saved memory was built with (so ``memory add`` extends it the same way).

    Raises:
        NoMemoryError: No memory ``name`` in this store.
        CorruptMemoryError: The manifest is unreadable or has no valid spec.
    """
    from ragkit.memory.backend import CorruptMemoryError

    directory = memory_dir(store, name)
    if not (directory / "manifest.json").exists():
        raise NoMemoryError(
            f"store {store.directory} has no memory {name!r}; run: ragkit memory build "
            f"--store {store.directory}" + (f" --name {name}" if name != "default" else "")
        )
    manifest = read_manifest(directory)
    try:
        return MemorySpec(**manifest["spec"])
    except Exception as exc:  # noqa: BLE001 - pydantic/key errors: an altered manifest
        raise CorruptMemoryError(
            f"memory at {directory} has no valid spec ({exc}); rebuild it"
        ) from None


def memory_info(store: RagkitStore, name: str = "default") -> dict[str, Any]:
    """What the manifest says, the size on disk, and whether the memory is stale (no model load)."""
    spec = spec_from_manifest(store, name)
    directory = memory_dir(store, name)
    manifest = read_manifest(directory)
    now = source_hashes(store)
    added, changed, removed = _diff(manifest.get("sources") or {}, now)
    stale = manifest.get("corpus_hash") != corpus_hash(now)
    return {
        "directory": str(directory),
        "kind": manifest.get("kind"),
        "model": (manifest.get("model") or {}).get("model"),
        "model_backend": (manifest.get("model") or {}).get("backend"),
        "model_sha256": (manifest.get("model") or {}).get("sha256"),
        "windows": len(manifest.get("windows") or []),
        "tokens": manifest.get("num_tokens"),
        "sources": len(manifest.get("sources") or {}),
        "corpus_hash": manifest.get("corpus_hash"),
        "created_at": manifest.get("created_at"),
        "build_seconds": manifest.get("build_seconds"),
        "bytes": _size(directory),
        "stale": stale,
        "changes": {"added": len(added), "changed": len(changed), "removed": len(removed)},
        "fix": (
            f"ragkit memory add PATH --store {store.directory} (the new or changed files), or: "
            f"{rebuild_command(store, spec)}"
            if stale
            else None
        ),
    }


def drop_memory(store: RagkitStore, name: str = "default") -> bool:
    """Delete the memory ``name``; False when there was none."""
    directory = memory_dir(store, name)
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True


def _cache_root() -> Path:
    from ragkit.models.gguf_cache import default_cache_dir

    return default_cache_dir() / "memory"


def cached_memory(
    units: list[MemoryUnit],
    spec: MemorySpec,
    lm: MemoryLM,
    cache_root: Path | None = None,
    on_build: Callable[[WindowedMemory], None] | None = None,
) -> WindowedMemory:
    """The memory of a small corpus (one question's paragraphs), from a content-hash cache.

    The key covers the chunks (ids and text), the model identity and the settings, so a cached
    memory is reused only for exactly the same corpus read by the same model the same way.
    """
    from ragkit.memory.backend import CorruptMemoryError

    sources = {
        "corpus": _sha(
            [[u.key, u.source, hashlib.sha256(u.text.encode()).hexdigest()] for u in units]
        )
    }
    key = _sha({"corpus": sources, "model": lm.identity(), "settings": spec.settings.model_dump()})[
        :24
    ]
    directory = (cache_root or _cache_root()) / key
    if (directory / "manifest.json").exists():
        try:
            return load_memory(directory, lm, rebuild="(cache entry; it is rebuilt automatically)")
        except CorruptMemoryError:
            shutil.rmtree(directory, ignore_errors=True)  # a cache entry is disposable
    memory = new_memory(lm, spec.settings, gist_cache=gist_cache_dir())
    memory.memorize(units)
    memory.save(
        directory,
        {
            "corpus_hash": corpus_hash(sources),
            "sources": sources,
            "store": ":memory:",
            "spec": spec.model_dump(),
        },
    )
    if on_build is not None:
        on_build(memory)
    return memory
