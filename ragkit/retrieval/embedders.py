"""Embedding components that resolve ragkit model names (``minilm``) to local model directories.

They wrap sentence-transformers-haystack's embedders, so ragkit only adds name resolution and
sensible defaults (normalized vectors, no progress bar inside pipelines). A model name whose
registry backend is ``onnx-int8`` (``minilm-int8``) runs on onnxruntime instead
(:mod:`ragkit.models.onnx_embedder`): the same weights exported once to int8, several times
faster on a CPU. Its vectors differ slightly from the torch ones, which is why it is another
model name: a store records it, and queries embed with the store's model. It embeds one text
per call (``batch_size`` does not apply), so a text's vector never depends on its batch mates.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from haystack import Document, component

from ragkit.defaults import choose_embedding_model
from ragkit.stores.components import StoreConsumer

if TYPE_CHECKING:
    from ragkit.models.onnx_embedder import OnnxEncoder
    from ragkit.models.registry import ResolvedModel


def _resolve(name: str) -> ResolvedModel:
    from ragkit.models.registry import resolve_model

    return resolve_model(name)


def _embedding_model_path(name: str) -> str:
    spec = _resolve(name)
    return str(spec.path) if spec.path is not None else str(spec.hub_id or spec.name)


def _onnx_encoder(name: str, device: str) -> OnnxEncoder | None:
    """The int8 ONNX encoder of an ``onnx-int8`` model (exported on first use); None for torch.

    Raises:
        ModelLoadError: A GPU device was asked for (this backend runs on the CPU), onnxruntime
            is missing, or the export fails.
    """
    spec = _resolve(name)
    if spec.backend != "onnx-int8":
        return None
    from ragkit.models.errors import ModelLoadError
    from ragkit.models.onnx_embedder import OnnxEncoder, ensure_onnx_int8

    if device not in ("auto", "cpu"):
        raise ModelLoadError(
            f"embedding model {name!r} runs on the CPU (onnxruntime, int8), not on "
            f"{device!r}; set device: cpu, or use the torch model for a GPU"
        )
    if spec.path is None:
        raise ModelLoadError(f"embedding model {name!r} has no local files to export")
    return OnnxEncoder(ensure_onnx_int8(spec.path))


def query_embedder_for(store: Any, model: str | None, device: str = "auto") -> TextEmbedder:
    """A loaded query embedder in ``store``'s vector space (its recorded model; else ``model``).

    For components that embed their own queries (clue retrieval, adaptive notes): the store is
    open first, so the embedder follows the model it was built with, not a default.
    """
    embedder = TextEmbedder(model=model, device=device)
    embedder.bind_store(store)
    embedder.warm_up()
    return embedder


def _is_onnx(impl: Any) -> bool:
    """Whether a warmed-up embedder is the ONNX encoder (else a Haystack ST embedder)."""
    from ragkit.models.onnx_embedder import OnnxEncoder  # light: onnxruntime loads on use

    return isinstance(impl, OnnxEncoder)


def _load_encoder(kind: str, model: str, device: str, batch_size: int | None = None) -> Any:
    """A warmed-up encoder for ``model``: the ONNX export where one is asked for, else ``kind``.

    ``kind`` names the Haystack sentence-transformers embedder class (document or text); both
    get ragkit's settings (normalized vectors, the packaged model's files only), so documents
    and queries are embedded alike.
    """
    onnx = _onnx_encoder(model, device)
    if onnx is not None:
        return onnx
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.embedders import sentence_transformers

    from ragkit.models.hf import quiet_progress_bars

    # here, not in _resolve: it imports transformers, which the ONNX path never needs (~0.6 s
    # of every `ragkit index` and `ragkit query` on the default CPU model)
    quiet_progress_bars()  # "Loading weights" bars would interleave with ours
    options: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    impl = getattr(sentence_transformers, kind)(
        model=_embedding_model_path(model),
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=True,
        device=None if device == "auto" else ComponentDevice.from_str(device),
        **options,
    )
    impl.warm_up()
    return impl


@component
class DocumentEmbedder(StoreConsumer):
    """Adds dense embeddings to documents with a sentence-transformers model.

    Naming no model, it embeds with the model of the store it is bound to (an existing store's
    record), so a pipeline loaded with a store never writes other vectors into it; unbound, with
    the default for new stores.

    ### Usage example
    ```python
    embedder = DocumentEmbedder(model="minilm")
    embedder.warm_up()
    docs = embedder.run(documents=docs)["documents"]
    ```
    """

    def __init__(
        self, model: str | None = None, batch_size: int = 64, device: str = "auto"
    ) -> None:
        """Create an embedder for ``model`` (packaged name, local directory or hub id).

        ``None`` is the default for new stores (:func:`ragkit.defaults.default_embedding_model`:
        ``minilm-int8`` on a CPU with onnxruntime, else ``minilm``), chosen when the model loads;
        ``ragkit index`` sets it to an existing store's model before that.
        """
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self._impl: Any = None

    def bind_store(self, store: Any) -> None:
        """Embed with ``store``'s model when this embedder names none (a named one is kept:
        the indexer and the store refuse it if it differs)."""
        model = getattr(store, "embedding_model", None)
        if self.model is None and model:
            self.model = str(model)
            self._impl = None

    def warm_up(self) -> None:
        """Load the model once."""
        if self._impl is not None:
            return
        self.model = choose_embedding_model(self.model, self.device)
        self._impl = _load_encoder(
            "SentenceTransformersDocumentEmbedder", self.model, self.device, self.batch_size
        )

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed ``documents`` in place and return them."""
        self.warm_up()
        if not documents:
            return {"documents": []}
        if _is_onnx(self._impl):
            # what SentenceTransformersDocumentEmbedder embeds with ragkit's settings: the content
            vectors = self._impl.encode([d.content or "" for d in documents], normalize=True)
            return {
                "documents": [
                    dataclasses.replace(d, embedding=v.tolist())
                    for d, v in zip(documents, vectors, strict=True)
                ]
            }
        return {"documents": self._impl.run(documents=documents)["documents"]}


@component
class TextEmbedder(StoreConsumer):
    """Embeds a query string with the same model the documents were indexed with.

    Bound to a store (``ragkit query``, ``ragkit.load_pipeline(..., store=...)``) it takes the
    store's recorded embedding model, so queries always live in the vector space of the chunks.
    """

    def __init__(self, model: str | None = None, device: str = "auto") -> None:
        """Create a query embedder for ``model`` (replaced by the store's model when bound).

        ``None``, unbound, loads the default for new stores, as :class:`DocumentEmbedder` does.
        """
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
        self.model = choose_embedding_model(self.model, self.device)
        self._impl = _load_encoder("SentenceTransformersTextEmbedder", self.model, self.device)

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, list[float]]:
        """Embed one query."""
        self.warm_up()
        if _is_onnx(self._impl):
            return {"embedding": self._impl.encode([text], normalize=True)[0].tolist()}
        return {"embedding": self._impl.run(text=text)["embedding"]}
