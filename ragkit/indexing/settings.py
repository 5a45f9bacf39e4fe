"""What an indexing pipeline does to a file: its embedding model, dimension and settings fingerprint.

The store must know the model that *actually* embeds (the pipeline's document embedder, not a
profile key or the writer's label), and the manifest records, per file, a fingerprint of the
settings it was chunked and embedded with, so changed settings re-chunk files instead of calling
them unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ragkit.models.errors import ModelLoadError, UnknownModelError
from ragkit.pipeline import PipelineError

if TYPE_CHECKING:
    from haystack import Document, Pipeline

    from ragkit.stores.store import AnyStore

# init parameters that change how fast or where work runs, never which chunks or vectors result
OPERATIONAL_PARAMS = frozenset(
    {
        "batch_size",
        "device",
        "progress_bar",
        "store",
        "embedding_model",
        "replace_sources",
        "max_file_mb",
    }
)


def document_embedders(pipe: Pipeline) -> list[tuple[str, Any]]:
    """(name, component) of every document embedder (ragkit's, Haystack's, OpenAI's) in ``pipe``."""
    return [
        (name, comp)
        for name, comp in pipe.walk()
        if type(comp).__name__.endswith("DocumentEmbedder") and hasattr(comp, "model")
    ]


def embedding_model(pipe: Pipeline) -> str | None:
    """The model the pipeline embeds documents with; None when it has no document embedder.

    Raises:
        PipelineError: two embedders with different models would mix vectors in one store.
    """
    models = {str(comp.model) for _, comp in document_embedders(pipe) if comp.model is not None}
    if len(models) > 1:
        names = ", ".join(f"{n} ({c.model})" for n, c in document_embedders(pipe))
        raise PipelineError(
            [f"the indexing pipeline has document embedders with different models: {names}"]
        )
    return models.pop() if models else None


def settle_embedding_model(pipe: Pipeline, config: AnyStore) -> str:
    """Choose the model this indexing run embeds with, and set it where the pipeline names none.

    A model named by the pipeline (or by the profile, whose ``embedding.model`` lands on the
    embedder) is kept: a store built with another one is then refused, never mixed. Otherwise an
    existing embedded store keeps its recorded model, so stores built before the default changed
    (``minilm``) go on as they were, and a new one gets the default
    (:func:`ragkit.stores.store.new_store_model`). A Qdrant server collection records
    no model and its queries embed with ``minilm``, so it keeps ``minilm`` unless one is named.

    Unnamed document embedders and store writers get the choice before anything loads, so the
    settings fingerprint of an old store's files is the one they were indexed with.

    Raises:
        PipelineError: Two embedders name different models.
    """
    from ragkit.indexing.writer import StoreWriter
    from ragkit.stores.store import new_store_model, recorded_embedding

    embedders = document_embedders(pipe)
    model = embedding_model(pipe)
    if model is None:
        recorded = recorded_embedding(config)
        device = str(getattr(embedders[0][1], "device", "auto")) if embedders else "auto"
        model = recorded[0] if recorded is not None else new_store_model(config, device)
    for _, comp in embedders:
        if comp.model is None:
            comp.model = model
    for _, comp in pipe.walk():
        if isinstance(comp, StoreWriter) and comp.embedding_model is None:
            comp.embedding_model = model
    return model


def probe_embedding_dim(pipe: Pipeline) -> int | None:
    """Load the pipeline's document embedder and embed one probe text; its vector size.

    This is the validation step before a store is touched: a bad model name fails here, so a
    failed run records nothing.

    Raises:
        UnknownModelError: the model name matches nothing.
        ModelLoadError: the model exists by name but cannot be loaded or embed.
    """
    from haystack import Document

    found = document_embedders(pipe)
    if not found:
        return None
    name, comp = found[0]
    try:
        if hasattr(comp, "warm_up"):
            comp.warm_up()
        docs = comp.run(documents=[Document(content="ragkit embedding dimension probe")])
        vector = docs["documents"][0].embedding
    except (UnknownModelError, ModelLoadError):
        raise
    except Exception as exc:  # noqa: BLE001 - loaders raise OSError, ValueError, HTTP errors...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelLoadError(
            f"embedding model {comp.model!r} (components.{name}) cannot be loaded: "
            f"{type(exc).__name__}: {first[:200]}"
        ) from None
    if not vector:
        raise ModelLoadError(f"embedding model {comp.model!r} (components.{name}) made no vector")
    return len(vector)


def embed_document(pipe: Pipeline, document: Document) -> list[float] | None:
    """``document`` embedded by the pipeline's document embedder as indexing embeds it (a copy).

    ``ragkit repair`` compares it with the vector stored for the same chunk to tell whether the
    pipeline's model made the store's vectors.
    """
    import dataclasses

    found = document_embedders(pipe)
    if not found:
        return None
    copy = dataclasses.replace(document, embedding=None, sparse_embedding=None, score=None)
    docs = found[0][1].run(documents=[copy])["documents"]
    return list(docs[0].embedding) if docs and docs[0].embedding is not None else None


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in OPERATIONAL_PARAMS}
    return value


def indexing_fingerprint(pipe: Pipeline, embedding_dim: int | None) -> str:
    """Hash of every setting that shapes chunks and vectors: components, their parameters, wiring.

    Args:
        pipe: the indexing pipeline (loader, splitter, embedder, writer, ...).
        embedding_dim: the embedder's vector size, when known.

    Returns:
        16 hex digits; equal settings give equal fingerprints across runs and machines.
    """
    data = pipe.to_dict()
    comps = {
        name: {"type": c.get("type"), "init_parameters": _scrub(c.get("init_parameters") or {})}
        for name, c in data.get("components", {}).items()
    }
    body = {
        "components": comps,
        "connections": data.get("connections", []),
        "embedding_dim": embedding_dim,
    }
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
