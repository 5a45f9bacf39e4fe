"""One error base: every ragkit error is a RagkitError whose exit_code the CLI uses."""

from __future__ import annotations

import pytest
import typer

import ragkit
from ragkit.cli import _run
from ragkit.errors import InvalidInputError, RagkitError

ERROR_NAMES = sorted(n for n in ragkit.__all__ if n.endswith("Error"))
INVALID_INPUT = {
    "ConfigError",
    "DatasetError",
    "PipelineError",
    "InvalidInputError",
    "InvalidParameter",
    "ResourceNotFoundError",
    "RunSettingsError",
}


def test_every_public_error_is_exported_and_derives_from_ragkit_error() -> None:
    assert {"RagkitError", "ConfigError", "DatasetError", "PipelineError", "StoreError"} <= set(
        ERROR_NAMES
    )
    for name in ERROR_NAMES:
        assert issubclass(getattr(ragkit, name), RagkitError), name


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_cli_exit_code_comes_from_the_class(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    cls = getattr(ragkit, name)
    expected = 2 if name in INVALID_INPUT else 1
    assert cls.exit_code == expected
    assert issubclass(cls, InvalidInputError) == (expected == 2)

    message = f"bad thing in {name}"

    def body() -> None:
        raise cls([message]) if name == "PipelineError" else cls(message)

    with pytest.raises(typer.Exit) as info:
        _run(body)
    assert info.value.exit_code == expected
    assert capsys.readouterr().err.strip() == f"error: bad thing in {name}"


def test_builtin_bases_are_kept_for_existing_except_clauses() -> None:
    from ragkit.config import ConfigError
    from ragkit.models.errors import ModelLoadError
    from ragkit.stores.store import StoreError

    assert issubclass(ConfigError, ValueError)
    assert issubclass(StoreError, RuntimeError)
    assert issubclass(ModelLoadError, RuntimeError)


def test_unknown_exceptions_are_not_swallowed() -> None:
    def body() -> None:
        raise KeyError("not a ragkit error")

    with pytest.raises(KeyError):
        _run(body)
