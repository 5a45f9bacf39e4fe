"""One diagnosis of a damaged embedded store's files, and the repair that rebuilds its metadata.

Every command that opens an embedded store (``index``, ``repair``, ``query``, ``stats``, the
memory commands and the library calls behind them) asks :func:`diagnose_store` before touching
it, so a damaged file gets one report whichever command met it: the file, what is wrong with
it, and one remedy. Metadata that the intact data still determines (``store.json``: embedding
model, dimension and engine; Qdrant local mode's ``qdrant/meta.json``: the collection config)
is rebuilt by ``ragkit repair`` (:func:`rebuild_metadata`) instead of the store being thrown
away; what cannot be rebuilt says "delete the store and re-index" everywhere. A Qdrant Edge
shard whose files differ from their seal (:mod:`ragkit.stores.edge`) is moved aside by
``ragkit repair``, which then re-indexes every file from disk: the engine cannot say which
points survived, and the source files and the manifest can.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import write_json_atomic

if TYPE_CHECKING:
    from haystack import Document

    from ragkit.config import EmbeddedStore

__all__ = ["STORE_FILES", "StoreDamage", "diagnose_store", "holds_store", "rebuild_metadata"]

# what a ragkit store directory holds besides store.json (the lock file is not store data)
STORE_FILES = frozenset({"qdrant", "edge", "bm25", "manifest.json"})
# where `ragkit repair` moves a Qdrant Edge shard that failed its seal (kept for inspection)
EDGE_QUARANTINE = "edge.damaged"
# a stored chunk re-embedded with the model that made it comes back as the same vector (cosine
# above 1 - 1e-6 for torch and ONNX alike); minilm-int8 and minilm differ at 0.987-0.999, so
# anything looser would record the one for vectors the other made
SAME_MODEL_SIMILARITY = 0.9999


@dataclass(frozen=True)
class StoreDamage:
    """One damaged file of a store, what is wrong with it, and the remedy.

    Attributes:
        directory: The store directory.
        file: The damaged file (or folder).
        problem: What is wrong, as it reads after the file's name ("is missing", ...).
        repairable: ``ragkit repair`` restores it; else the store must be deleted and re-indexed.
        writers_heal: Opening for writing recreates it and ``index`` / ``repair`` re-index what
            it held (a lost Qdrant collection), so only read-only opens report it.
    """

    directory: Path
    file: Path
    problem: str
    repairable: bool = True
    writers_heal: bool = False

    @property
    def remedy(self) -> str:
        """The one thing to do about it."""
        if self.repairable:
            return f"run `ragkit repair --store {self.directory}`"
        return f"delete {self.directory} and re-index"

    def message(self) -> str:
        """The one-line report every command gives."""
        return f"store {self.directory} is damaged: {self.file} {self.problem}; {self.remedy}"


def holds_store(directory: Path) -> bool:
    """Whether ``directory`` holds a ragkit store, intact or not (``store.json`` or its data)."""
    if not directory.is_dir():
        return False
    return (directory / "store.json").exists() or any(
        (directory / name).exists() for name in STORE_FILES
    )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def read_store_json(directory: Path) -> tuple[dict[str, Any] | None, StoreDamage | None]:
    """``store.json`` as a dict, or the damage that keeps it from being read.

    Returns:
        ``(None, None)`` for a directory that holds no store yet; ``(meta, None)`` for a
        readable ``store.json``; ``(None, damage)`` when it is missing beside store files or
        unreadable.
    """
    path = directory / "store.json"
    if not path.exists():
        if any((directory / name).exists() for name in STORE_FILES):
            return None, StoreDamage(directory, path, "is missing")
        return None, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        if not isinstance(meta.get("embedding_model"), str):
            raise ValueError("no embedding_model")
    except (OSError, ValueError) as exc:
        return None, StoreDamage(directory, path, f"is corrupt ({_reason(exc)})")
    return meta, None


def _collection_files(qdrant_dir: Path, collection: str) -> Path:
    return qdrant_dir / "collection" / collection / "storage.sqlite"


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts with SQLite's file header (Qdrant local mode keeps points there)."""
    try:
        with path.open("rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _check_qdrant_meta(meta_path: Path, collection: str) -> dict[str, Any]:
    """Qdrant local mode's ``meta.json``, checked as Qdrant will load it; raises ValueError."""
    from qdrant_client.http import models as rest

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    collections = meta.get("collections")
    if not isinstance(collections, dict) or not isinstance(meta.get("aliases"), dict):
        raise ValueError("no 'collections' and 'aliases' objects")
    text_indexes = meta.get("text_indexes", {})
    if not isinstance(text_indexes, dict) or not set(text_indexes) <= set(collections):
        raise ValueError("'text_indexes' names collections it does not list")
    for name, config in collections.items():
        if not isinstance(config, dict):
            raise ValueError(f"collection {name!r} has no config")
        try:
            rest.CreateCollection(**{k: v for k, v in config.items() if k != "init_from"})
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError is a ValueError
            raise ValueError(f"collection {name!r}: {_reason(exc)}") from None
    return meta


def _diagnose_local_qdrant(directory: Path, collection: str) -> StoreDamage | None:
    qdrant_dir = directory / "qdrant"
    meta_path = qdrant_dir / "meta.json"
    storage = _collection_files(qdrant_dir, collection)
    has_data = storage.is_file() and storage.stat().st_size > 0
    if has_data and not _is_sqlite(storage):
        # the points themselves are lost: no metadata rebuild brings them back
        return StoreDamage(
            directory, storage, "is not a SQLite database (its points are lost)", repairable=False
        )
    if meta_path.exists():
        try:
            meta = _check_qdrant_meta(meta_path, collection)
        except (OSError, ValueError) as exc:
            return StoreDamage(directory, meta_path, f"is corrupt ({_reason(exc)})")
        listed = collection in meta["collections"]
        if has_data and not listed:
            return StoreDamage(directory, meta_path, f"does not list collection {collection!r}")
        if listed and has_data:
            return None
    elif has_data:
        return StoreDamage(directory, meta_path, "is missing")
    return StoreDamage(
        directory,
        storage,
        f"is missing or empty (Qdrant collection {collection!r})",
        writers_heal=True,
    )


def _diagnose_edge(directory: Path) -> StoreDamage | None:
    """A file of the Qdrant Edge shard that differs from its seal, before the engine reads it.

    A shard without segments is not checked here: a read-only open reports it and a writer's
    open replays the engine's log, and ``index`` / ``repair`` re-index what it held.
    """
    from ragkit.stores.edge import EDGE_DIR, check_seal

    path = directory / EDGE_DIR
    segments = path / "segments"
    if not (segments.is_dir() and any(segments.iterdir())):
        return None
    found = check_seal(path)
    if found is None:
        return None
    file, problem = found
    return StoreDamage(directory, file, problem)


def diagnose_store(directory: Path, collection: str) -> StoreDamage | None:
    """The first damaged metadata or collection file of the store in ``directory``, or None.

    This is the one diagnosis every command makes before opening an embedded store; it only
    reads. Chunk-level disagreements between the store's halves are
    :mod:`ragkit.indexing.integrity`'s business; a Qdrant Edge shard is checked against its seal
    (:func:`ragkit.stores.edge.check_seal`) and then by its engine.

    Args:
        directory: The store directory.
        collection: The Qdrant collection the store's config names.

    Returns:
        None for an intact store or a directory without one; else the damage, whose
        :meth:`StoreDamage.message` is the line to report.
    """
    if not directory.is_dir():
        return None
    meta, damage = read_store_json(directory)
    if meta is None and damage is None:
        return None  # no store here yet
    engine = meta.get("engine", "local") if meta is not None else _data_engine(directory, None)
    if engine == "edge":
        # a shard that fails its seal outranks lost metadata: rebuilding store.json reads the
        # shard, and damaged shard files can abort the process that loads them
        edge = _diagnose_edge(directory)
        if edge is not None:
            return edge
    qdrant = _diagnose_local_qdrant(directory, collection) if engine == "local" else None
    if qdrant is not None and not qdrant.repairable:
        return qdrant  # lost points outrank lost metadata: only re-indexing helps
    if damage is None and qdrant is None and meta is not None and engine == "local":
        dim, recorded = _local_dim(directory, collection), meta.get("embedding_dim")
        if isinstance(recorded, int) and dim is not None and dim != recorded:
            return StoreDamage(
                directory,
                directory / "qdrant" / "meta.json",
                f"gives collection {collection!r} {dim}-d vectors, but store.json {recorded}-d",
            )
    return damage or qdrant


# ------------------------------------------------------------------ repair


class _CannotRebuild(Exception):
    """Why a metadata file cannot be rebuilt from what the store holds (and what might help)."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.hint = hint


_OTHER_PIPELINE = (
    "run `ragkit repair` with the --profile / --indexer that built the store (one built before "
    "minilm-int8 became the default: a profile with `embedding: {model: minilm}`)"
)


@contextlib.contextmanager
def _cannot_rebuild(damage: StoreDamage) -> Iterator[None]:
    """Turn a failed rebuild of ``damage`` into the one-line error that says to re-index."""
    from ragkit.stores.layout import StoreError

    try:
        yield
    except _CannotRebuild as exc:
        hint = f"{exc.hint}, or " if exc.hint else ""
        raise StoreError(
            f"store {damage.directory} is damaged: {damage.file} {damage.problem}, and cannot "
            f"be rebuilt: {exc}; {hint}delete {damage.directory} and re-index"
        ) from None


def _data_engine(directory: Path, config: EmbeddedStore | None) -> str:
    """The vector engine whose files the store directory holds (else the config's, or local)."""
    if (directory / "edge").exists() or (directory / EDGE_QUARANTINE).exists():
        return "edge"
    if (directory / "qdrant").exists() or config is None:
        return "local"
    from ragkit.stores.layout import DEFAULT_ENGINE

    return config.engine or DEFAULT_ENGINE


def rebuild_metadata(
    config: EmbeddedStore,
    *,
    embedding_model: str,
    embedding_dim: int | None,
    embed: Callable[[Document], list[float] | None] | None = None,
) -> list[str]:
    """Rebuild damaged ``store.json`` / ``qdrant/meta.json`` from the store's intact data.

    ``store.json`` gets the engine the data is in, the dimension of the stored vectors and the
    repairing pipeline's embedding model, once a stored chunk re-embedded with ``embed`` comes
    back as the vector stored for it (another model would make queries silently wrong). Qdrant's
    ``meta.json`` gets the collection config ragkit creates for that dimension, and must then
    load every stored point. Nothing is rebuilt that these checks do not confirm. A Qdrant Edge
    shard that fails its seal is moved to ``edge.damaged`` (the writer that opens next creates
    an empty one, and ``repair`` re-indexes every file from disk); an unreadable seal is removed
    (the shard is then checked by its chunk counts, and sealed again when the writer closes).

    Args:
        config: The embedded store.
        embedding_model: The model the repairing pipeline embeds with.
        embedding_dim: Its vector size (None: unknown, taken from the stored vectors).
        embed: Embeds one document as the indexing pipeline does; None skips the model check.

    Returns:
        One line per file rebuilt; empty when nothing needed it.

    Raises:
        StoreError: A damaged file cannot be rebuilt; the line says why and to re-index.
    """
    from ragkit.stores.lock import StoreLock

    directory = Path(config.path).expanduser().resolve()
    first = diagnose_store(directory, config.collection)
    if first is None or first.writers_heal or not first.repairable:
        return []  # nothing to rebuild: the store's lock is not even taken
    lock = StoreLock(directory)
    lock.acquire()
    done: list[str] = []
    try:
        for _ in range(3):  # a moved Edge shard can leave a lost store.json to rebuild after it
            damage = diagnose_store(directory, config.collection)
            if damage is None or damage.writers_heal or not damage.repairable:
                return done
            if _in_edge_shard(directory, damage.file):
                done.append(_set_edge_shard_aside(directory, damage))
                continue
            _rebuild_file(directory, config, damage, done, embedding_model, embedding_dim, embed)
            break
    finally:
        lock.release()
    return done


def _in_edge_shard(directory: Path, file: Path) -> bool:
    """Whether ``file`` is the Edge shard's (or its seal), which repair sets aside, not rebuilds."""
    from ragkit.stores.edge import EDGE_DIR, seal_path

    shard = directory / EDGE_DIR
    return file == seal_path(shard) or file.is_relative_to(shard)


def _set_edge_shard_aside(directory: Path, damage: StoreDamage) -> str:
    """Remove an unreadable seal, or move a shard that failed its seal to ``edge.damaged``."""
    import shutil

    from ragkit.stores.edge import EDGE_DIR, seal_path

    shard = directory / EDGE_DIR
    seal = seal_path(shard)
    if damage.file == seal:
        seal.unlink()
        return (
            f"removed {seal} ({damage.problem.removeprefix('is ')}); the shard is checked by its "
            "chunk counts and sealed again when repair finishes"
        )
    aside = directory / EDGE_QUARANTINE
    if aside.exists():  # an older damaged shard: the newest one is the one worth keeping
        shutil.rmtree(aside)
    os.replace(shard, aside)
    seal.unlink(missing_ok=True)
    return (
        f"moved the Qdrant Edge shard to {aside} ({damage.file} {damage.problem}); every "
        f"indexed file is re-indexed from disk (delete {aside} once you no longer need it)"
    )


def _rebuild_file(
    directory: Path,
    config: EmbeddedStore,
    damage: StoreDamage,
    done: list[str],
    embedding_model: str,
    embedding_dim: int | None,
    embed: Callable[[Document], list[float] | None] | None,
) -> None:
    """Rebuild the damaged ``store.json`` or ``qdrant/meta.json`` (lock held by the caller)."""
    with _cannot_rebuild(damage):
        if damage.file.name == "store.json":
            if _data_engine(directory, config) == "local":
                # Qdrant reads the stored vectors only through an intact meta.json
                qdrant = _diagnose_local_qdrant(directory, config.collection)
                if qdrant is not None and qdrant.repairable and not qdrant.writers_heal:
                    with _cannot_rebuild(qdrant):
                        done.append(_rebuild_qdrant_meta(directory, config, embedding_dim))
            done.append(
                _rebuild_store_json(directory, config, embedding_model, embedding_dim, embed)
            )
        elif damage.file.name == "meta.json":
            done.append(_rebuild_qdrant_meta(directory, config, embedding_dim))


def _local_dim(directory: Path, collection: str) -> int | None:
    """The vector size Qdrant's intact ``meta.json`` records for ``collection``."""
    try:
        meta = _check_qdrant_meta(directory / "qdrant" / "meta.json", collection)
        vectors = meta["collections"][collection]["vectors"]
        return int(vectors["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _rebuild_store_json(
    directory: Path,
    config: EmbeddedStore,
    model: str,
    dim: int | None,
    embed: Callable[[Document], list[float] | None] | None,
) -> str:
    from ragkit.stores.layout import EMBEDDING_DIM, STORE_FORMAT

    engine = _data_engine(directory, config)
    recorded = _local_dim(directory, config.collection) if engine == "local" else None
    stored_dim, doc = _first_stored(directory, config, engine, recorded or dim or EMBEDDING_DIM)
    found_dim = stored_dim or recorded
    if dim is not None and found_dim is not None and found_dim != dim:
        raise _CannotRebuild(
            f"the store holds {found_dim}-d vectors, but the indexing pipeline's model "
            f"{model!r} makes {dim}-d ones",
            _OTHER_PIPELINE,
        )
    if doc is not None and doc.embedding is not None and embed is not None:
        again = embed(doc)
        similarity = _cosine(doc.embedding, again) if again else 0.0
        if similarity < SAME_MODEL_SIMILARITY:
            raise _CannotRebuild(
                f"its vectors were not made by the indexing pipeline's model {model!r} (a stored "
                f"chunk re-embedded with it has similarity {similarity:.4f})",
                _OTHER_PIPELINE,
            )
    final_dim = found_dim or dim or EMBEDDING_DIM
    meta = {
        "format": STORE_FORMAT,
        "embedding_model": model,
        "embedding_dim": final_dim,
        "engine": engine,
    }
    write_json_atomic(directory / "store.json", meta)
    return (
        f"rebuilt {directory / 'store.json'}: embedding model {model!r}, {final_dim}-d vectors, "
        f"{engine} engine"
    )


def _first_stored(
    directory: Path, config: EmbeddedStore, engine: str, dim: int
) -> tuple[int | None, Document | None]:
    """(vector size, document) of one stored chunk, or (None, None) for an empty store."""
    if engine == "edge":
        from ragkit.stores.edge import (
            EDGE_DIR,
            EdgeDocumentStore,
            edge_files_present,
            engine_failure,
        )

        path = directory / EDGE_DIR
        if not edge_files_present(path):
            return None, None
        try:
            store = EdgeDocumentStore(path, dim, read_only=True)
            try:
                doc = store.first_document()
            finally:
                store.close()
        except BaseException as exc:  # Rust panics are BaseExceptions; engine_failure sorts them
            if not engine_failure(exc):
                raise
            raise _CannotRebuild(f"its Qdrant Edge shard is unreadable ({_reason(exc)})") from None
        if doc is None or doc.embedding is None:
            return None, doc
        return len(doc.embedding), doc
    if not (directory / "qdrant" / "meta.json").exists():
        return None, None  # no collection yet: nothing stored to measure
    from haystack_integrations.document_stores.qdrant.converters import (
        convert_qdrant_point_to_haystack_document,
    )

    from ragkit.stores.layout import local_qdrant

    qdrant = local_qdrant(directory / "qdrant", config.collection, dim)
    try:
        try:
            qdrant.count_documents()
        except Exception as exc:  # noqa: BLE001 - sqlite, pickle, numpy and qdrant errors alike
            raise _CannotRebuild(f"Qdrant cannot load its points ({_reason(exc)})") from None
        points, _ = qdrant._client.scroll(
            collection_name=config.collection, limit=1, with_payload=True, with_vectors=True
        )
    finally:
        qdrant.close()
    if not points:
        return None, None
    vector = points[0].vector
    if isinstance(vector, dict):
        vector = next(iter(vector.values()), None)
    doc = convert_qdrant_point_to_haystack_document(points[0], use_sparse_embeddings=False)
    return (len(vector) if isinstance(vector, list) else None), doc


def _cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _rebuild_qdrant_meta(directory: Path, config: EmbeddedStore, dim: int | None) -> str:
    """Write the ``meta.json`` ragkit's own collections have, then check Qdrant loads the points.

    The config comes from Qdrant itself: an empty collection is created the way the store
    creates its own, in a scratch directory, and its entry is copied for every collection folder
    the file does not list. If the points then do not load, the damaged file is put back.
    """
    from ragkit.stores.layout import local_qdrant

    qdrant_dir = directory / "qdrant"
    meta_path = qdrant_dir / "meta.json"
    recorded, _ = read_store_json(directory)
    if recorded is not None:
        dim = int(recorded.get("embedding_dim", dim or 0)) or dim
    if dim is None:
        raise _CannotRebuild("the vector dimension is unknown (store.json is unreadable too)")
    names = {config.collection}
    if (qdrant_dir / "collection").is_dir():
        names |= {p.name for p in (qdrant_dir / "collection").iterdir() if p.is_dir()}
    try:  # a readable meta.json that only lacks a collection keeps what it has
        meta = _check_qdrant_meta(meta_path, config.collection)
    except (OSError, ValueError):
        meta = {"collections": {}, "aliases": {}}
    collections: dict[str, Any] = meta["collections"]
    with tempfile.TemporaryDirectory(prefix="ragkit-meta-") as scratch:
        for name in sorted(names - set(collections) | {config.collection}):
            path = Path(scratch) / name
            fresh = local_qdrant(path, name, dim)
            try:
                fresh.count_documents()
            finally:
                fresh.close()
            collections[name] = json.loads((path / "meta.json").read_text())["collections"][name]
    old = meta_path.read_bytes() if meta_path.exists() else None
    qdrant_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path, meta)
    check = local_qdrant(qdrant_dir, config.collection, dim)
    try:
        check.count_documents()  # loads every stored point into vectors of this dimension
    except Exception as exc:  # noqa: BLE001 - sqlite, pickle, numpy and qdrant errors alike
        check.close()
        if old is None:
            meta_path.unlink()
        else:  # keep the damaged original for whoever wants to look at it
            tmp = meta_path.with_suffix(".json.rebuild")
            tmp.write_bytes(old)
            os.replace(tmp, meta_path)
        raise _CannotRebuild(
            f"Qdrant cannot load the collection's points as {dim}-d vectors ({_reason(exc)})"
        ) from None
    check.close()
    return f"rebuilt {meta_path}: collection {config.collection!r} of {dim}-d vectors"
