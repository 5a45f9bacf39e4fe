"""Retriever components over a ragkit store: BM25 (lexical) and dense (vector).

Hybrid retrieval is these two fused by Haystack's ``DocumentJoiner`` in
``reciprocal_rank_fusion`` mode (see ``pipelines/retrieve.yaml``); weights are its ``weights``.
"""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from ragkit.stores.components import StoreBound


@component
class BM25Retriever(StoreBound):
    """Okapi BM25 over the store's lexical index (ragkit's own index, or Qdrant sparse on servers).

    ### Usage example
    ```python
    retriever = BM25Retriever(store=".ragkit", top_k=10)
    docs = retriever.run(query="who wrote the iliad")["documents"]
    ```
    """

    def __init__(
        self, store: str | None = None, top_k: int = 10, embedding_model: str = "minilm"
    ) -> None:
        """Create a BM25 retriever.

        Args:
            store: store location; bound by ``ragkit.load_pipeline`` when it is given a store.
            top_k: how many documents to return.
            embedding_model: the model the store was built with (the store checks it).
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.store = store
        self.top_k = top_k
        self.embedding_model = embedding_model

    def warm_up(self) -> None:
        """Open the store (and load its BM25 index) before the first query."""
        self.open_bound_store()

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Document]]:
        """Best ``top_k`` documents for ``query`` by BM25, with ``score`` set."""
        store = self.open_bound_store()
        return {"documents": store.bm25_search(query, top_k=top_k or self.top_k)}


@component
class DenseRetriever(StoreBound):
    """Cosine similarity over the store's dense vectors, given a query embedding.

    ### Usage example
    ```python
    emb = TextEmbedder().run(text="who wrote the iliad")["embedding"]
    docs = DenseRetriever(store=".ragkit").run(query_embedding=emb)["documents"]
    ```
    """

    def __init__(
        self, store: str | None = None, top_k: int = 10, embedding_model: str = "minilm"
    ) -> None:
        """Create a dense retriever (same arguments as :class:`BM25Retriever`)."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.store = store
        self.top_k = top_k
        self.embedding_model = embedding_model

    def warm_up(self) -> None:
        """Open the store before the first query."""
        self.open_bound_store()

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_embedding: list[float],
        top_k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> dict[str, list[Document]]:
        """Nearest ``top_k`` chunks to ``query_embedding``, optionally filtered by metadata."""
        store = self.open_bound_store()
        return {
            "documents": store.dense_search(
                query_embedding, top_k=top_k or self.top_k, filters=filters
            )
        }
