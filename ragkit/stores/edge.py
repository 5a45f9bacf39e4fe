"""Qdrant Edge (``qdrant-edge-py``): Qdrant's in-process engine with HNSW, as an embedded store.

Qdrant local mode scores every vector in Python, so query time grows with the corpus. Edge runs
the Qdrant engine itself in this process (Rust, HNSW graphs, payload filters) on a directory.
:class:`EdgeDocumentStore` gives it the subset of the Haystack document-store interface that
:class:`ragkit.stores.store.RagkitStore` and its callers use, with the same point ids
(``convert_id``) and payload layout (``Document.to_dict``) that qdrant-haystack writes, so both
engines return the same :class:`~haystack.Document` objects.

Edge has no background optimizer: :meth:`EdgeDocumentStore.commit` flushes and runs the
optimizers in-process, which is where segments past the indexing threshold get their HNSW graph.

Edge checks little of what it loads (measured on 0.9.0): a segment whose vector matrix is
truncated or deleted loads and answers with other vectors, a damaged deletion bitmap drops points
silently, and some corrupt id-tracker bytes abort the process. So ragkit *seals* the shard: a
writer that closes records the size, mtime and CRC-32 of every file of the shard in
``<store>/edge.seal.json`` (:func:`write_seal`), and every open checks the files against it
before the engine reads them (:func:`check_seal`). A writer removes the seal before the engine
touches a file, so a writer killed mid-session leaves no seal, never a wrong one; its store is
then checked by the engine's own write-ahead log and ragkit's chunk counts, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import write_json_atomic
from ragkit.errors import RagkitError

if TYPE_CHECKING:
    from haystack import Document

EDGE_DIR = "edge"
EDGE_PIN = "qdrant-edge-py==0.9.0"
# HNSW beam width per query when the store config sets none. Measured on 384-d topic-shaped vectors
# (ragkit bench store --sizes 100000,1000000 --engines edge --queries 200, 2026-12-02): recall@10
# vs exact at 1M chunks is 0.889 / 0.946 / 0.977 / 0.997 / 0.997 at ef 64 / 128 / 256 / 512 /
# 1024 (dense p95 3.7 / 3.2 / 4.0 / 4.3 / 5.1 ms); 512 is the smallest that passes 0.98.
DEFAULT_HNSW_EF = 512
_SCROLL_BATCH = 1024
SEAL_FORMAT = 1
_CRC_BLOCK = 1 << 22
_RANGE_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


class EdgeFilterError(RagkitError, ValueError):
    """A Haystack filter uses something the Edge engine cannot express."""


def import_edge() -> Any:
    """The ``qdrant_edge`` module, or one actionable error naming the extra that installs it."""
    try:
        import qdrant_edge
    except ImportError:
        raise RagkitError(
            f"store engine 'edge' needs {EDGE_PIN}: pip install 'ragkit[edge]' "
            "(or set store.engine: local)"
        ) from None
    return qdrant_edge


def edge_files_present(path: Path) -> bool:
    """Whether ``path`` holds an Edge shard with at least one segment (read-only opens need one)."""
    segments = path / "segments"
    return (path / "edge_config.json").is_file() and segments.is_dir() and any(segments.iterdir())


def engine_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the engine failing on its files: its errors or a Rust panic.

    qdrant-edge-py raises plain ``Exception`` for its errors and pyo3's ``PanicException``
    (a ``BaseException``, so ``except Exception`` misses it) when a Rust assertion fails on
    damaged bytes; both mean "this shard cannot be read", never Ctrl-C or an exit.
    """
    if isinstance(exc, Exception):
        return True
    return type(exc).__name__ == "PanicException"


# ------------------------------------------------------------------ the seal


def seal_path(path: Path) -> Path:
    """Where the seal of the shard in ``path`` lives: beside it, never inside the engine's files."""
    return path.parent / f"{path.name}.seal.json"


