"""Incremental indexing: run the indexing pipeline only on new or changed files.

The manifest records each file's content hash. A run adds new files, re-indexes changed ones
(old chunks deleted by source first), deletes chunks of files that disappeared, and leaves the
rest untouched. Work is committed in batches so an interrupted run loses at most one batch,
which the next run redoes.

A file counts as unchanged only when its content hash, the fingerprint of the indexing settings
and its chunk counts in Qdrant and BM25 all match the manifest; anything else re-indexes it.
Each run first heals what it can without the source files (a damaged BM25 index is rebuilt from
Qdrant, BM25 entries that disagree with intact Qdrant chunks are re-added from Qdrant);
:meth:`Indexer.repair` also re-indexes every damaged file of the store.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragkit.atomic import file_sha256
from ragkit.errors import RagkitError
from ragkit.indexing.integrity import check_store, repair_command
from ragkit.indexing.loaders import is_supported
from ragkit.indexing.manifest import FileEntry, Manifest
from ragkit.indexing.settings import embedding_model, indexing_fingerprint

if TYPE_CHECKING:
    from haystack import Pipeline

    from ragkit.stores.store import RagkitStore

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What one ``ragkit index`` run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    settings_changed: int = 0
    repaired: int = 0
    # given but not a loadable kind of file (unsupported type, unreadable): never sent to a loader
    skipped: int = 0
    # sent to the loader, which got nothing usable from it: earlier chunks (if any) are kept
    failed: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for ``--json``."""
        return dict(self.__dict__)


def absolute(raw: Path) -> Path:
    """``raw`` made absolute with its links resolved; a path with a link loop stays unresolved.

    Python before 3.13 raises ``RuntimeError`` on a loop; the caller reports the loop itself.
    """
    try:
        return raw.expanduser().resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(raw.expanduser()))


