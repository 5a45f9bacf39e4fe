"""The ragkit store: a Qdrant document store for text + dense vectors, plus a BM25 index.

Embedded and in-memory stores keep BM25 in ragkit's own segmented index (fast, incremental,
persisted beside Qdrant). Server stores keep BM25 in Qdrant itself as sparse vectors with the
IDF modifier, so every client of the cluster sees the same lexical index.

Opening a store never rebuilds or saves anything, so read-only commands (``query``, ``stats``)
cannot destroy an intact half of a damaged store. A BM25 index that fails its checks is reported
in ``bm25_problem``; writers (``ragkit index``, ``ragkit repair``) call :meth:`rebuild_bm25` or
re-index the affected files. ``store.json`` records the embedding model and its dimension, and
writes or queries with vectors of another dimension are refused. Embedded stores run on one of
two vector engines, recorded in ``store.json`` too: Qdrant Edge (HNSW in Rust,
:mod:`ragkit.stores.edge`; the default for new stores since it keeps every guarantee local mode
keeps) or Qdrant local mode (``engine: local``, exact, in Python; what older stores recorded).
:func:`migrate_to_edge` (``ragkit repair --migrate``) moves a local-mode store to Edge without
re-embedding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import write_json_atomic
from ragkit.config import EmbeddedStore, MemoryStore, ServerStore
from ragkit.defaults import TORCH_EMBEDDING_MODEL, default_embedding_model
from ragkit.redact import credentials, redact_url
from ragkit.stores.damage import StoreDamage, diagnose_store, holds_store
from ragkit.stores.layout import (
    DEFAULT_ENGINE,
    EMBEDDING_DIM,
    LOCAL_HINT_CHUNKS,
    STORE_FORMAT,
    StoreError,
    local_qdrant,
)
from ragkit.stores.lock import StoreLock
from ragkit.stores.sparse import SparseBM25Encoder

if TYPE_CHECKING:
    from haystack import Document

    from ragkit.stores.bm25 import BM25Index

logger = logging.getLogger(__name__)


AnyStore = EmbeddedStore | MemoryStore | ServerStore
ModelFiles = Callable[[str], "Path | None"]
"""A model name -> its local files (None: not local); the model registry's knowledge, injected."""