def _crc32(path: Path) -> str:
    crc = 0
    with path.open("rb") as fh:
        while block := fh.read(_CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def _shard_files(path: Path) -> dict[str, Path]:
    """Every file of the shard by its path relative to it (hidden files are not the engine's)."""
    return {
        p.relative_to(path).as_posix(): p
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def read_seal(path: Path) -> dict[str, list[Any]] | None:
    """The sealed files of the shard in ``path`` (None: no seal).

    Raises:
        ValueError: the seal file is unreadable or not a seal.
    """
    file = seal_path(path)
    if not file.exists():
        return None
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    files = data.get("files")
    if data.get("format") != SEAL_FORMAT or not isinstance(files, dict):
        raise ValueError(f"not a ragkit seal of format {SEAL_FORMAT}")
    for rel, entry in files.items():
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], str)):
            raise ValueError(f"bad entry for {rel!r}")
    return files


def write_seal(path: Path, previous: dict[str, list[Any]] | None = None) -> None:
    """Record every file of the closed shard in ``path``: size, mtime and CRC-32.

    Files whose size and mtime match ``previous`` keep its CRC (immutable HNSW segments are
    not read again on every close).
    """
    previous = previous or {}
    files: dict[str, list[Any]] = {}
    for rel, file in _shard_files(path).items():
        st = file.stat()
        old = previous.get(rel)
        if old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            files[rel] = old
        else:
            files[rel] = [st.st_size, st.st_mtime_ns, _crc32(file)]
    write_json_atomic(seal_path(path), {"format": SEAL_FORMAT, "engine": EDGE_PIN, "files": files})


def unseal(path: Path) -> dict[str, list[Any]] | None:
    """Remove the seal before a writer lets the engine change files; returns what it held.

    The removal is made durable first, so a crash after it can leave an unsealed shard but
    never a seal that disagrees with the files.
    """
    file = seal_path(path)
    try:
        previous = read_seal(path)
    except (OSError, ValueError):
        previous = None
    if file.exists():
        file.unlink()
        fd = os.open(file.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return previous


def check_seal(path: Path) -> tuple[Path, str] | None:
    """The first file of the shard in ``path`` that differs from its seal, and how; else None.

    Only reads. A file whose size and mtime are sealed is trusted without reading it; any other
    is read and its CRC-32 compared, so a read-only open (which rewrites a few small files with
    the same bytes) stays cheap and a truncated, overwritten, deleted or added file is caught.
    A shard without a seal (never closed by a writer, or its writer killed) returns None.
    """
    try:
        sealed = read_seal(path)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:160]
        return seal_path(path), f"is unreadable ({type(exc).__name__}: {reason})"
    if sealed is None:
        return None
    present = _shard_files(path)
    for rel, (size, mtime_ns, crc) in sealed.items():
        file = path / rel
        if rel not in present:
            return file, "is missing (it was there when the store was last closed)"
        st = file.stat()
        if st.st_size != size:
            return file, (
                f"has {st.st_size} bytes, not the {size} it had when the store was last closed "
                "(truncated or overwritten)"
            )
        if st.st_mtime_ns != mtime_ns and _crc32(file) != crc:
            return file, "does not match its checksum from when the store was last closed (corrupt)"
    added = sorted(set(present) - set(sealed))
    if added:
        return path / added[0], "was not there when the store was last closed"
    return None


def _drop_unfinished_builds(path: Path) -> None:
    """Remove segments an optimizer was building when its process died (0.9.0 leaves them).

    The optimizer builds a new segment under ``temp_segments/`` and moves it into
    ``segments/`` when done; a SIGKILL mid-build leaves the half-built one there for good (the
    engine does not clean it on load), as large as the segment it replaced. Only a writer calls
    this, holding the store's lock, so no optimizer of another process is running.
    """
    import shutil

    temp = path / "temp_segments"
    if temp.is_dir():
        for child in temp.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def convert_filters(filters: dict[str, Any] | None, qe: Any) -> Any:
    """Haystack metadata filters to an Edge ``Filter`` (None for no filter).

    Covers what ragkit's retrievers pass: ``AND`` / ``OR`` / ``NOT`` and ``==``, ``!=``, ``in``,
    ``not in``, ``>``, ``>=``, ``<``, ``<=`` on ``content``, ``id`` or ``meta.*`` fields.

    Raises:
        EdgeFilterError: an operator or value the engine cannot match exactly.
    """
    if not filters:
        return None
    cond = _condition(filters, qe)
    return cond if isinstance(cond, qe.Filter) else qe.Filter(must=[cond])


