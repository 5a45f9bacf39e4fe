"""Index, delete, repair and inspect a store in one call: ``ragkit index``, ``repair``, ``stats``.

Each call loads the profile and the indexing pipeline, measures the embedder before the store
is touched (a bad model name fails with nothing written), opens and locks the store, runs the
:class:`~ragkit.indexing.indexer.Indexer`, and releases everything, also on failure. The CLI is
a thin shell over these functions, so a script or notebook gets the same behaviour and the same
one-line errors (:class:`~ragkit.errors.RagkitError` subclasses with the CLI's exit status).
:func:`open_indexer` is the shared first half of those runs, for callers that index and then do
more with the same locked store (``ragkit memory add``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.config import Profile, profile_label, resolve_profile, store_from_location
from ragkit.errors import InvalidInputError
from ragkit.models.registry import model_files

if TYPE_CHECKING:
    from haystack import Pipeline

    from ragkit.indexing.indexer import BatchProducer, Indexer, IndexReport
    from ragkit.scale.cluster import RayOptions
    from ragkit.stores.store import RagkitStore

__all__ = [
    "IndexResult",
    "RepairResult",
    "StoreStats",
    "delete_files",
    "index_files",
    "indexing_embedding_dim",
    "inspect_store",
    "open_indexer",
    "repair_store",
]

PathArg = str | PathLike[str]
ProfileArg = str | Path | Profile | None


@dataclass
class IndexResult:
    """What :func:`index_files` did.

    Attributes:
        report: The indexing run's report; None when the call only deleted files.
        deleted: Files removed because ``delete`` named them (files that vanished from an
            indexed folder are counted in ``report.removed``).
        unmatched_deletes: The ``delete`` paths (as given) with no indexed file at or under
            them: most likely a typo, so they are reported in ``warnings``.
    """

    report: IndexReport | None
    deleted: int = 0
    unmatched_deletes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """One line per ``delete`` path that matched no indexed file (nothing removed there)."""
        return [
            f"--delete {path}: no indexed file is at or under it; nothing removed there"
            for path in self.unmatched_deletes
        ]

    @property
    def deleted_files(self) -> int:
        """All files removed from the index: the ones named in ``delete`` and vanished ones."""
        return self.deleted + (self.report.removed if self.report else 0)

    @property
    def errors(self) -> list[str]:
        """One line per file that could not be indexed (the good files were indexed anyway)."""
        return self.report.errors if self.report else []

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ragkit index --json``)."""
        out = self.report.as_dict() if self.report else {"chunks_total": None, "errors": []}
        out["deleted_files"] = self.deleted_files
        out["unmatched_deletes"] = self.unmatched_deletes
        return out


@dataclass
class RepairResult:
    """What :func:`repair_store` did, and what the full integrity check still finds.

    Attributes:
        report: The repair run's report (``updated``: files re-indexed; ``removed``: files
            dropped because they are gone from disk).
        problems_left: One line per disagreement between the store's halves after the repair.
        warnings: ``problems_left`` as user-facing lines that name the repair command.
        rebuilt: One line per damaged metadata file (``store.json``, Qdrant's ``meta.json``)
            rebuilt from the store's intact data before the repair.
    """

    report: IndexReport
    problems_left: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every file was repaired and the store is now consistent."""
        return not self.report.errors and not self.problems_left

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ragkit repair --json``)."""
        return {
            **self.report.as_dict(),
            "problems_left": self.problems_left,
            "rebuilt": self.rebuilt,
        }


@dataclass
class StoreStats:
    """What :func:`inspect_store` found.

    Attributes:
        info: The store's counts, files and integrity verdict (``ragkit stats --json``).
        problems: One line per disagreement between the store's halves (quick check).
        warnings: ``problems`` as user-facing lines that name the repair command.
    """

    info: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _paths(paths: Sequence[PathArg] | PathArg | None) -> list[Path]:
    """Paths as a list; a single str or path is one path, not a sequence of characters."""
    if paths is None:
        return []
    if isinstance(paths, str | PathLike):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _refuse_memory_store(store: str | None, prof: Profile) -> None:
    """Indexing into ``:memory:`` would throw the work away when the call returns."""
    from ragkit.config import MemoryStore

    if isinstance(store_from_location(store, prof), MemoryStore):
        raise InvalidInputError(
            "cannot index into a ':memory:' store (from --store or the profile): it is discarded "
            "when the command ends; give a store directory or a Qdrant URL with --store"
        )


def indexing_embedding_dim(
    store: str | None, profile: Profile, pipe: Pipeline, model: str
) -> int | None:
    """The indexing embedder's dimension: the store's record if it has this model, else measured.

    Measuring loads the model, so a bad model name fails here, before anything is written.
    """
    from ragkit.indexing.settings import probe_embedding_dim
    from ragkit.stores.store import recorded_embedding

    recorded = recorded_embedding(store_from_location(store, profile))
    if recorded is not None and recorded[0] == model:
        return recorded[1]
    return probe_embedding_dim(pipe)


