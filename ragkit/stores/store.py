"""The ragkit store: a Qdrant document store for text + dense vectors, plus a BM25 index.

Embedded and in-memory stores keep BM25 in ragkit's own segmented index (fast, incremental,
persisted beside Qdrant). Server stores keep BM25 in Qdrant itself as sparse vectors with the
IDF modifier, so every client of the cluster sees the same lexical index.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import write_json_atomic
from ragkit.config import EmbeddedStore, MemoryStore, ServerStore
from ragkit.errors import RagkitError
from ragkit.stores.lock import StoreLock
from ragkit.stores.sparse import SparseBM25Encoder

if TYPE_CHECKING:
    from haystack import Document

    from ragkit.stores.bm25 import BM25Index

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
EMBEDDING_DIM = 384


class StoreError(RagkitError, RuntimeError):
    """The store cannot be opened or is inconsistent; the message says what to do."""


AnyStore = EmbeddedStore | MemoryStore | ServerStore


class RagkitStore:
    """One open store: Qdrant documents + BM25, with the lock and metadata of its directory.

    Use :func:`open_store` rather than the constructor so one process shares one client per path.
    """

    def __init__(self, config: AnyStore, embedding_model: str = "minilm") -> None:
        self.config = config
        self.embedding_model = embedding_model
        self.directory: Path | None = None
        self._lock: StoreLock | None = None
        self._bm25: BM25Index | None = None
        self._sparse: SparseBM25Encoder | None = None
        self._refs = 0
        self._open()

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

        cfg = self.config
        common: dict[str, Any] = {
            "index": cfg.collection,
            "embedding_dim": EMBEDDING_DIM,
            "similarity": "cosine",
            "progress_bar": False,
            "write_batch_size": 256,
        }
        if isinstance(cfg, EmbeddedStore):
            directory = Path(cfg.path).expanduser().resolve()
            if directory.exists() and not directory.is_dir():
                raise StoreError(f"store path {directory} is a file; give a directory for --store")
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = StoreLock(directory)
            self._lock.acquire()
            self.directory = directory
            try:
                self._check_meta()
                self.qdrant = QdrantDocumentStore(path=str(directory / "qdrant"), **common)
                self._bm25 = self._load_bm25()
            except BaseException:
                self._lock.release()
                raise
        elif isinstance(cfg, MemoryStore):
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
                **common,
            )
            self._sparse = SparseBM25Encoder()
            state = Path(cfg.state_dir).expanduser().resolve()
            self.directory = state / "servers" / _safe_name(f"{cfg.url}-{cfg.collection}")
            self.directory.mkdir(parents=True, exist_ok=True)

    def _check_meta(self) -> None:
        """Record the embedding model on first use and refuse a store built with another one."""
        assert self.directory is not None
        meta_path = self.directory / "store.json"
        meta = {"format": STORE_FORMAT, "embedding_model": self.embedding_model}
        if meta_path.exists():
            try:
                found = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError):
                raise StoreError(
                    f"{meta_path} is corrupt; delete the store directory and re-index"
                ) from None
            if found.get("format") != STORE_FORMAT:
                raise StoreError(
                    f"{meta_path}: store format {found.get('format')} is not {STORE_FORMAT}; re-index"
                )
            if found.get("embedding_model") != self.embedding_model:
                raise StoreError(
                    f"store {self.directory} was built with embedding model "
                    f"{found.get('embedding_model')!r}, not {self.embedding_model!r}; "
                    "use the same model or another --store"
                )
        elif any(p.name in {"qdrant", "bm25", "manifest.json"} for p in self.directory.iterdir()):
            raise StoreError(
                f"{self.directory} holds store files but no store.json; is it a ragkit store?"
            )
        else:
            write_json_atomic(meta_path, meta)

    def _load_bm25(self) -> BM25Index:
        from ragkit.stores.bm25 import BM25Index, BM25IndexError

        assert self.directory is not None
        bm25_dir = self.directory / "bm25"
        if not (bm25_dir / "manifest.json").exists():
            index = BM25Index()
        else:
            try:
                index = BM25Index.load(bm25_dir)
            except BM25IndexError as exc:
                logger.warning("%s; rebuilding BM25 from the stored documents", exc)
                index = self._rebuild_bm25()
        if len(index) != self.qdrant.count_documents():
            logger.warning(
                "BM25 index has %d chunks but Qdrant has %d; rebuilding BM25 from Qdrant",
                len(index),
                self.qdrant.count_documents(),
            )
            index = self._rebuild_bm25()
        return index

    def _rebuild_bm25(self) -> BM25Index:
        from ragkit.stores.bm25 import BM25Index

        index = BM25Index()
        docs = self.qdrant.filter_documents()
        if docs:
            index.add(
                [d.id for d in docs],
                [d.content or "" for d in docs],
                [str((d.meta or {}).get("source", "")) for d in docs],
            )
        assert self.directory is not None
        index.save(self.directory / "bm25")
        return index

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

        if not documents:
            return 0
        docs = list(documents)
        if self._sparse is not None:
            docs = [
                dataclasses.replace(
                    d, sparse_embedding=self._sparse.encode_document(d.content or "")
                )
                for d in docs
            ]
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
        n = self.qdrant.delete_by_filter(
            {"field": "meta.source", "operator": "==", "value": source}
        )
        if self._bm25 is not None:
            self._bm25.delete_source(source)
        return n

    def commit(self) -> None:
        """Persist the BM25 index (Qdrant persists on every write)."""
        if self._bm25 is not None and isinstance(self.config, EmbeddedStore):
            assert self.directory is not None
            self._bm25.save(self.directory / "bm25")

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        """Number of chunks in the store."""
        return self.qdrant.count_documents()

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
        }
        if self.directory is not None:
            out["directory"] = str(self.directory)
        if self._bm25 is not None:
            out["bm25"] = self._bm25.stats()
        else:
            out["bm25"] = {"backend": "qdrant-sparse-idf"}
        return out


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120]


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

    def open(self, config: AnyStore, embedding_model: str) -> RagkitStore:
        key = self.key(config)
        with self._lock:
            if key is not None and key in self._stores:
                store = self._stores[key]
            else:
                store = RagkitStore(config, embedding_model=embedding_model)
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


def open_store(config: AnyStore, embedding_model: str = "minilm") -> RagkitStore:
    """Open (or share the already open) store for ``config``; pair with :func:`release_store`."""
    return _OPEN.open(config, embedding_model)


def release_store(store: RagkitStore) -> None:
    """Give back a store from :func:`open_store`; the last release closes it."""
    _OPEN.release(store)
