"""Index an evaluation dataset's passages into its own store, pooled or per question.

``pooled`` puts every passage of the dataset in one store, so each question's retrieval faces
the other questions' paragraphs as hard negatives; the store is cached and reused across runs.
``per-question`` builds a small in-memory store from the question's own paragraphs only (the
distractor setting).
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING

from ragkit.config import EmbeddedStore, MemoryStore
from ragkit.models.registry import model_files

if TYPE_CHECKING:
    from haystack import Document

    from ragkit.evaluation.datasets import Dataset, Passage
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import RagkitStore


def passage_documents(passages: list[Passage], dataset: str) -> list[Document]:
    """Passages as store documents: title + text as content, passage id kept in meta."""
    from haystack import Document

    return [
        Document(
            id=p.id,
            content=f"{p.title}\n{p.text}" if p.title else p.text,
            meta={"passage_id": p.id, "title": p.title, "source": dataset, "position": i},
        )
        for i, p in enumerate(passages)
    ]


def pooled_store(
    dataset: Dataset, embedder: DocumentEmbedder, embedding_model: str, progress: bool = True
) -> RagkitStore:
    """Open (building on first use) the cached store holding all of ``dataset``'s passages."""
    from ragkit.models.gguf_cache import default_cache_dir
    from ragkit.stores.store import open_store

    passages = dataset.pooled_passages()
    key = hashlib.sha256(
        ("\n".join(sorted(p.id for p in passages)) + embedding_model).encode()
    ).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.name)
    path = default_cache_dir() / "eval-stores" / f"{safe}-{key}"
    store = open_store(
        EmbeddedStore(path=str(path)), embedding_model=embedding_model, model_files=model_files
    )
    if store.count() == len(passages):
        if store.bm25_problem or store.bm25_count() != store.count():
            store.rebuild_bm25()  # a cache: its BM25 half is rebuilt from the intact Qdrant half
        return store
    docs = passage_documents(passages, dataset.name)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(docs), unit="passage", desc=f"indexing {dataset.name}", file=sys.stderr
        )
    for i in range(0, len(docs), 256):
        batch = embedder.run(documents=docs[i : i + 256])["documents"]
        store.write(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    store.commit()
    return store


def empty_store(embedding_model: str) -> RagkitStore:
    """An empty in-memory store, bound while a per-question run warms its pipeline up."""
    from ragkit.stores.store import open_store

    return open_store(MemoryStore(), embedding_model=embedding_model, model_files=model_files)


def question_store(
    passages: list[Passage], dataset: str, embedder: DocumentEmbedder, embedding_model: str
) -> RagkitStore:
    """An in-memory store with one question's own passages."""
    store = empty_store(embedding_model)
    store.write(embedder.run(documents=passage_documents(passages, dataset))["documents"])
    return store
