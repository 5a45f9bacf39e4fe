"""The last indexing step: write embedded chunks to the store (dense vectors and BM25)."""

from __future__ import annotations

from collections import Counter

from haystack import Document, component

from ragkit.models.registry import choose_embedding_model, model_files
from ragkit.stores.components import StoreBound
from ragkit.stores.store import RagkitStore  # at run time: the loader resolves the hints


@component
class StoreWriter(StoreBound):
    """Upserts chunks into a ragkit store: Qdrant for vectors and text, plus the BM25 index.

    ### Usage example
    ```python
    writer = StoreWriter(store=".ragkit")
    writer.run(documents=embedded_chunks)
    ```
    """

    model_files = staticmethod(model_files)

    def __init__(
        self,
        store: str | RagkitStore | None = None,
        embedding_model: str | None = None,
        replace_sources: bool = True,
    ) -> None:
        """Create a writer.

        Args:
            store: store location (directory, ``:memory:`` or URL), or an open store
                (``ragkit.open_store``); ``ragkit index --store`` binds its own store.
            embedding_model: recorded in the store so queries use the same model; None is
                the default for new stores, which :class:`DocumentEmbedder` also embeds with
                when it names no model (``ragkit index`` sets both to an existing store's).
            replace_sources: delete the earlier chunks of every source in the batch before
                writing, so a changed file never keeps stale chunks. Files that failed to load
                never reach the writer, so their earlier chunks stay.
        """
        self.init_store(store)
        self.embedding_model = embedding_model
        self.replace_sources = replace_sources

    def asked_embedding_model(self) -> str:
        """The model named, or the default for new stores (what an unnamed embedder uses)."""
        return choose_embedding_model(self.embedding_model)

    def warm_up(self) -> None:
        """Open the store early so a locked or broken store fails before any work."""
        self.open_bound_store()

    @component.output_types(documents_written=int, chunks_by_source=dict[str, int])
    def run(self, documents: list[Document]) -> dict[str, object]:
        """Write ``documents``; ids are deterministic, so re-writing replaces instead of duplicating."""
        store = self.open_bound_store()
        if self.replace_sources:
            for source in dict.fromkeys(str(d.meta.get("source", "")) for d in documents):
                store.delete_source(source)
        written = store.write(documents)
        counts = Counter(str(d.meta.get("source", "")) for d in documents)
        return {"documents_written": written, "chunks_by_source": dict(counts)}
