"""The error types ragkit reports to users as one line (collected lazily for the CLI)."""

from __future__ import annotations


def known_errors() -> tuple[type[BaseException], ...]:
    """Exception classes whose message is already a complete, actionable one-line report."""
    from ragkit.config import ConfigError
    from ragkit.indexing.manifest import ManifestError
    from ragkit.pipeline import PipelineError
    from ragkit.stores.lock import StoreInUseError
    from ragkit.stores.store import StoreError
    from ragkit.evaluation.datasets import DatasetError

    errors: list[type[BaseException]] = [
        ConfigError,
        ManifestError,
        PipelineError,
        StoreInUseError,
        StoreError,
    ]
    try:
        from ragkit.stores.bm25 import BM25IndexError

        errors.append(BM25IndexError)
    except ImportError:
        pass
    from ragkit.models import errors as model_errors

    errors.extend(getattr(model_errors, n) for n in model_errors.__all__)
    return tuple(errors)