def _condition(f: dict[str, Any], qe: Any) -> Any:
    op = f.get("operator")
    if "conditions" in f:
        parts = [_condition(c, qe) for c in f["conditions"]]
        if op == "AND":
            return qe.Filter(must=parts)
        if op == "OR":
            return qe.Filter(should=parts)
        if op == "NOT":  # qdrant-haystack's meaning: not all of them
            return qe.Filter(must_not=[qe.Filter(must=parts)])
        raise EdgeFilterError(f"unknown logical filter operator {op!r}; use AND, OR or NOT")
    key, value = f.get("field"), f.get("value")
    if not isinstance(key, str) or op is None:
        raise EdgeFilterError(f"filter {f!r} needs 'field', 'operator' and 'value'")
    if op in ("==", "!="):
        cond = _match(key, value, qe)
        return cond if op == "==" else qe.Filter(must_not=[cond])
    if op in ("in", "not in"):
        if not isinstance(value, list) or not value:
            raise EdgeFilterError(f"filter on {key!r}: '{op}' needs a non-empty list")
        if all(isinstance(v, str) for v in value) or all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            cond = qe.FieldCondition(key=key, match=qe.MatchAny(value))
        else:
            cond = qe.Filter(should=[_match(key, v, qe) for v in value])
        return cond if op == "in" else qe.Filter(must_not=[cond])
    if op in _RANGE_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise EdgeFilterError(f"filter on {key!r}: '{op}' needs a number or an ISO date")
        kind = qe.RangeDateTime if isinstance(value, str) else qe.RangeFloat
        return qe.FieldCondition(key=key, range=kind(**{_RANGE_OPS[op]: value}))
    raise EdgeFilterError(f"filter on {key!r}: unknown operator {op!r}")


def _match(key: str, value: Any, qe: Any) -> Any:
    if value is None:
        return qe.IsNullCondition(key)
    if isinstance(value, str | int):  # bool is an int
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))
    if isinstance(value, float):
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=value, lte=value))
    raise EdgeFilterError(f"filter on {key!r}: cannot match a {type(value).__name__} value")


