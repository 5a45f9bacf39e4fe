"""The error types ragkit reports to users as one line (collected lazily for the CLI)."""

from __future__ import annotations


def known_errors() -> tuple[type[BaseException], ...]:
    """Exception classes whose message is already a complete, actionable one-line report."""
    from ragkit.config import ConfigError
    from ragkit.evaluation.datasets import DatasetError
    from ragkit.indexing.manifest import ManifestError
    from ragkit.memory.backend import GlobalMemoryError
    from ragkit.models import errors as model_errors
    from ragkit.pipeline import PipelineError
    from ragkit.stores.bm25 import BM25IndexError
    from ragkit.stores.lock import StoreInUseError
    from ragkit.stores.store import StoreError

    errors: list[type[BaseException]] = [
        BM25IndexError,
        ConfigError,
        DatasetError,
        GlobalMemoryError,
        ManifestError,
        PipelineError,
        StoreError,
        StoreInUseError,
    ]
    errors.extend(getattr(model_errors, n) for n in model_errors.__all__)
    return tuple(errors)


class InvalidParameter(ValueError):
    """A component's init parameter is out of range; ``parameter`` names it.

    Pipeline loading reports it as ``FILE: components.NAME.init_parameters.PARAMETER: message``.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