class RagkitStore:
    """One open store: Qdrant documents + BM25, with the lock and metadata of its directory.

    Use :func:`open_store` rather than the constructor so one process shares one client per path.
    """

    def __init__(
        self,
        config: AnyStore,
        embedding_model: str | None = None,
        embedding_dim: int | None = None,
        read_only: bool = False,
        model_files: ModelFiles | None = None,
    ) -> None:
        """Open a store.

        Args:
            config: where the store lives.
            embedding_model: the model whose vectors the caller writes or queries with; None
                takes the store's recorded model (for a new store the default,
                :func:`ragkit.defaults.default_embedding_model`; MiniLM on torch for a Qdrant
                server collection, which records none). A store recorded
                with another model is refused.
            embedding_dim: that model's vector size; None takes the recorded one (384 for a
                new store). A store recorded with another dimension is refused.
            read_only: for commands that only read (``query``, ``stats``): the store must
                exist, a Qdrant half whose files are gone is reported instead of recreated,
                and every write raises :class:`StoreError`.
            model_files: Where a model name's files are (the caller's model registry, e.g.
                :func:`ragkit.models.registry.model_files`), so that two names of one model
                (``minilm`` and its directory) are one; None: names must be equal.
        """
        self.config = config
        self.read_only = read_only
        self._model_files = model_files
        self._asked_model = embedding_model
        self._asked_dim = embedding_dim
        self.embedding_model = embedding_model or new_store_model(config)
        self.embedding_dim = embedding_dim or EMBEDDING_DIM
        self.directory: Path | None = None
        # embedded stores: "local" (Qdrant local mode) or "edge" (Qdrant Edge); None otherwise
        self.engine: str | None = None
        self._lock: StoreLock | None = None
        self._bm25: BM25Index | None = None
        self.bm25_problem: str | None = None
        self._sparse: SparseBM25Encoder | None = None
        self._refs = 0
        self._open()

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

        cfg = self.config
        common: dict[str, Any] = {
            "index": cfg.collection,
            "similarity": "cosine",
            "progress_bar": False,
            "write_batch_size": 256,
        }
        if isinstance(cfg, EmbeddedStore):
            directory = Path(cfg.path).expanduser().resolve()
            if directory.exists() and not directory.is_dir():
                raise StoreError(f"store path {directory} is a file; give a directory for --store")
            if self.read_only and not holds_store(directory):
                raise StoreError(
                    f"no ragkit store at {directory}; "
                    f"run `ragkit index PATH --store {directory}` first"
                )
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = StoreLock(directory)
            self._lock.acquire()
            self.directory = directory
            try:
                if _planned_engine(directory, cfg) == "edge":
                    # before store.json names an engine that cannot run
                    from ragkit.stores.edge import import_edge

                    import_edge()
                # the one diagnosis every command makes, so they name the same file and remedy;
                # writers recreate a lost collection and re-index what it held
                damage = diagnose_store(directory, cfg.collection)
                if damage is not None and (self.read_only or not damage.writers_heal):
                    raise StoreError(damage.message())
                self._check_meta()
                if self.engine == "edge":
                    self.qdrant = self._open_edge(directory)
                else:
                    self.qdrant = local_qdrant(
                        directory / "qdrant", cfg.collection, self.embedding_dim
                    )
                    chunks = _probe_local_qdrant(self.qdrant, directory)
                    if chunks > LOCAL_HINT_CHUNKS:
                        logger.warning(local_mode_hint(directory, chunks))
                self._bm25 = self._load_bm25()
            except BaseException:
                self._lock.release()
                raise
        elif isinstance(cfg, MemoryStore):
            common["embedding_dim"] = self.embedding_dim
            sparse = cfg.bm25 == "sparse"
            self.qdrant = QdrantDocumentStore(
                location=":memory:", use_sparse_embeddings=sparse, sparse_idf=sparse, **common
            )
            if sparse:
                self._sparse = SparseBM25Encoder()
            else:
                from ragkit.stores.bm25 import BM25Index

                self._bm25 = BM25Index()
        else:
            from haystack.utils import Secret

            common["embedding_dim"] = self.embedding_dim
            api_key = (
                Secret.from_env_var(cfg.api_key_env, strict=False) if cfg.api_key_env else None
            )
            self.qdrant = QdrantDocumentStore(
                url=cfg.url,
                api_key=api_key,
                prefer_grpc=cfg.prefer_grpc,
                timeout=cfg.timeout,
                shard_number=cfg.shard_number,
                replication_factor=cfg.replication_factor,
                write_consistency_factor=cfg.write_consistency_factor,
                use_sparse_embeddings=True,
                sparse_idf=True,
                # its version check runs in a thread that warns on stderr after our one-line
                # error when the server is down; _probe_server reports reachability instead
                client_kwargs={"check_compatibility": False},
                **common,
            )
            self._sparse = SparseBM25Encoder()
            _probe_server(self.qdrant, cfg.url)
            # not created here: the manifest's atomic write makes it when indexing records a file
            self.directory = server_state_dir(cfg)

    def _open_edge(self, directory: Path) -> Any:
        """Open (or, for writers, create) the Qdrant Edge shard in ``directory/edge``."""
        from ragkit.stores.edge import (
            EDGE_DIR,
            EdgeDocumentStore,
            edge_files_present,
            engine_failure,
            import_edge,
        )

        assert isinstance(self.config, EmbeddedStore)
        path = directory / EDGE_DIR
        import_edge()  # a missing package is its own one-line error, not "damaged"
        if self.read_only and not edge_files_present(path):
            # a writer's open replays the shard's log, and index / repair re-index the rest
            damage = StoreDamage(directory, path, "is missing or empty (Qdrant Edge shard)")
            raise StoreError(damage.message())
        try:
            store = EdgeDocumentStore(
                path, self.embedding_dim, read_only=self.read_only, hnsw_ef=self.config.hnsw_ef
            )
            store.count_documents()
        except BaseException as exc:  # Rust panics are BaseExceptions; engine_failure sorts them
            if not engine_failure(exc):
                raise
            reason = " ".join(str(exc).split())[:200]
            damage = StoreDamage(directory, path, f"is unreadable ({reason})", repairable=False)
            raise StoreError(damage.message()) from None
        return store

    def _check_meta(self) -> None:
        """Record the embedding model, dimension and engine on first use; refuse a mismatch."""
        assert self.directory is not None
        assert isinstance(self.config, EmbeddedStore)
        meta_path = self.directory / "store.json"
        asked_engine = self.config.engine
        self.engine = asked_engine or DEFAULT_ENGINE
        meta = {
            "format": STORE_FORMAT,
            "embedding_model": self.embedding_model,
            "embedding_dim": self.embedding_dim,
            "engine": self.engine,
        }
        if meta_path.exists():
            try:
                found = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:  # changed since diagnose_store
                damage = StoreDamage(self.directory, meta_path, f"is unreadable ({exc})")
                raise StoreError(damage.message()) from None
            if found.get("format") != STORE_FORMAT:
                raise StoreError(
                    f"{meta_path}: store format {found.get('format')} is not {STORE_FORMAT}; re-index"
                )
            recorded = found.get("embedding_model")
            if self._asked_model is not None and not same_embedding_model(
                str(recorded), self._asked_model, self._model_files
            ):
                raise StoreError(
                    f"store {self.directory} was built with embedding model "
                    f"{recorded!r}, not {self._asked_model!r}; "
                    "use the same model or another --store"
                )
            # stores written before the dimension was recorded all hold MiniLM's 384-d vectors
            dim = found.get("embedding_dim", EMBEDDING_DIM)
            if self._asked_dim is not None and dim != self._asked_dim:
                raise StoreError(
                    f"store {self.directory} holds {dim}-d vectors of {recorded!r}, but the "
                    f"embedder makes {self._asked_dim}-d ones; use the same model or another --store"
                )
            # stores written before the engine was recorded are all Qdrant local mode
            engine = found.get("engine", "local")
            if asked_engine is not None and engine != asked_engine:
                raise StoreError(
                    f"store {self.directory} was built with the {engine!r} vector engine, not "
                    f"{asked_engine!r}; set store.engine: {engine} (or leave it out), or "
                    "index into another --store"
                )
            self.embedding_model = str(recorded)
            self.embedding_dim = int(dim)
            self.engine = str(engine)
        elif holds_store(self.directory):  # store files appeared since diagnose_store
            raise StoreError(StoreDamage(self.directory, meta_path, "is missing").message())
        else:
            write_json_atomic(meta_path, meta)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self._where()} was opened read-only")

    def _load_bm25(self) -> BM25Index:
        """Load the saved BM25 index; a damaged one is reported, never rebuilt here (no writes)."""
        from ragkit.stores.bm25 import BM25Index, BM25IndexError

        assert self.directory is not None
        bm25_dir = self.directory / "bm25"
        if not (bm25_dir / "manifest.json").exists():
            if bm25_dir.is_dir() and any(bm25_dir.iterdir()):
                self.bm25_problem = f"BM25 index in {bm25_dir} has no manifest.json"
            return BM25Index()
        try:
            return BM25Index.load(bm25_dir)
        except BM25IndexError as exc:
            self.bm25_problem = str(exc)
            return BM25Index()

    def rebuild_bm25(self) -> None:
        """Rebuild the whole BM25 index from the texts in Qdrant and save it (writers only)."""
        from ragkit.stores.bm25 import BM25Index

        self._writable()
        if self._bm25 is None:
            return
        index = BM25Index()
        docs = self.qdrant.filter_documents()
        if docs:
            index.add(
                [d.id for d in docs],
                [d.content or "" for d in docs],
                [str((d.meta or {}).get("source", "")) for d in docs],
            )
        self._bm25 = index
        self.bm25_problem = None
        self.commit()

    def resync_bm25_source(self, source: str) -> int:
        """Replace one source's BM25 entries with its chunks in Qdrant; returns chunks indexed."""
        self._writable()
        if self._bm25 is None:
            return 0
        self._bm25.delete_source(source)
        docs = self.qdrant.filter_documents(
            {"field": "meta.source", "operator": "==", "value": source}
        )
        if docs:
            self._bm25.add(
                [d.id for d in docs], [d.content or "" for d in docs], [source] * len(docs)
            )
        return len(docs)

    def close(self) -> None:
        """Close the Qdrant client and release the directory lock."""
        try:
            self.qdrant.close()
        except Exception:  # noqa: BLE001 - closing must not mask the caller's error
            logger.debug("qdrant close failed", exc_info=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RagkitStore:
        return self

    def __exit__(self, *exc: object) -> None:
        release_store(self)

    # ------------------------------------------------------------------ writing
    def write(self, documents: Sequence[Document]) -> int:
        """Upsert chunks (with dense embeddings) into Qdrant and BM25; ids make it idempotent."""
        from haystack.document_stores.types import DuplicatePolicy

        self._writable()
        if not documents:
            return 0
        docs = list(documents)
        for d in docs:
            if d.embedding is not None and len(d.embedding) != self.embedding_dim:
                raise StoreError(
                    f"chunk of {d.meta.get('source', d.id)} has a {len(d.embedding)}-d embedding, "
                    f"but store {self._where()} holds {self.embedding_dim}-d vectors of "
                    f"{self.embedding_model!r}; embed with that model or use another --store"
                )
        if self._sparse is not None:
            docs = [
                dataclasses.replace(
                    d, sparse_embedding=self._sparse.encode_document(d.content or "")
                )
                for d in docs
            ]
        with warnings.catch_warnings():  # local mode's "use a server" past 20k: see the hint
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            written = self.qdrant.write_documents(docs, policy=DuplicatePolicy.OVERWRITE)
        if self._bm25 is not None:
            self._bm25.add(
                [d.id for d in docs],
                [d.content or "" for d in docs],
                [str(d.meta.get("source", "")) for d in docs],
            )
        return written

    def delete_source(self, source: str) -> int:
        """Delete every chunk of one source file from Qdrant and BM25."""
        self._writable()
        n = self.qdrant.delete_by_filter(
            {"field": "meta.source", "operator": "==", "value": source}
        )
        if self._bm25 is not None:
            self._bm25.delete_source(source)
        return n

    def commit(self) -> None:
        """Persist the BM25 index (Qdrant persists on every write).

        Raises:
            StoreError: the saved BM25 index was damaged and not rebuilt; saving the partial
                in-memory one would hide the damage.
        """
        self._writable()
        if self.engine == "edge":
            self.qdrant.commit()
        if self._bm25 is not None and isinstance(self.config, EmbeddedStore):
            assert self.directory is not None
            if self.bm25_problem is not None:
                raise StoreError(
                    f"{self.bm25_problem}; run `ragkit repair --store {self.directory}`"
                )
            self._bm25.save(self.directory / "bm25")

    def _where(self) -> str:
        return str(self.directory) if self.directory is not None else self.config.kind

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        """Number of chunks in the store."""
        return self.qdrant.count_documents()

    def qdrant_source_counts(self) -> dict[str, int]:
        """Chunks per ``meta.source`` in Qdrant (payloads only, no vectors)."""
        from collections import Counter

        if self.engine == "edge":
            return self.qdrant.source_counts()

        counts: Counter[str] = Counter()
        for _, meta in self._local_id_meta():
            counts[str(meta.get("source", ""))] += 1
        return dict(counts)

    def title_ids(self) -> dict[str, list[str]]:
        """Chunk ids per ``meta.title`` (payloads only, no vectors), for following title links.

        One pass over the store; chunks without a title are left out.
        """
        titles: dict[str, list[str]] = {}
        pairs = self.qdrant.id_meta() if self.engine == "edge" else self._local_id_meta()
        for doc_id, meta in pairs:
            title = meta.get("title")
            if isinstance(title, str) and title:
                titles.setdefault(title, []).append(doc_id)
        return titles

    def _local_id_meta(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(id, meta)`` of every point of a local-mode or server collection."""
        self.qdrant._initialize_client()
        client = self.qdrant._client
        offset = None
        while True:
            points, offset = client.scroll(
                collection_name=self.config.collection,
                limit=1024,
                offset=offset,
                with_payload=["id", "meta"],
                with_vectors=False,
            )
            for point in points:
                payload = point.payload or {}
                yield str(payload.get("id", point.id)), payload.get("meta") or {}
            if offset is None:
                return

    def documents_by_id(self, ids: Sequence[str]) -> list[Document]:
        """The chunks with these ids, dense vectors included, in the order of ``ids``.

        Missing ids are left out.
        """
        if not ids:
            return []
        found = {d.id: d for d in self.qdrant.get_documents_by_id(list(ids))}
        if self.engine == "edge" and any(d.embedding is None for d in found.values()):
            found = {d.id: d for d in self.qdrant.get_documents_by_id(list(ids), vectors=True)}
        return [found[i] for i in ids if i in found]

    def bm25_count(self) -> int | None:
        """Chunks in ragkit's BM25 index; None when BM25 lives in Qdrant."""
        return None if self._bm25 is None else len(self._bm25)

    def bm25_source_counts(self) -> dict[str, int] | None:
        """Chunks per source in ragkit's BM25 index; None when BM25 lives in Qdrant."""
        if self._bm25 is None:
            return None
        return self._bm25.source_counts()

    def bm25_search(self, query: str, top_k: int = 10) -> list[Document]:
        """Lexical search; returns documents with ``score`` set, best first."""
        if self._sparse is not None:
            from haystack_integrations.components.retrievers.qdrant import (
                QdrantSparseEmbeddingRetriever,
            )

            sparse = self._sparse.encode_query(query)
            if not sparse.indices:
                return []
            retriever = QdrantSparseEmbeddingRetriever(document_store=self.qdrant, top_k=top_k)
            return retriever.run(query_sparse_embedding=sparse)["documents"]
        assert self._bm25 is not None
        hits = self._bm25.search(query, top_k=top_k)
        if not hits:
            return []
        by_id = {d.id: d for d in self.qdrant.get_documents_by_id([h[0] for h in hits])}
        return [
            dataclasses.replace(by_id[doc_id], score=float(score))
            for doc_id, score in hits
            if doc_id in by_id
        ]

    def dense_search(
        self, embedding: list[float], top_k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[Document]:
        """Cosine search over the dense vectors."""
        if len(embedding) != self.embedding_dim:
            raise StoreError(
                f"the query embedding has {len(embedding)} dimensions, but store "
                f"{self._where()} holds {self.embedding_dim}-d vectors of "
                f"{self.embedding_model!r}; embed queries with that model"
            )
        if self.engine == "edge":
            return self.qdrant.embedding_retrieval(embedding, top_k=top_k, filters=filters)
        from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever

        retriever = QdrantEmbeddingRetriever(document_store=self.qdrant, top_k=top_k)
        return retriever.run(query_embedding=embedding, filters=filters)["documents"]

    def stats(self) -> dict[str, Any]:
        """Counts and locations for ``ragkit stats``."""
        out: dict[str, Any] = {
            "kind": self.config.kind,
            "collection": self.config.collection,
            "chunks": self.count(),
            "embedding_model": self.embedding_model,
            "embedding_dim": self.embedding_dim,
        }
        if self.directory is not None:
            out["directory"] = str(self.directory)
        if self.engine is not None:
            out["engine"] = self.engine
        if self._bm25 is not None:
            out["bm25"] = self._bm25.stats()
        else:
            out["bm25"] = {"backend": "qdrant-sparse-idf"}
        return out


def new_store_model(config: AnyStore, device: str = "auto") -> str:
    """The model a store opened without one records (or, for a server collection, assumes).

    Embedded and in-memory stores get the default for ``device``, the model an embedder naming
    none uses, so chunks embedded by ``DocumentEmbedder()`` land in a store that says so. A
    server collection records no model, and its queries have always embedded with MiniLM on
    torch. ``ragkit index`` asks this too, for a store without a record.
    """
    if isinstance(config, ServerStore):
        return TORCH_EMBEDDING_MODEL
    return default_embedding_model(device)


def recorded_embedding(config: AnyStore) -> tuple[str, int] | None:
    """(model, dimension) an existing embedded store recorded in ``store.json``, without opening it.

    Lets ``ragkit index`` skip loading the embedder just to measure a dimension already known.
    """
    if not isinstance(config, EmbeddedStore):
        return None
    meta_path = Path(config.path).expanduser().resolve() / "store.json"
    try:
        found = json.loads(meta_path.read_text(encoding="utf-8"))
        return str(found["embedding_model"]), int(found.get("embedding_dim", EMBEDDING_DIM))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def same_embedding_model(a: str, b: str, model_files: ModelFiles | None = None) -> bool:
    """Whether two model names embed alike: equal, or naming the same local files.

    ``minilm`` and the packaged directory it names are one model; refusing one for the other
    would make a store built with either unusable from a profile that names the other. Which
    files a name means is the model layer's knowledge: the caller hands it in as
    ``model_files`` (the store layer does not import the models).
    """
    if a == b:
        return True
    if model_files is None:
        return False
    pa, pb = model_files(a), model_files(b)
    return pa is not None and pb is not None and Path(pa).resolve() == Path(pb).resolve()


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120]


def server_state_dir(cfg: ServerStore) -> Path:
    """Local directory for a server collection's manifest, named without any credential."""
    state = Path(cfg.state_dir).expanduser().resolve()
    return state / "servers" / _safe_name(f"{redact_url(cfg.url)}-{cfg.collection}")


def _probe_server(qdrant: Any, url: str) -> None:
    """Reach the server once now, so a wrong URL is one line naming it (password hidden)."""
    try:
        qdrant.count_documents()
    except Exception as exc:  # noqa: BLE001 - qdrant-client/httpx raise many types for one cause
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        reason = reason.replace(url, redact_url(url))
        for secret in credentials(url):
            reason = reason.replace(secret, "***")
        raise StoreError(
            f"cannot reach the Qdrant server at {redact_url(url)} ({reason}); "
            "is it running, and are the URL and API key right?"
        ) from None


def _planned_engine(directory: Path, cfg: EmbeddedStore) -> str:
    """The engine the store in ``directory`` runs on once opened: the config's, else the
    recorded one, else (a new store) :data:`DEFAULT_ENGINE`."""
    if cfg.engine is not None:
        return cfg.engine
    try:
        found = json.loads((directory / "store.json").read_text(encoding="utf-8"))
        return str(found.get("engine", "local"))
    except FileNotFoundError:
        return "local" if holds_store(directory) else DEFAULT_ENGINE
    except (OSError, ValueError, AttributeError):
        return "local"  # damaged: diagnose_store names it before any engine is needed


def local_mode_hint(directory: Path, chunks: int) -> str:
    """The one line that points a large local-mode store at Qdrant Edge (and how to move it)."""
    return (
        f"store {directory} holds {chunks:,} chunks in Qdrant local mode, which scans every vector "
        f"in Python (slow past {LOCAL_HINT_CHUNKS:,}); `ragkit repair --migrate --store "
        f"{directory}` moves it to Qdrant Edge (HNSW) without re-embedding"
    )


def _probe_local_qdrant(qdrant: Any, directory: Path) -> int:
    """Open Qdrant's local files now, so a corrupt one is one line instead of a traceback.

    Returns:
        The number of chunks. qdrant-client's own warning past 20,000 points (use a server) is
        left out: ragkit says it once, with the embedded way out (:func:`local_mode_hint`).
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            return int(qdrant.count_documents())
    except Exception as exc:  # noqa: BLE001 - sqlite, json, pickle and qdrant errors alike
        reason = " ".join(str(exc).split())[:200]
        damage = StoreDamage(
            directory,
            directory / "qdrant",
            f"is unreadable ({type(exc).__name__}: {reason})",
            repairable=False,
        )
        raise StoreError(damage.message()) from None


class _OpenStores:
    """Open stores of this process keyed by location, so components share one client per path.

    Qdrant local mode refuses a second client on the same directory even within one process;
    this table is the one piece of process state ragkit keeps, and it only holds open handles.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, RagkitStore] = {}

    @staticmethod
    def key(config: AnyStore) -> str | None:
        if isinstance(config, EmbeddedStore):
            return str(Path(config.path).expanduser().resolve())
        if isinstance(config, ServerStore):
            return f"{config.url}#{config.collection}"
        return None  # every :memory: store is its own

    def open(
        self,
        config: AnyStore,
        embedding_model: str | None,
        embedding_dim: int | None,
        read_only: bool,
        model_files: ModelFiles | None = None,
    ) -> RagkitStore:
        key = self.key(config)
        with self._lock:
            if key is not None and key in self._stores:
                store = self._stores[key]
                if embedding_model is not None and not same_embedding_model(
                    embedding_model, store.embedding_model, model_files or store._model_files
                ):
                    raise StoreError(
                        f"store {store._where()} was built with embedding model "
                        f"{store.embedding_model!r}, not {embedding_model!r}; "
                        "use the same model or another --store"
                    )
                if store.read_only and not read_only:
                    raise StoreError(f"store {store._where()} is already open read-only")
                asked = getattr(config, "engine", None)
                if asked is not None and asked != store.engine:
                    raise StoreError(
                        f"store {store._where()} was built with the {store.engine!r} vector "
                        f"engine, not {asked!r}; set store.engine: {store.engine} (or leave it out)"
                    )
            else:
                store = RagkitStore(
                    config,
                    embedding_model=embedding_model,
                    embedding_dim=embedding_dim,
                    read_only=read_only,
                    model_files=model_files,
                )
                if key is not None:
                    self._stores[key] = store
            store._refs += 1
            return store

    def release(self, store: RagkitStore) -> None:
        with self._lock:
            store._refs -= 1
            if store._refs > 0:
                return
            key = self.key(store.config)
            if key is not None and self._stores.get(key) is store:
                del self._stores[key]
        store.close()


_OPEN = _OpenStores()


def open_store(
    config: AnyStore,
    embedding_model: str | None = None,
    embedding_dim: int | None = None,
    read_only: bool = False,
    model_files: ModelFiles | None = None,
) -> RagkitStore:
    """Open (or share the already open) store for ``config``; pair with :func:`release_store`.

    Args:
        config: where the store lives.
        embedding_model: the model the caller embeds with; None takes the store's recorded one.
        embedding_dim: that model's dimension; None takes the store's recorded one.
        read_only: open for reading only (see :class:`RagkitStore`).
        model_files: name -> local files of a model, so two names of one model match (see
            :class:`RagkitStore`); None: names must be equal.

    Returns:
        The open store; opening never rebuilds or saves anything.
    """
    return _OPEN.open(config, embedding_model, embedding_dim, read_only, model_files)


def release_store(store: RagkitStore) -> None:
    """Give back a store from :func:`open_store`; the last release closes it."""
    _OPEN.release(store)


# ------------------------------------------------------------------ local mode -> Qdrant Edge

_MIGRATING = "edge.migrating"
_MIGRATED_LOCAL = "qdrant.migrated"


@dataclasses.dataclass(frozen=True)
class Migration:
    """What :func:`migrate_to_edge` did.

    Attributes:
        directory: The store directory.
        chunks: Chunks copied (0 when the store was on Edge already).
        already: The store was on Qdrant Edge already; nothing changed.
        seconds: Wall time of the copy, the HNSW build and the swap.
    """

    directory: Path
    chunks: int
    already: bool = False
    seconds: float = 0.0

    def line(self) -> str:
        """The one line ``ragkit repair --migrate`` prints."""
        if self.already:
            return f"store {self.directory} is on Qdrant Edge already; nothing to migrate"
        return (
            f"migrated store {self.directory} from Qdrant local mode to Qdrant Edge: "
            f"{self.chunks} chunks copied without re-embedding ({self.seconds:.1f} s)"
        )


def migrate_to_edge(config: EmbeddedStore, progress: bool = False) -> Migration:
    """Move an embedded store from Qdrant local mode to Qdrant Edge, vectors and payloads as-is.

    Nothing is re-embedded: every point is copied with its id, vector and payload, so the Edge
    store returns the same documents, and BM25 and the manifest stay valid as they are. The
    Edge shard is built beside the store (``edge.migrating``), committed, sealed and counted;
    only then is it renamed into place and ``store.json`` switched to ``engine: edge`` (the one
    atomic step that changes which engine the store uses). Until that step the local-mode
    store is untouched, so a failure or a kill at any point leaves it working as before; a
    rerun discards the half-built shard. The old ``qdrant/`` folder is removed last.

    Args:
        config: The embedded store (its ``engine`` setting is ignored: the data decides).
        progress: Show a progress bar on stderr.

    Returns:
        The :class:`Migration`; ``already`` when the store was on Edge.

    Raises:
        StoreError: No store there, a damaged one (repair it first), or the copy disagrees.
        StoreInUseError: Another process holds the store.
    """
    import shutil
    import time

    from ragkit.stores.edge import (
        EDGE_DIR,
        EdgeDocumentStore,
        engine_failure,
        import_edge,
        seal_path,
    )
    from ragkit.stores.lock import StoreLock

    directory = Path(config.path).expanduser().resolve()
    if not holds_store(directory):
        raise StoreError(f"no ragkit store at {directory}; nothing to migrate")
    import_edge()
    lock = StoreLock(directory)
    lock.acquire()
    try:
        damage = diagnose_store(directory, config.collection)
        if damage is not None:
            raise StoreError(f"{damage.message()}, then migrate")
        meta = json.loads((directory / "store.json").read_text(encoding="utf-8"))
        if meta.get("engine", "local") == "edge":
            return Migration(directory, 0, already=True)
        start = time.perf_counter()
        building = directory / _MIGRATING
        for stale in (building, directory / EDGE_DIR):  # left by an interrupted migration
            if stale.exists():
                shutil.rmtree(stale)
            seal_path(stale).unlink(missing_ok=True)
        dim = int(meta.get("embedding_dim", EMBEDDING_DIM))
        local = local_qdrant(directory / "qdrant", config.collection, dim)
        try:
            total = _probe_local_qdrant(local, directory)
            edge = EdgeDocumentStore(building, dim)
            try:
                copied = _copy_points(local, config.collection, edge, total, progress)
                edge.commit()  # the HNSW build, before anything points at the new shard
                count = edge.count_documents()
            finally:
                edge.close()
        finally:
            local.close()
        if copied != total or count != total:
            raise StoreError(
                f"migrating {directory}: copied {copied} and Qdrant Edge counts {count} of the "
                f"{total} chunks; the local-mode store is unchanged"
            )
        os.replace(building, directory / EDGE_DIR)
        os.replace(seal_path(building), seal_path(directory / EDGE_DIR))
        write_json_atomic(directory / "store.json", {**meta, "engine": "edge"})
        # migrated: the local-mode files are no longer read; a crash here only leaves them
        old = directory / _MIGRATED_LOCAL
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory / "qdrant", old)
        shutil.rmtree(old, ignore_errors=True)
        return Migration(directory, total, seconds=time.perf_counter() - start)
    except BaseException as exc:
        building = directory / _MIGRATING
        if building.exists():  # the store still reads local mode: the half-built shard goes
            shutil.rmtree(building, ignore_errors=True)
        seal_path(building).unlink(missing_ok=True)
        if isinstance(exc, StoreError) or not engine_failure(exc):
            raise  # ours already says what to do; Ctrl-C and exits stay what they are
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise StoreError(
            f"migrating {directory} to Qdrant Edge failed ({type(exc).__name__}: {reason}); "
            "the local-mode store is unchanged"
        ) from exc
    finally:
        lock.release()


def _copy_points(local: Any, collection: str, edge: Any, total: int, progress: bool) -> int:
    """Copy every point (id, vector, payload) from local mode into the Edge shard; returns how many."""
    import sys

    from tqdm import tqdm

    qe = edge._qe
    client = local._client
    copied = 0
    offset = None
    with tqdm(
        total=total, unit="chunk", desc="migrating", file=sys.stderr, disable=not progress
    ) as bar:
        while True:
            points, offset = client.scroll(
                collection_name=collection,
                limit=1024,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            batch = []
            for point in points:
                vector = point.vector
                if isinstance(vector, dict):  # a named dense vector: the store's only one
                    vector = next(iter(vector.values()))
                batch.append(qe.Point(id=str(point.id), vector=list(vector), payload=point.payload))
            if batch:
                edge._shard.update(qe.UpdateOperation.upsert_points(batch))
                copied += len(batch)
                bar.update(len(batch))
            if offset is None:
                return copied
