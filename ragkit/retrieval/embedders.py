"""Embedding components that resolve ragkit model names (``minilm``) to local model directories.

They wrap sentence-transformers-haystack's embedders, so ragkit only adds name resolution and
sensible defaults (normalized vectors, no progress bar inside pipelines).
"""

from __future__ import annotations

from typing import Any

from haystack import Document, component


def _embedding_model_path(name: str) -> str:
    from ragkit.models.hf import quiet_progress_bars
    from ragkit.models.registry import resolve_model

    quiet_progress_bars()  # "Loading weights" bars would interleave with ours

    spec = resolve_model(name)
    return str(spec.path) if spec.path is not None else str(spec.hub_id or spec.name)


@component
class DocumentEmbedder:
    """Adds dense embeddings to documents with a sentence-transformers model.

    ### Usage example
    ```python
    embedder = DocumentEmbedder(model="minilm")
    embedder.warm_up()
    docs = embedder.run(documents=docs)["documents"]
    ```
    """

    def __init__(self, model: str = "minilm", batch_size: int = 64, device: str = "auto") -> None:
        """Create an embedder for ``model`` (packaged name, local directory or hub id)."""
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self._impl: Any = None

    def warm_up(self) -> None:
        """Load the model once."""
        if self._impl is not None:
            return
        from haystack.utils import ComponentDevice
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersDocumentEmbedder,
        )

        device = None if self.device == "auto" else ComponentDevice.from_str(self.device)
        self._impl = SentenceTransformersDocumentEmbedder(
            model=_embedding_model_path(self.model),
            batch_size=self.batch_size,
            progress_bar=False,
            normalize_embeddings=True,
            local_files_only=True,
            device=device,
        )
        self._impl.warm_up()

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed ``documents`` in place and return them."""
        self.warm_up()
        if not documents:
            return {"documents": []}
        return {"documents": self._impl.run(documents=documents)["documents"]}


@component
class TextEmbedder:
    """Embeds a query string with the same model the documents were indexed with.

    Bound to a store (``ragkit query``, ``ragkit.load_pipeline(..., store=...)``) it takes the
    store's recorded embedding model, so queries always live in the vector space of the chunks.
    """

    def __init__(self, model: str = "minilm", device: str = "auto") -> None:
        """Create a query embedder for ``model`` (replaced by the store's model when bound)."""
        self.model = model
        self.device = device
        self._impl: Any = None

    def bind_store(self, store: Any) -> None:
        """Embed with the model ``store`` was built with (its vectors are only comparable to it)."""
        model = getattr(store, "embedding_model", None)
        if model and model != self.model:
            self.model = str(model)
            self._impl = None

    def warm_up(self) -> None:
        """Load the model once."""
        if self._impl is not None:
            return
        from haystack.utils import ComponentDevice
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersTextEmbedder,
        )

        device = None if self.device == "auto" else ComponentDevice.from_str(self.device)
        self._impl = SentenceTransformersTextEmbedder(
            model=_embedding_model_path(self.model),
            progress_bar=False,
            normalize_embeddings=True,
            local_files_only=True,
            device=device,
        )
        self._impl.warm_up()

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, list[float]]:
        """Embed one query."""
        self.warm_up()
        return {"embedding": self._impl.run(text=text)["embedding"]}