def link_problem(path: Path) -> str | None:
    """Why ``path`` cannot be followed (a symbolic link loop, or a link to nothing), or None."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself); skipped"
        if exc.errno == errno.ENOENT and path.is_symlink():
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symbolic link (its target {target} does not exist); skipped"
    return None


def discover(paths: list[Path], report: IndexReport) -> tuple[list[Path], list[Path]]:
    """Expand paths into supported files; returns (files, existing roots) and records problems.

    A file named directly that is not a supported type counts in ``report.skipped``.
    """
    files: list[Path] = []
    roots: list[Path] = []
    errors = report.errors
    for raw in paths:
        problem = link_problem(raw.expanduser())
        if problem is not None:
            errors.append(f"{raw}: {problem}")
            report.skipped += 1
            continue
        path = absolute(raw)
        if not path.exists():
            errors.append(f"{raw}: no such file or directory")
            continue
        roots.append(path)
        if path.is_file():
            if is_supported(path):
                files.append(path)
            else:
                errors.append(f"{raw}: unsupported file type {path.suffix or '(none)'}; skipped")
                report.skipped += 1
            continue
        found = []
        for p in sorted(path.rglob("*")):
            if not is_supported(p) or any(
                part.startswith(".") for part in p.relative_to(path).parts
            ):
                continue
            if p.is_file():
                found.append(p)
            elif p.is_symlink() and (problem := link_problem(p)) is not None:
                errors.append(f"{p}: {problem}")  # is_file() is False for a loop or broken link
        if not found:
            errors.append(f"{raw}: no supported files (txt, md, html, jsonl, pdf) in this folder")
        files.extend(found)
    return list(dict.fromkeys(files)), roots


# the indexing pipeline's result for one batch, in the shape ``Pipeline.run`` returns it
BatchResult = dict[str, dict[str, Any]]


class BatchProducer(Protocol):
    """Runs what comes before the store writer for many batches elsewhere (a Ray cluster).

    The indexer stays the one writer: a producer only hands back, per batch, a callable that
    runs the writer on this process and returns the batch's full pipeline result. The indexer
    marks the batch pending before calling it, so a crash keeps today's guarantees.
    ``parallelism`` is how many batches it works on at once: the indexer cuts at least two
    batches per worker when there are enough files, so a small corpus still spreads out.
    """

    parallelism: int

    def produce(self, batches: list[list[str]]) -> Iterator[tuple[int, Callable[[], BatchResult]]]:
        """Yield ``(batch index, write)`` as batches finish, in any order."""
        ...


class Indexer:
    """Drives an indexing pipeline (``sources`` in, store writes out) over changed files only."""

    def __init__(
        self,
        store: RagkitStore,
        pipeline: Pipeline,
        batch_bytes: int = 400_000,
        progress: bool = True,
        producer: BatchProducer | None = None,
        batch_files: int = 256,
    ) -> None:
        """Create an indexer.

        Args:
            store: the open store the pipeline's writer is bound to.
            pipeline: a pipeline whose loader takes ``sources`` and whose writer writes to ``store``.
            batch_bytes: file bytes per durable batch (smaller = less redone after a crash).
            progress: show a progress bar on stderr.
            producer: runs loading, splitting and embedding elsewhere (``ragkit index --ray``);
                None runs the whole pipeline here.
            batch_files: at most this many files per batch (small batches spread over workers).
        """
        if store.directory is None:
            raise ValueError("incremental indexing needs a store with a directory (not :memory:)")
        from ragkit.stores.store import StoreError

        model = embedding_model(pipeline)
        if model is not None and model != store.embedding_model:
            raise StoreError(
                f"store {store.directory} was built with embedding model "
                f"{store.embedding_model!r}, but the indexing pipeline embeds with {model!r}; "
                "use the same model or another --store"
            )
        self.store = store
        self.pipeline = pipeline
        self.batch_bytes = batch_bytes
        self.progress = progress
        self.producer = producer
        self.batch_files = max(1, batch_files)
        self.manifest = Manifest.load(store.directory / "manifest.json")
        self._reasons: dict[str, tuple[str, ...]] = {}
        self.fingerprint = indexing_fingerprint(pipeline, store.embedding_dim)

    def heal(self) -> set[str]:
        """Fix what needs no source file; returns indexed files whose Qdrant chunks are damaged.

        A BM25 index that failed to load is rebuilt from Qdrant; a source whose BM25 entries
        disagree with intact Qdrant chunks (or that the manifest does not list: Qdrant holds the
        documents) gets them re-added from Qdrant. Files whose Qdrant chunks disagree with the
        manifest can only be restored from the files themselves; the caller re-indexes them.
        """
        changed = False
        if self.store.bm25_problem:
            logger.warning("%s; rebuilding BM25 from Qdrant", self.store.bm25_problem)
            self.store.rebuild_bm25()
        found = check_store(self.store, self.manifest)
        for src in found.orphans:
            self.store.resync_bm25_source(src)
            changed = True
        damaged: set[str] = set()
        for src, counts in found.mismatched.items():
            if counts.bm25 is not None and counts.qdrant == counts.manifest:
                self.store.resync_bm25_source(src)
                changed = True
            else:
                damaged.add(src)
        if changed:
            self.store.commit()
        return damaged

    def repair(self) -> IndexReport:
        """Restore every damaged file of the store: re-index it from disk, or drop it if gone."""
        start = time.perf_counter()
        damaged = self.heal()
        damaged |= {s for s, e in self.manifest.files.items() if e.status != "done"}
        present = [Path(s) for s in sorted(damaged) if Path(s).is_file()]
        gone = [Path(s) for s in sorted(damaged) if not Path(s).is_file()]
        removed = self.delete(gone) if gone else 0
        report = self.index(present) if present else IndexReport()
        report.removed += removed
        report.chunks_total = self.store.count()
        report.seconds = time.perf_counter() - start
        return report

    def _delete_sources(self, sources: list[str]) -> None:
        for src in sources:
            self.store.delete_source(src)

    def delete(self, paths: list[Path]) -> int:
        """Remove every indexed file at or under ``paths`` from the store; returns files removed."""
        victims: list[str] = []
        for p in paths:
            victims.extend(self.manifest.under(absolute(p)))
        victims = list(dict.fromkeys(victims))
        for src in victims:
            self.manifest.files[src].status = "pending"
        self.manifest.save()
        self._delete_sources(victims)
        self.store.commit()
        for src in victims:
            del self.manifest.files[src]
        self.manifest.save()
        return len(victims)

    def index(self, paths: list[Path]) -> IndexReport:
        """Bring the store in line with the files under ``paths``."""
        start = time.perf_counter()
        report = IndexReport()
        damaged = self.heal()
        files, roots = discover(paths, report)
        listed = {str(f) for f in files}
        for src in sorted(damaged - listed):
            report.errors.append(
                f"{src}: its chunks are missing from the store; "
                f"run `{repair_command(self.store)}` (or index it)"
            )

        # files that were indexed under these roots but are gone now
        present = {str(f) for f in files}
        gone = [
            s
            for r in roots
            for s in self.manifest.under(r)
            if s not in present and not Path(s).exists()
        ]
        if gone:
            report.removed = self.delete([Path(s) for s in gone])

        todo: list[tuple[Path, FileEntry]] = []
        # why each file is re-indexed; counted once its batch shows whether it loaded at all
        self._reasons = {}
        for f in files:
            try:
                entry = FileEntry(sha256=file_sha256(f), size=f.stat().st_size)
            except OSError as exc:
                report.errors.append(f"{f}: cannot read ({exc.strerror}); skipped")
                report.skipped += 1
                continue
            src = str(f)
            old = self.manifest.files.get(src)
            same = old is not None and old.status == "done" and old.sha256 == entry.sha256
            if same and old.fingerprint == self.fingerprint and src not in damaged:
                report.unchanged += 1
                continue
            if old is None:
                self._reasons[src] = ("added",)
            elif same and src in damaged:
                self._reasons[src] = ("updated", "repaired")
            elif same:
                self._reasons[src] = ("updated", "settings_changed")
            else:
                self._reasons[src] = ("updated",)
            todo.append((f, entry))

        bar = None
        if self.progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="file", desc="indexing", file=sys.stderr, leave=False)
        batches = self._batches(todo)
        try:
            for batch, write in self._produced(batches):
                report.chunks_written += self._run_batch(batch, report, write)
                if bar is not None:
                    bar.update(len(batch))
                    bar.set_postfix(chunks=report.chunks_written)
        finally:
            if bar is not None:
                bar.close()
        report.chunks_total = self.store.count()
        report.seconds = time.perf_counter() - start
        return report

    def _batches(self, todo: list[tuple[Path, FileEntry]]) -> list[list[tuple[Path, FileEntry]]]:
        batches: list[list[tuple[Path, FileEntry]]] = []
        cur: list[tuple[Path, FileEntry]] = []
        size = 0
        most = self.batch_files
        if self.producer is not None:  # two batches per worker at least, when there are files
            most = min(most, max(1, -(-len(todo) // (2 * self.producer.parallelism))))
        for item in todo:
            cur.append(item)
            size += item[1].size
            if size >= self.batch_bytes or len(cur) >= most:
                batches.append(cur)
                cur, size = [], 0
        if cur:
            batches.append(cur)
        return batches

    def _produced(
        self, batches: list[list[tuple[Path, FileEntry]]]
    ) -> Iterator[tuple[list[tuple[Path, FileEntry]], Callable[[], BatchResult] | None]]:
        """Each batch once with how to get its result: run here (None) or from the producer.

        A batch the producer hands back twice is written once; one it never hands back is an
        error after the others are committed (those files stay pending or unindexed, so the
        next run redoes them: no gap is ever recorded as done).
        """
        if self.producer is None:
            for batch in batches:
                yield batch, None
            return
        seen: set[int] = set()
        for i, write in self.producer.produce([[str(f) for f, _ in b] for b in batches]):
            if i in seen or not 0 <= i < len(batches):
                logger.warning("batch %d came back twice or out of range; written once", i)
                continue
            seen.add(i)
            yield batches[i], write
        missing = sorted(set(range(len(batches))) - seen)
        if missing:
            raise RagkitError(
                f"{len(missing)} of {len(batches)} batches never came back from the workers "
                f"(first: {batches[missing[0]][0][0]}); run the same command again to index them"
            )

    def _run_batch(
        self,
        batch: list[tuple[Path, FileEntry]],
        report: IndexReport,
        write: Callable[[], BatchResult] | None = None,
    ) -> int:
        sources = [str(f) for f, _ in batch]
        previous = {src: self.manifest.files.get(src) for src in sources}
        # 1. durably mark the batch pending; 2. load -> split -> embed -> write (the writer
        # replaces each loaded file's chunks); 3. persist BM25; 4. mark done
        for src, (_, entry) in zip(sources, batch, strict=True):
            self.manifest.files[src] = FileEntry(
                sha256=entry.sha256, size=entry.size, fingerprint=self.fingerprint
            )
        self.manifest.save()
        result = self.pipeline.run({"sources": sources}) if write is None else write()
        errors: list[str] = []
        counts: dict[str, int] = {}
        failed: set[str] = set()
        written = 0
        for outputs in result.values():
            errors.extend(outputs.get("errors", []))
            # failures travel as data (the loader's failed_sources), never parsed from messages
            failed.update(outputs.get("failed_sources", []))
            counts.update(outputs.get("chunks_by_source", {}))
            written += int(outputs.get("documents_written", 0))
        report.errors.extend(errors)
        for src in sources:
            old = previous[src]
            if src in failed and src not in counts:
                # the file could not be loaded: keep its earlier chunks and entry (nothing lost);
                # an entry left pending by a crash has unknown chunks, so clear those
                report.failed += 1
                if old is not None and old.status == "done":
                    self.manifest.files[src] = old
                    report.errors.append(f"{src}: kept its {old.chunks} earlier chunks")
                else:
                    self.store.delete_source(src)
                    del self.manifest.files[src]
                continue
            for reason in self._reasons.get(src, ("updated",)):
                setattr(report, reason, getattr(report, reason) + 1)
            if src not in counts:
                self.store.delete_source(src)  # loaded but empty now: no chunks may remain
            self.manifest.files[src].chunks = counts.get(src, 0)
            self.manifest.files[src].status = "done"
        self.store.commit()
        self.manifest.save()
        return written
