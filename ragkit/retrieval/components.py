"""Retriever components over a ragkit store: BM25 (lexical) and dense (vector).

Hybrid retrieval is these two fused by Haystack's ``DocumentJoiner`` in
``reciprocal_rank_fusion`` mode (see ``pipelines/retrieve.yaml``); weights are its ``weights``.
Both take ``store`` as a location (YAML) or an open store (Python), so either runs on its own.
"""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from ragkit.errors import check_count
from ragkit.models.registry import model_files
from ragkit.stores.components import StoreBound
from ragkit.stores.store import RagkitStore  # at run time: the loader resolves the hints

__all__ = ["BM25Retriever", "DenseRetriever", "check_top_k"]


def check_top_k(value: Any, default: int | None = None, name: str = "top_k") -> int:
    """``value`` checked as a document count; ``None`` gives ``default`` when there is one.

    Args:
        value: The count a user passed (an init parameter or a call's override).
        default: What ``None`` means (the init value); without one, ``None`` is refused.
        name: The parameter's name, for the error.

    Raises:
        InvalidParameter: ``value`` is not an integer >= 1 (booleans included).
    """
    if value is None and default is not None:
        return default
    return check_count(name, value)


class StoreRetriever(StoreBound):
    """What the BM25 and dense retrievers share: the store, ``top_k`` and the warm-up.

    Not a component itself; the ``@component`` subclasses add their ``run``.
    """

    model_files = staticmethod(model_files)

    def __init__(
        self,
        store: str | RagkitStore | None = None,
        top_k: int = 10,
        embedding_model: str | None = None,
    ) -> None:
        """Create a retriever.

        Args:
            store: store location (a directory, ``:memory:`` or a URL), or an open store
                (``ragkit.open_store``); ``ragkit.load_pipeline`` binds its own store.
            top_k: how many documents to return (a call's ``top_k`` overrides it).
            embedding_model: the model the store was built with (the store checks it);
                None takes the store's record.

        Raises:
            InvalidParameter: ``store`` or ``top_k`` is invalid.
        """
        self.init_store(store)
        self.top_k = check_top_k(top_k)
        self.embedding_model = embedding_model

    def warm_up(self) -> None:
        """Open the store (and load its BM25 index) before the first query."""
        self.open_bound_store()


@component
class BM25Retriever(StoreRetriever):
    """Okapi BM25 over the store's lexical index (ragkit's own index, or Qdrant sparse on servers).

    BM25 needs no model, so an in-memory store of plain documents is enough.

    Examples:
        >>> from haystack import Document
        >>> from ragkit import BM25Retriever, MemoryStore, open_store, release_store
        >>> store = open_store(MemoryStore())
        >>> store.write([
        ...     Document(content="The Nile flows north into the Mediterranean."),
        ...     Document(content="Etna is an active volcano in Sicily."),
        ...     Document(content="Jupiter is the largest planet of the solar system."),
        ... ])
        3
        >>> retriever = BM25Retriever(store=store, top_k=1)
        >>> retriever.run(query="Which volcano is in Sicily?")["documents"][0].content
        'Etna is an active volcano in Sicily.'
        >>> len(retriever.run(query="Nile volcano planet", top_k=2)["documents"])
        2
        >>> release_store(store)  # the caller opened it, so the caller releases it
    """

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Document]]:
        """Best ``top_k`` documents for ``query`` by BM25, with ``score`` set.

        Args:
            query: The search text.
            top_k: This call's number of documents (default: the init ``top_k``).

        Raises:
            InvalidParameter: ``top_k`` is not an integer >= 1.
        """
        k = check_top_k(top_k, self.top_k)
        return {"documents": self.open_bound_store().bm25_search(query, top_k=k)}


@component
class DenseRetriever(StoreRetriever):
    """Cosine similarity over the store's dense vectors, given a query embedding.

    Examples:
        >>> from haystack import Document
        >>> from ragkit import DenseRetriever, DocumentEmbedder, MemoryStore, TextEmbedder
        >>> from ragkit import open_store, release_store
        >>> store = open_store(MemoryStore())
        >>> docs = DocumentEmbedder().run(documents=[
        ...     Document(content="The Nile flows north into the Mediterranean."),
        ...     Document(content="Etna is an active volcano in Sicily."),
        ... ])["documents"]
        >>> store.write(docs)
        2
        >>> query = TextEmbedder().run(text="Where is the volcano Etna?")
        >>> retriever = DenseRetriever(store=store, top_k=1)
        >>> retriever.run(query_embedding=query["embedding"])["documents"][0].content
        'Etna is an active volcano in Sicily.'
        >>> release_store(store)
    """

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
        k = check_top_k(top_k, self.top_k)
        store = self.open_bound_store()
        return {"documents": store.dense_search(query_embedding, top_k=k, filters=filters)}
