"""The store facade: Qdrant + BM25 stay in step on write / delete, in both BM25 backends."""

from __future__ import annotations

import pytest
from haystack import Document

from ragkit.config import MemoryStore
from ragkit.stores.store import open_store, release_store

TEXTS = {
    "a.txt": ["The Nile is the longest river in Africa.", "Cairo lies on the Nile delta."],
    "b.txt": [
        "Mount Everest is the highest mountain on Earth.",
        "Sherpas guide climbers on Everest.",
    ],
    "c.txt": ["Python is a programming language created by Guido van Rossum."],
}


def docs() -> list[Document]:
    out = []
    for src, texts in TEXTS.items():
        for i, t in enumerate(texts):
            vec = [0.0] * 384
            vec[hash(src) % 384] = 1.0
            vec[i] = 0.5
            out.append(
                Document(
                    id=f"{src}-{i}",
                    content=t,
                    embedding=vec,
                    meta={"source": src, "chunk_index": i},
                )
            )
    return out


@pytest.mark.parametrize("bm25", ["local", "sparse"])
def test_write_search_delete(bm25: str) -> None:
    store = open_store(MemoryStore(bm25=bm25))
    try:
        assert store.write(docs()) == 5
        assert store.write(docs()) == 5  # same ids: overwrite, no duplicates
        assert store.count() == 5
        hits = store.bm25_search("highest mountain Everest", top_k=2)
        assert [h.meta["source"] for h in hits] == ["b.txt", "b.txt"]
        assert hits[0].id == "b.txt-0" and hits[0].score > hits[1].score
        assert store.bm25_search("zzzunknownzzz") == []
        assert store.delete_source("b.txt") == 2
        assert store.count() == 3
        assert all(
            h.meta["source"] != "b.txt" for h in store.bm25_search("Everest mountain Nile", top_k=5)
        )
        dense = store.dense_search(docs()[0].embedding, top_k=1)
        assert dense[0].id == "a.txt-0"
    finally:
        release_store(store)