def check_indexing_pipeline(pipe: Pipeline, source: PathArg) -> None:
    """Refuse a pipeline that cannot index (e.g. a query pipeline) before the store is touched.

    The :class:`~ragkit.indexing.indexer.Indexer` feeds file paths to an open ``sources`` input
    and reads what was written from a store writer's ``chunks_by_source`` output; a pipeline
    without both would mark files pending and then fail half-way.

    Raises:
        PipelineError: One line naming the file and what is missing.
    """
    from ragkit.pipeline import PipelineError

    inputs = pipe.inputs()
    takes_sources = any("sources" in sockets for sockets in inputs.values())
    other = sorted(
        f"{name}.{socket}"
        for name, sockets in inputs.items()
        for socket, info in sockets.items()
        if socket != "sources" and info.get("is_mandatory")
    )
    writes = any(
        "chunks_by_source" in pipe.graph.nodes[name].get("output_sockets", {})
        for name in pipe.graph.nodes
    )
    missing = []
    if not takes_sources:
        missing.append("an open 'sources' input (a file loader)")
    if not writes:
        missing.append("a store writer (ragkit.indexing.writer.StoreWriter)")
    if other:
        missing.append(
            f"nothing but 'sources' as required input (it also needs {', '.join(other)})"
        )
    if missing:
        raise PipelineError(
            [
                f"{source}: not an indexing pipeline: it needs {'; '.join(missing)}; is it a "
                "query pipeline? give an indexer from indexers/ (e.g. --indexer default)"
            ]
        )


def _refuse_nothing_to_index(paths: list[Path], store: str | None, prof: Profile) -> None:
    """Fail before the store is opened when no path exists, or nothing is there for a new store.

    A run that cannot index anything must not leave an empty store behind.
    """
    from ragkit.config import EmbeddedStore
    from ragkit.indexing.indexer import IndexReport, discover

    report = IndexReport()
    files, roots = discover(paths, report)
    if files:
        return
    cfg = store_from_location(store, prof)
    new_store = (
        isinstance(cfg, EmbeddedStore) and not (Path(cfg.path).expanduser() / "store.json").exists()
    )
    if roots and not new_store:
        return  # an indexed folder may have emptied: the run removes its files' chunks
    reasons = "; ".join(report.errors[:3]) or "no supported files"
    hint = " (to remove indexed files, use --delete PATH)" if not roots else ""
    raise InvalidInputError(f"nothing to index: {reasons}; no store was written{hint}")


@contextlib.contextmanager
def open_indexer(
    store: str | None,
    profile: Profile,
    indexer: str | PathLike[str] = "default",
    *,
    overrides_from: str | None = None,
    measure: bool = True,
    must_exist: bool = False,
    progress: bool = False,
    rebuilt: list[str] | None = None,
    producer: Callable[[Pipeline], BatchProducer] | None = None,
    batch_files: int = 256,
) -> Iterator[Indexer]:
    """An :class:`Indexer` over the opened, locked store; the pipeline is closed after success.

    Everything that can fail on bad input (pipeline YAML, embedding model) fails before the
    store is opened, so a bad call leaves the store untouched. The store is always released.
    The indexer's ``store`` stays open for the whole ``with`` block, so a caller can check the
    store before indexing or do more with it after (``ragkit memory add`` does both).

    Args:
        store: Store location (``--store``); None: the profile's store.
        profile: The loaded profile (its indexing overrides and batch size apply).
        indexer: Indexing pipeline: a name in ``indexers/`` or a YAML path.
        overrides_from: How errors in the profile's overrides name the profile.
        measure: Measure the embedder (loading it) before opening the store; False only when
            nothing will be embedded (deletions).
        must_exist: Refuse a store that was never indexed instead of creating it.
        progress: Show a progress bar on stderr.
        rebuilt: A list to rebuild damaged store metadata into (``ragkit repair``): a lost or
            corrupt ``store.json`` or Qdrant ``meta.json`` is rebuilt from the intact data
            before the store is opened, and one line per rebuilt file is appended.
        producer: Makes the batch producer that loads, splits and embeds elsewhere (Ray) from
            the store-bound pipeline; None runs the whole pipeline in this process.
        batch_files: At most this many files per durable batch.

    Raises:
        PipelineNotFoundError, PipelineError, StoreError, StoreInUseError: As for
            :func:`index_files`.
    """
    from ragkit.indexing.indexer import Indexer
    from ragkit.indexing.settings import settle_embedding_model
    from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
    from ragkit.resources import find_pipeline_file
    from ragkit.stores.locate import open_store_at
    from ragkit.stores.store import release_store

    pipe_file = find_pipeline_file(indexer, "indexers", "indexer")
    pipe = load_pipeline(
        pipe_file,
        overrides=profile.indexing_overrides(),
        overrides_from=overrides_from or profile_label(profile),
        override_origins=profile.indexing_override_origins(),
    )
    check_indexing_pipeline(pipe, pipe_file)
    # the model that actually embeds, loaded and measured before the store is touched
    model = settle_embedding_model(pipe, store_from_location(store, profile))
    dim = indexing_embedding_dim(store, profile, pipe, model) if measure else None
    if rebuilt is not None:
        rebuilt.extend(_rebuild_metadata(store, profile, pipe, model, dim))
    st = open_store_at(
        store,
        profile,
        must_exist=must_exist,
        embedding_model=model,
        embedding_dim=dim,
        model_files=model_files,
    )
    try:
        bind_store(pipe, st)
        yield Indexer(
            st,
            pipe,
            batch_bytes=profile.indexing.batch_bytes,
            progress=progress,
            producer=producer(pipe) if producer is not None else None,
            batch_files=batch_files,
        )
        close_pipeline(pipe)
    finally:
        release_store(st)


