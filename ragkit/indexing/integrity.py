"""Store integrity: do the manifest, Qdrant and the BM25 index agree, file by file?

The three halves of an embedded store can drift apart when one of them is damaged on disk
(a truncated ``storage.sqlite``, a deleted collection, a corrupt BM25 file). These checks only
read; ``ragkit index`` and ``ragkit repair`` act on their findings (see ``Indexer.heal``), and
``ragkit query`` / ``ragkit stats`` report them with the repair command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.indexing.manifest import Manifest
    from ragkit.stores.store import RagkitStore


@dataclass(frozen=True)
class SourceCounts:
    """Chunks of one source as each half of the store sees them (None: that half has no say)."""

    manifest: int | None
    qdrant: int
    bm25: int | None

    def agree(self) -> bool:
        """Whether every half that has a say holds the same number of chunks."""
        want = self.manifest if self.manifest is not None else self.qdrant
        return self.qdrant == want and (self.bm25 is None or self.bm25 == want)


@dataclass
class IntegrityReport:
    """What :func:`check_store` found; empty means the store is consistent."""

    bm25_problem: str | None = None
    # indexed files (done in the manifest) whose chunk counts disagree
    mismatched: dict[str, SourceCounts] = field(default_factory=dict)
    # sources the manifest does not list (written through the API) whose Qdrant and BM25 halves
    # disagree; ones that agree are not ragkit's to judge and are left alone
    orphans: dict[str, SourceCounts] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No damage found (pending files of an interrupted run count as damage)."""
        return not (self.bm25_problem or self.mismatched or self.orphans or self.pending)

    def problems(self) -> list[str]:
        """One short line per kind of problem, for warnings and ``stats``."""
        out: list[str] = []
        if self.bm25_problem:
            out.append(self.bm25_problem)
        if self.mismatched:
            names = sorted(self.mismatched)
            first = self.mismatched[names[0]]
            out.append(
                f"{len(names)} indexed files have chunks missing or extra (e.g. {names[0]}: "
                f"manifest {first.manifest}, qdrant {first.qdrant}, bm25 {first.bm25})"
            )
        if self.orphans:
            out.append(
                f"{len(self.orphans)} sources the manifest does not list have different chunks "
                "in Qdrant and BM25"
            )
        if self.pending:
            out.append(f"{len(self.pending)} files left pending by an interrupted run")
        return out


def repair_command(store: RagkitStore) -> str:
    """The command line that repairs ``store``."""
    where = f" --store {store.directory}" if store.directory is not None else ""
    return f"ragkit repair{where}"


def check_store(store: RagkitStore, manifest: Manifest | None) -> IntegrityReport:
    """Compare chunk counts per source between the manifest, Qdrant and BM25 (reads only).

    Args:
        store: the open store.
        manifest: its indexing manifest; None (a store written through the API) compares only
            Qdrant with BM25.

    Returns:
        The findings. While ``bm25_problem`` is set BM25 counts are unknown and not compared.
    """
    report = IntegrityReport(bm25_problem=store.bm25_problem)
    qdrant = store.qdrant_source_counts()
    bm25 = None if store.bm25_problem else store.bm25_source_counts()
    done: dict[str, int] = {}
    if manifest is not None:
        for src, entry in manifest.files.items():
            if entry.status == "done":
                done[src] = entry.chunks
            else:
                report.pending.append(src)
    sources = set(qdrant) | set(bm25 or {}) | set(done)
    for src in sorted(sources):
        if src in report.pending:
            continue  # the next run re-indexes it from scratch anyway
        counts = SourceCounts(
            manifest=done.get(src) if manifest is not None else None,
            qdrant=qdrant.get(src, 0),
            bm25=None if bm25 is None else bm25.get(src, 0),
        )
        if counts.agree():
            continue
        if counts.manifest is None:
            report.orphans[src] = counts
        else:
            report.mismatched[src] = counts
    return report


def quick_problems(store: RagkitStore, manifest: Manifest | None) -> list[str]:
    """Cheap totals-only version of :func:`check_store` for every query (no payload scan)."""
    out: list[str] = []
    if store.bm25_problem:
        out.append(store.bm25_problem)
    qdrant = store.count()
    if manifest is not None:
        pending = sum(1 for e in manifest.files.values() if e.status != "done")
        if pending:
            out.append(f"{pending} files left pending by an interrupted run")
        elif manifest.total_chunks() != qdrant:
            out.append(
                f"the manifest lists {manifest.total_chunks()} chunks but Qdrant has {qdrant}"
            )
    n = store.bm25_count()
    if n is not None and not store.bm25_problem and n != qdrant:
        out.append(f"the BM25 index has {n} chunks but Qdrant has {qdrant}")
    return out


def _manifest_of(store: RagkitStore) -> Manifest | None:
    """The store's indexing manifest, or None for a store without a directory or manifest."""
    from ragkit.indexing.manifest import Manifest

    if store.directory is None:
        return None
    path = store.directory / "manifest.json"
    return Manifest.load(path) if path.exists() else None


def store_problems(store: RagkitStore, full: bool) -> list[str]:
    """Where the store's halves (manifest, Qdrant, BM25) disagree; reads only.

    Args:
        store: An open store.
        full: Compare chunk counts per source (:func:`check_store`); else totals only
            (:func:`quick_problems`, cheap enough for every query).

    Returns:
        One line per problem; empty when the store is consistent.
    """
    manifest = _manifest_of(store)
    return check_store(store, manifest).problems() if full else quick_problems(store, manifest)


def store_stats(store: RagkitStore) -> tuple[dict[str, Any], list[str]]:
    """What a store holds, for ``ragkit stats``: its own counts, files and an integrity verdict.

    Args:
        store: An open store.

    Returns:
        ``(info, problems)``: the store's :meth:`RagkitStore.stats` plus ``files`` /
        ``pending_files`` (done and unfinished files of the indexing manifest, for stores with
        a directory) and ``integrity`` ("ok" or the problems joined by "; "); and the problems
        found by :func:`check_store`, one line each.
    """
    info = dict(store.stats())
    manifest = _manifest_of(store)
    if store.directory is not None:
        entries = list(manifest.files.values()) if manifest is not None else []
        info["files"] = sum(1 for e in entries if e.status == "done")
        info["pending_files"] = sum(1 for e in entries if e.status != "done")
    problems = check_store(store, manifest).problems()
    info["integrity"] = "; ".join(problems) if problems else "ok"
    return info, problems
