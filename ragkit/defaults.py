"""Which embedding model a new store gets: one rule, read by the store and the model layers.

It imports nothing from ragkit, so the store layer (which records a new store's model) and the
model registry (which loads it) share it without importing each other.
"""

from __future__ import annotations

import importlib.util

__all__ = [
    "INT8_EMBEDDING_MODEL",
    "TORCH_EMBEDDING_MODEL",
    "choose_embedding_model",
    "default_embedding_model",
]

TORCH_EMBEDDING_MODEL = "minilm"
"""MiniLM on torch (fp32): GPU profiles, installs without onnxruntime, stores built before
``minilm-int8`` became the default, and Qdrant server collections (they record no model)."""
INT8_EMBEDDING_MODEL = "minilm-int8"
"""The same weights exported once to int8 ONNX and run on onnxruntime: the CPU default."""


def default_embedding_model(device: str = "auto") -> str:
    """The embedding model a new store gets when no profile, pipeline or store names one.

    ``minilm-int8`` where it can run: indexing is 5-6x faster on a CPU than with the torch model,
    at recall@5 within 1 point (docs/benchmarks/embeddings.md). It runs on the CPU, so ``auto``
    means the CPU here even on a machine with a GPU (a GPU profile says ``device: cuda``), and it
    needs onnxruntime plus onnx (the ``cpu`` and ``onnx`` extras install them). A GPU device or an
    install without them gets ``minilm`` on torch. Only new stores are decided here: a store
    records its model, and an existing one keeps it.
    """
    if device not in ("auto", "cpu"):
        return TORCH_EMBEDDING_MODEL
    if all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx")):
        return INT8_EMBEDDING_MODEL
    return TORCH_EMBEDDING_MODEL


def choose_embedding_model(named: str | None, device: str = "auto") -> str:
    """``named`` when a profile or pipeline names a model, else :func:`default_embedding_model`."""
    return named or default_embedding_model(device)