def _rebuild_metadata(
    store: str | None, profile: Profile, pipe: Pipeline, model: str, dim: int | None
) -> list[str]:
    """Rebuild a damaged embedded store's metadata with what the indexing pipeline embeds."""
    from ragkit.config import EmbeddedStore
    from ragkit.indexing.settings import embed_document
    from ragkit.stores.damage import rebuild_metadata

    cfg = store_from_location(store, profile)
    if not isinstance(cfg, EmbeddedStore):
        return []
    return rebuild_metadata(
        cfg,
        embedding_model=model,
        embedding_dim=dim,
        embed=lambda doc: embed_document(pipe, doc),
    )


def index_files(
    paths: Sequence[PathArg] | PathArg | None,
    *,
    delete: Sequence[PathArg] | PathArg | None = None,
    store: str | None = None,
    profile: ProfileArg = None,
    indexer: str | PathLike[str] = "default",
    progress: bool = False,
    ray: RayOptions | None = None,
) -> IndexResult:
    """Index files and folders incrementally into a store (created when missing).

    New files are added, changed ones replaced, files gone from an indexed folder removed, and
    unchanged ones skipped. A file that cannot be read (binary, too large, bad JSON line) is
    reported in ``errors`` while the good files are still indexed, so the call raises only when
    nothing could run at all.

    Args:
        paths: Files or folders to index (one path or several).
        delete: Files or folders to remove from the index first, in the same run.
        store: Store directory, ``':memory:'`` (refused: it would be discarded) or a Qdrant URL;
            None: the profile's store.
        profile: A :class:`~ragkit.config.Profile`, a profile name or YAML path; None: the
            default profile (``$RAGKIT_PROFILE``, else ``default``).
        indexer: Indexing pipeline: a name in ``indexers/`` or a YAML path.
        progress: Show a progress bar on stderr.
        ray: Load, split and embed on a Ray cluster (:class:`~ragkit.scale.cluster.RayOptions`);
            this process still writes every chunk, so the store equals a single-process run's.

    Returns:
        The run's :class:`IndexResult`; ``errors`` lists the files that were skipped, and
        ``warnings`` the ``delete`` paths that matched no indexed file.

    Raises:
        InvalidInputError: Neither ``paths`` nor ``delete`` given, or a ``:memory:`` store.
        ConfigError: Unknown or invalid profile.
        PipelineNotFoundError: Unknown indexer.
        PipelineError: Invalid indexer YAML.
        StoreError: The store cannot be opened or was built with another embedding model.
        StoreInUseError: Another process holds the store.
        RayMissingError, RayUnavailableError: ``ray`` given without Ray installed, or no
            cluster at its address.
    """
    to_index = _paths(paths)
    to_delete = _paths(delete)
    if not to_index and not to_delete:
        raise InvalidInputError("give PATH... to index or --delete PATH")
    prof = resolve_profile(profile)
    _refuse_memory_store(store, prof)
    if to_index and not to_delete:
        _refuse_nothing_to_index(to_index, store, prof)
    with contextlib.ExitStack() as stack:
        producer = None
        batch_files = 256
        if ray is not None and to_index:
            producer = stack.enter_context(_ray_producer(ray))
            batch_files = ray.batch_files
        idx = stack.enter_context(
            open_indexer(
                store,
                prof,
                indexer,
                overrides_from=profile_label(prof),
                measure=bool(to_index),
                must_exist=False,
                progress=progress,
                producer=producer,
                batch_files=batch_files,
            )
        )
        unmatched = _unmatched(idx, to_delete)
        removed = idx.delete(to_delete) if to_delete else 0
        report = idx.index(to_index) if to_index else None
    return IndexResult(report, removed, unmatched)


