"""Hugging Face entry points for the rest of ragkit: tokenizers, embedding models, torch threads.

torch, transformers, tokenizers and sentence-transformers are imported only inside
``ragkit.models``; indexing, answering, retrieval and the benchmarks reach them through these
functions, so importing those packages (and ``ragkit --help``) never loads torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragkit.models.errors import ModelLoadError

__all__ = [
    "library_versions",
    "load_sentence_transformer",
    "load_tokenizer",
    "quiet_progress_bars",
    "torch_thread_count",
    "torch_threads",
]


def load_tokenizer(model: str, cache_dir: str | Path | None = None) -> Any:
    """The Hugging Face tokenizer of any model name the registry knows.

    Packaged short names, hub ids, local directories and ``.gguf`` files all work: a GGUF's
    tokenizer is read from its metadata (or from its converted cache directory when one
    exists), never by converting the weights.

    Args:
        model: Packaged name (``smollm2-135m-instruct``, ``minilm``...), hub id, directory or
            ``.gguf`` path.
        cache_dir: Converted-GGUF cache root (default ``$RAGKIT_CACHE``).

    Returns:
        A ``transformers`` tokenizer (``encode``/``decode``, offsets mapping when fast).

    Raises:
        ModelLoadError: The tokenizer cannot be loaded (the message names the model).
    """
    from transformers import AutoTokenizer

    from ragkit.models.gguf_cache import converted_dir_for, read_manifest
    from ragkit.models.registry import resolve_model

    spec = resolve_model(model)
    try:
        if spec.is_gguf:
            assert spec.path is not None
            converted = converted_dir_for(spec.path, cache_dir)
            if (
                read_manifest(converted) is not None
                and (converted / "tokenizer_config.json").exists()
            ):
                return AutoTokenizer.from_pretrained(str(converted))  # already converted: fast
            return AutoTokenizer.from_pretrained(str(spec.path.parent), gguf_file=spec.path.name)
        return AutoTokenizer.from_pretrained(spec.location)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of model {model!r} from {spec.location}: {exc}"
        ) from exc


def quiet_progress_bars() -> None:
    """Silence transformers' "Loading weights" bars, which would interleave with ragkit's."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_sentence_transformer(model: str, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` for an embedding model name (benchmarks' raw baseline).

    Raises:
        ModelLoadError: The model cannot be loaded.
    """
    from ragkit.models.registry import resolve_model

    spec = resolve_model(model, kind="embedding")
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(spec.location, device=device)
    except Exception as exc:
        raise ModelLoadError(f"cannot load embedding model {model!r}: {exc}") from exc


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``threads`` torch intra-op threads (``None``: unchanged), then restore.

    Yields:
        The thread count in effect inside the block.
    """
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def torch_thread_count() -> int:
    """torch's current intra-op thread count."""
    import torch

    return int(torch.get_num_threads())


def library_versions() -> dict[str, str]:
    """Versions of the numeric libraries, for benchmark and manifest headers."""
    import torch
    import transformers

    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__)}
