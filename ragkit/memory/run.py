"""A store's global memory in one call each: what ``ragkit memory build|add|info|drop`` do.

Each call resolves the profile, opens the store (must exist: only indexing makes one), works on
its memory and releases the store, also on failure. :func:`add_to_memory` indexes through
:func:`ragkit.indexing.run.open_indexer`, the same run as :func:`ragkit.index_files`, and checks
that the memory exists before anything is indexed. Problems are
:class:`~ragkit.errors.RagkitError` subclasses carrying the CLI's message and exit status
(:class:`~ragkit.memory.backend.NoMemoryError` for a missing memory,
:class:`~ragkit.stores.store.StoreError` for a missing store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.config import profile_label, resolve_profile
from ragkit.errors import InvalidInputError
from ragkit.indexing.run import PathArg, ProfileArg

if TYPE_CHECKING:
    from ragkit.indexing.indexer import IndexReport
    from ragkit.memory.lm import MemoryLM

__all__ = [
    "MemoryAddResult",
    "add_to_memory",
    "build_store_memory",
    "drop_store_memory",
    "store_memory_info",
]


@dataclass
class MemoryAddResult:
    """What :func:`add_to_memory` did.

    Attributes:
        memory: The memory update: ``added``, ``changed`` and ``removed`` files, and the
            memory's summary (``windows``, ``tokens``, ``bytes``...).
        report: The indexing run's report.
    """

    memory: dict[str, Any]
    report: IndexReport

    @property
    def errors(self) -> list[str]:
        """One line per file that could not be indexed (the good files were indexed anyway)."""
        return self.report.errors

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ragkit memory add --json``): the memory update and what was indexed."""
        return {
            **self.memory,
            "indexed": {"new": self.report.added, "changed": self.report.updated},
        }


def _paths(paths: Sequence[PathArg] | PathArg) -> list[Path]:
    """Paths as a list; a single str or path is one path, not a sequence of characters."""
    if isinstance(paths, str | PathLike):
        return [Path(paths)]
    return [Path(p) for p in paths]


def build_store_memory(
    store: str | None = None,
    profile: ProfileArg = None,
    pipeline: str | PathLike[str] = "memorag",
    name: str = "default",
    *,
    kind: str | None = None,
    model: str | None = None,
    model_backend: str | None = None,
    n_ctx: int | None = None,
    window_tokens: int | None = None,
    n_threads: int | None = None,
    lm: MemoryLM | None = None,
) -> dict[str, Any]:
    """Memorize the whole store, replacing an older memory of the same name.

    The memory is built with the settings of the pipeline's ``MemoryRecall`` (after the
    profile's overrides), so ``ragkit query`` with the same pipeline and profile loads it.

    Args:
        store: Store directory; None: the profile's store. It must exist.
        profile: A :class:`~ragkit.config.Profile`, a profile name or YAML path; None: the
            default profile (``$RAGKIT_PROFILE``, else ``default``).
        pipeline: Memory pipeline whose ``MemoryRecall`` settings to use: a name in
            ``pipelines/`` or a YAML path.
        name: Memory name (several memories can share a store).
        kind: ``kv`` or ``gist``; None: the pipeline's.
        model: Memory model; None: the pipeline's.
        model_backend: ``llamacpp`` or ``transformers``; None: the pipeline's.
        n_ctx: Memory model context; None: the pipeline's.
        window_tokens: Corpus tokens per memory window; None: the pipeline's.
        n_threads: llama.cpp threads; None: the pipeline's.
        lm: An already loaded memory model to build with instead of loading the spec's
            (queries must then use the same model).

    Returns:
        The memory's summary (``kind``, ``windows``, ``tokens``, ``sources``, ``bytes``...),
        as ``ragkit memory build --json`` prints it.

    Raises:
        ConfigError: Unknown or invalid profile.
        PipelineNotFoundError: Unknown pipeline.
        PipelineError: The pipeline has no ``MemoryRecall`` component.
        StoreError: No ragkit store at ``store``.
        StoreInUseError: Another process holds the store.
        EmptyCorpusError: The store holds no text.
        GlobalMemoryError: The store has no directory (``:memory:`` or a server).
    """
    from ragkit.memory.components import memory_spec_for_pipeline
    from ragkit.memory.store import build_memory
    from ragkit.resources import find_pipeline_file
    from ragkit.stores.locate import open_store_at
    from ragkit.stores.store import release_store

    prof = resolve_profile(profile)
    spec = memory_spec_for_pipeline(
        find_pipeline_file(pipeline, "pipelines", "--pipeline"),
        prof.component_overrides(),
        name=name,
        kind=kind,
        model=model,
        model_backend=model_backend,
        n_ctx=n_ctx,
        window_tokens=window_tokens,
        n_threads=n_threads,
    )
    st = open_store_at(store, prof, must_exist=True)
    try:
        return build_memory(st, spec, lm)
    finally:
        release_store(st)