@contextlib.contextmanager
def _ray_producer(options: RayOptions) -> Iterator[Callable[[Pipeline], BatchProducer]]:
    """Connect to the cluster (before the store is touched) and make Ray batch producers."""
    from ragkit.scale.cluster import default_workers, ray_session
    from ragkit.scale.indexing import RayProducer

    with ray_session(options.address) as ray:
        workers, gpus = default_workers(ray, options)
        yield lambda pipe: RayProducer(pipe, ray, workers, gpus)


def _unmatched(idx: Indexer, paths: list[Path]) -> list[str]:
    """The paths (as given) with no indexed file at or under them, matched as ``delete`` does."""
    from ragkit.indexing.indexer import absolute

    return [str(p) for p in paths if not idx.manifest.under(absolute(p))]


def delete_files(
    paths: Sequence[PathArg] | PathArg,
    *,
    store: str | None = None,
    profile: ProfileArg = None,
    indexer: str | PathLike[str] = "default",
) -> int:
    """Remove every indexed file at or under ``paths`` from a store (the files stay on disk).

    Args:
        paths: Files or folders whose chunks to remove.
        store: As for :func:`index_files`.
        profile: As for :func:`index_files`.
        indexer: The indexing pipeline the store was built with (its embedding model must match
            the store's).

    Returns:
        How many indexed files were removed (0 when none was under ``paths``).

    Raises:
        The errors of :func:`index_files`.
    """
    return index_files(None, delete=paths, store=store, profile=profile, indexer=indexer).deleted


def repair_store(
    store: str | None = None,
    profile: ProfileArg = None,
    indexer: str | PathLike[str] = "default",
    progress: bool = False,
) -> RepairResult:
    """Repair a damaged store, then check it in full.

    A lost or corrupt ``store.json`` or Qdrant ``meta.json`` is rebuilt from the intact data
    (``rebuilt``), BM25 is rebuilt from Qdrant where it disagrees, files with missing or partial
    chunks are re-indexed from disk, and files gone from disk are dropped. The full check that
    follows tells whether anything is still wrong: ``problems_left`` (as data) and ``warnings``
    (the lines ``ragkit repair`` prints) rather than output on stderr.

    Args:
        store: Store directory or Qdrant URL; None: the profile's store. It must exist.
        profile: As for :func:`index_files`.
        indexer: The indexing pipeline to re-index with.
        progress: Show a progress bar on stderr.

    Returns:
        The :class:`RepairResult`; ``ok`` is False when files failed or problems are left.

    Raises:
        StoreError: No ragkit store at ``store`` (or it is a file), or a damaged file that
            cannot be rebuilt (the line says to re-index).
        ConfigError, PipelineNotFoundError, PipelineError, StoreInUseError: As for
            :func:`index_files`.
    """
    from ragkit.indexing.integrity import store_problems

    prof = resolve_profile(profile)
    rebuilt: list[str] = []
    with open_indexer(
        store,
        prof,
        indexer,
        overrides_from=None,
        measure=True,
        must_exist=True,
        progress=progress,
        rebuilt=rebuilt,
    ) as idx:
        report = idx.repair()
        left = store_problems(idx.store, full=True)
        warnings = _damage_warnings(idx.store, left)
    return RepairResult(report, left, warnings, rebuilt)


def _damage_warnings(store: RagkitStore, problems: list[str]) -> list[str]:
    from ragkit.indexing.integrity import repair_command

    return [f"store is damaged: {line}; run `{repair_command(store)}`" for line in problems]


def inspect_store(store: str | None = None, profile: ProfileArg = None) -> StoreStats:
    """What a store holds (chunks, files, BM25 index size) and a quick integrity check.

    The store is opened read-only and released before the call returns.

    Args:
        store: Store directory, ``':memory:'`` or a Qdrant URL; None: the profile's store.
        profile: As for :func:`index_files`.

    Returns:
        The :class:`StoreStats`; ``warnings`` are the lines ``ragkit stats`` prints on stderr.

    Raises:
        ConfigError: Unknown or invalid profile, or an empty ``store``.
        StoreError: No ragkit store at ``store`` (or it is a file).
        StoreInUseError: Another process holds the store for writing.
    """
    from ragkit.indexing.integrity import store_stats
    from ragkit.stores.locate import open_store_at
    from ragkit.stores.store import release_store

    prof = resolve_profile(profile)
    st = open_store_at(store, prof, must_exist=True, read_only=True)
    try:
        info, problems = store_stats(st)
        warnings = _damage_warnings(st, problems)
    finally:
        release_store(st)
    return StoreStats(info, problems, warnings)