class EdgeDocumentStore:
    """Haystack documents in a Qdrant Edge shard: cosine dense vectors plus the document payload.

    Args:
        path: the shard directory (created on first write-mode open).
        embedding_dim: the vector size of a new shard; an existing shard keeps its own.
        read_only: refuse writes; the shard must already exist.
        hnsw_ef: HNSW beam width at query time (None: :data:`DEFAULT_HNSW_EF`).
    """

    def __init__(
        self, path: Path, embedding_dim: int, read_only: bool = False, hnsw_ef: int | None = None
    ) -> None:
        self._qe = import_edge()
        self.path = path
        self.read_only = read_only
        self.hnsw_ef = hnsw_ef or DEFAULT_HNSW_EF
        qe = self._qe
        # writers: the engine may change any file from here on (even loading rewrites some)
        self._sealed = None if read_only else unseal(path)
        if not read_only:
            _drop_unfinished_builds(path)
        if (path / "edge_config.json").is_file():
            self._shard = qe.EdgeShard.load(str(path))
        else:
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=embedding_dim, distance=qe.Distance.Cosine)
            )
            self._shard = qe.EdgeShard.create(str(path), config)

    # ------------------------------------------------------------------ Haystack-like API
    def count_documents(self) -> int:
        """Number of documents (exact)."""
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def write_documents(self, documents: Sequence[Document], policy: Any = None) -> int:
        """Upsert documents by id (ids make writes idempotent, like DuplicatePolicy.OVERWRITE)."""
        from haystack_integrations.document_stores.qdrant.converters import convert_id

        qe = self._qe
        points = []
        for doc in documents:
            vector = doc.embedding
            # to_dict deep-copies every float of an embedding (2.7 ms per 384-d chunk): drop it first
            payload = dataclasses.replace(doc, embedding=None).to_dict(flatten=False)
            payload.pop("embedding", None)
            if vector is None:
                raise RagkitError(
                    f"document {doc.id} has no embedding; the edge engine stores dense vectors"
                )
            points.append(qe.Point(id=convert_id(doc.id), vector=list(vector), payload=payload))
        for i in range(0, len(points), _SCROLL_BATCH):
            self._shard.update(qe.UpdateOperation.upsert_points(points[i : i + _SCROLL_BATCH]))
        return len(points)

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete documents matching Haystack ``filters``; returns how many were deleted."""
        qe = self._qe
        flt = convert_filters(filters, qe)
        if flt is None:
            return 0
        n = int(self._shard.count(qe.CountRequest(filter=flt, exact=True)))
        if n:
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return n

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete documents by their Haystack ids."""
        from haystack_integrations.document_stores.qdrant.converters import convert_id

        if document_ids:
            ids = [convert_id(i) for i in document_ids]
            self._shard.update(self._qe.UpdateOperation.delete_points(ids))

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Every document matching ``filters`` (all without), vectors included."""
        return list(self._scroll(convert_filters(filters, self._qe), with_vector=True))

    def get_documents_by_id(self, ids: list[str], vectors: bool = False) -> list[Document]:
        """Documents with these Haystack ids (missing ones are left out), vectors if asked."""
        from haystack_integrations.document_stores.qdrant.converters import convert_id

        if not ids:
            return []
        records = self._shard.retrieve(
            [convert_id(i) for i in ids], with_payload=True, with_vector=vectors
        )
        return [self._document(r.payload, None, r.vector if vectors else None) for r in records]

    def id_meta(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(id, meta)`` of every document (payloads only)."""
        for doc in self._scroll(None, with_vector=False):
            yield doc.id, dict(doc.meta or {})

    def embedding_retrieval(
        self, query_embedding: list[float], top_k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[Document]:
        """The ``top_k`` nearest documents by cosine similarity, ``score`` set, best first."""
        qe = self._qe
        params = qe.SearchParams(hnsw_ef=self.hnsw_ef) if self.hnsw_ef else None
        points = self._shard.query(
            qe.QueryRequest(
                limit=top_k,
                query=qe.Query.Nearest(list(query_embedding)),
                filter=convert_filters(filters, qe),
                with_payload=True,
                params=params,
            )
        )
        return [self._document(p.payload, float(p.score)) for p in points]

    def first_document(self) -> Document | None:
        """One stored document with its vector (None for an empty shard): what it holds."""
        return next(self._scroll(None, with_vector=True), None)

    def source_counts(self) -> dict[str, int]:
        """Documents per ``meta.source`` (payloads only)."""
        counts: Counter[str] = Counter()
        for doc in self._scroll(None, with_vector=False):
            counts[str((doc.meta or {}).get("source", ""))] += 1
        return dict(counts)

    def commit(self) -> None:
        """Flush to disk and run the optimizers (builds HNSW for segments past the threshold)."""
        self._shard.optimize()
        self._shard.flush()

    def info(self) -> dict[str, int]:
        """Segments, points and vectors already in an HNSW index."""
        info = self._shard.info()
        return {
            "segments": int(info.segments_count),
            "points": int(info.points_count),
            "indexed_vectors": int(info.indexed_vectors_count),
        }

    def close(self) -> None:
        """Flush (writers) and release the shard's files; a writer then seals them.

        A writer also loads and closes the shard once more: the first load after a write session
        rewrites ``edge_config.json`` and folds the payload tracker's journal in (measured on
        0.9.0), and that must happen here, not in a later read-only open that promises to
        change no file. Only then are the files final, and sealed (:func:`write_seal`).
        """
        if self.read_only:
            self._shard.close()
            return
        self._shard.flush()
        self._shard.close()
        self._qe.EdgeShard.load(str(self.path)).close()
        write_seal(self.path, self._sealed)

    # ------------------------------------------------------------------ helpers
    def _scroll(self, flt: Any, with_vector: bool) -> Iterator[Document]:
        qe = self._qe
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_BATCH,
                    filter=flt,
                    with_payload=True,
                    with_vector=with_vector,
                )
            )
            for r in records:
                yield self._document(r.payload, None, r.vector if with_vector else None)
            if offset is None:
                return

    @staticmethod
    def _document(payload: dict[str, Any] | None, score: float | None, vector: Any = None) -> Any:
        from haystack import Document

        if isinstance(vector, dict):  # the unnamed dense vector comes back as {"": [...]}
            vector = vector.get("")
        data = dict(payload or {})
        data["score"] = score
        data["embedding"] = list(vector) if vector is not None else None
        return Document.from_dict(data)