def add_to_memory(
    paths: Sequence[PathArg] | PathArg,
    store: str | None = None,
    profile: ProfileArg = None,
    name: str = "default",
    indexer: str | PathLike[str] = "default",
    *,
    lm: MemoryLM | None = None,
) -> MemoryAddResult:
    """Index ``paths`` and extend the memory with new and changed files only (no full re-read).

    Indexing is the run of :func:`ragkit.index_files` (files that cannot be read are reported
    in ``errors`` while the good ones are indexed). The memory must exist: without one the call
    fails before anything is indexed, so the store and the memory stay in step.

    Args:
        paths: Files or folders to index and memorize (one path or several).
        store: Store directory; None: the profile's store. It must exist.
        profile: As for :func:`build_store_memory`.
        name: The memory to extend.
        indexer: Indexing pipeline: a name in ``indexers/`` or a YAML path.
        lm: The memory model the memory was built with, already loaded; None: load the one
            its manifest names.

    Returns:
        The :class:`MemoryAddResult`; ``errors`` lists the files that were skipped.

    Raises:
        InvalidInputError: No paths given.
        NoMemoryError: The store has no memory ``name`` (nothing was indexed).
        CorruptMemoryError / MemoryMismatchError: The memory cannot be loaded with this model.
        ConfigError, PipelineNotFoundError, PipelineError, StoreError, StoreInUseError: As for
            :func:`ragkit.index_files`.
    """
    from ragkit.indexing.run import open_indexer
    from ragkit.memory.store import spec_from_manifest, update_memory
    from ragkit.pipeline import close_pipeline

    to_index = _paths(paths)
    if not to_index:
        raise InvalidInputError("give PATH... to index and memorize")
    prof = resolve_profile(profile)
    with open_indexer(
        store, prof, indexer, overrides_from=profile_label(prof), must_exist=True
    ) as idx:
        spec = spec_from_manifest(idx.store, name)  # no memory: fail before indexing anything
        report = idx.index(to_index)
        close_pipeline(idx.pipeline)  # free the indexing models before the memory model loads
        memory = update_memory(idx.store, spec, lm)
    return MemoryAddResult(memory, report)


def store_memory_info(
    store: str | None = None, profile: ProfileArg = None, name: str = "default"
) -> dict[str, Any]:
    """A memory's model, size and windows, and whether the store changed since (stale).

    Reads the manifest only (no model is loaded); the store is opened read-only.

    Args:
        store: Store directory; None: the profile's store. It must exist.
        profile: As for :func:`build_store_memory`.
        name: The memory to describe.

    Returns:
        What ``ragkit memory info --json`` prints: ``directory``, ``kind``, ``model``,
        ``windows``, ``tokens``, ``sources``, ``bytes``, ``stale``, ``changes`` and ``fix``
        (the command that brings a stale memory up to date, else None)...

    Raises:
        NoMemoryError: The store has no memory ``name``.
        CorruptMemoryError: Its manifest is unreadable.
        ConfigError, StoreError, StoreInUseError: As for :func:`build_store_memory`.
    """
    from ragkit.memory.store import memory_info
    from ragkit.stores.locate import open_store_at
    from ragkit.stores.store import release_store

    st = open_store_at(store, resolve_profile(profile), must_exist=True, read_only=True)
    try:
        return memory_info(st, name)
    finally:
        release_store(st)


def drop_store_memory(
    store: str | None = None, profile: ProfileArg = None, name: str = "default"
) -> dict[str, str]:
    """Delete a memory; the store itself is untouched.

    Args:
        store: Store directory; None: the profile's store. It must exist.
        profile: As for :func:`build_store_memory`.
        name: The memory to delete.

    Returns:
        ``name``, the ``store`` directory and the deleted memory ``directory``.

    Raises:
        NoMemoryError: The store has no memory ``name`` (exit status 1).
        ConfigError, StoreError, StoreInUseError: As for :func:`build_store_memory`.
    """
    from ragkit.memory.backend import NoMemoryError
    from ragkit.memory.store import drop_memory, memory_dir
    from ragkit.stores.locate import open_store_at
    from ragkit.stores.store import release_store

    st = open_store_at(store, resolve_profile(profile), must_exist=True)
    try:
        directory = memory_dir(st, name)
        dropped = drop_memory(st, name)
    finally:
        release_store(st)
    if not dropped:
        raise NoMemoryError(f"store {st.directory} has no memory {name!r}")
    return {"name": name, "store": str(st.directory), "directory": str(directory)}
