"""Retriever components over a ragkit store: BM25 (lexical) and dense (vector).

Hybrid retrieval is these two fused by Haystack's ``DocumentJoiner`` in
``reciprocal_rank_fusion`` mode (see ``pipelines/retrieve.yaml``); weights are its ``weights``.
"""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from ragkit.errors import InvalidParameter
from ragkit.models.registry import model_files
from ragkit.stores.components import StoreBound


def _top_k(value: int | None, default: int | None = None) -> int:
    """``value`` checked as a document count (``None``: ``default``)."""
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidParameter("top_k", f"must be an integer >= 1, got {value!r}")
    return value


@component
class BM25Retriever(StoreBound):
    """Okapi BM25 over the store's lexical index (ragkit's own index, or Qdrant sparse on servers).

    ### Usage example
    ```python
    retriever = BM25Retriever(store=".ragkit", top_k=10)
    docs = retriever.run(query="who wrote the iliad")["documents"]
    ```
    """

    model_files = staticmethod(model_files)

    def __init__(
        self, store: str | None = None, top_k: int = 10, embedding_model: str = "minilm"
    ) -> None:
        """Create a BM25 retriever.

        Args:
            store: store location; bound by ``ragkit.load_pipeline`` when it is given a store.
            top_k: how many documents to return.
            embedding_model: the model the store was built with (the store checks it).
        """
        self.store = store
        self.top_k = _top_k(top_k)
        self.embedding_model = embedding_model

    def warm_up(self) -> None:
        """Open the store (and load its BM25 index) before the first query."""
        self.open_bound_store()

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Document]]:
        """Best ``top_k`` documents for ``query`` by BM25, with ``score`` set.

        Args:
            query: The search text.
            top_k: This call's number of documents (default: the init ``top_k``).

        Raises:
            InvalidParameter: ``top_k`` is not an integer >= 1.
        """
        store = self.open_bound_store()
        return {"documents": store.bm25_search(query, top_k=_top_k(top_k, self.top_k))}


@component
class DenseRetriever(StoreBound):
    """Cosine similarity over the store's dense vectors, given a query embedding.

    ### Usage example
    ```python
    emb = TextEmbedder().run(text="who wrote the iliad")["embedding"]
    docs = DenseRetriever(store=".ragkit").run(query_embedding=emb)["documents"]
    ```
    """

    model_files = staticmethod(model_files)

    def __init__(
        self, store: str | None = None, top_k: int = 10, embedding_model: str = "minilm"
    ) -> None:
        """Create a dense retriever (same arguments as :class:`BM25Retriever`)."""
        self.store = store
        self.top_k = _top_k(top_k)
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
        """Nearest ``top_k`` chunks to ``query_embedding``, optionally filtered by metadata.

        Args:
            query_embedding: The query's vector (same model as the store's).
            top_k: This call's number of documents (default: the init ``top_k``).
            filters: Haystack metadata filters.

        Raises:
            InvalidParameter: ``top_k`` is not an integer >= 1.
        """
        store = self.open_bound_store()
        k = _top_k(top_k, self.top_k)
        return {"documents": store.dense_search(query_embedding, top_k=k, filters=filters)}
