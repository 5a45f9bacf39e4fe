"""The library calls behind ``ragkit memory build|add|info|drop`` and ``ragkit stats``.

Real parts: the packaged MiniLM embedder and the shipped indexer write an embedded store in a
temporary folder; the memory settings come from the shipped ``memorag`` pipeline. The memory
model is the scripted one (no weights), passed as ``lm``, so the prefill log shows what each
call read. Bad input raises the same RagkitError (message and exit status) that the CLI
prints as its one ``error:`` line.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_run import runner

import ragkit
from ragkit.cli import app
from ragkit.errors import InvalidInputError
from ragkit.memory.backend import GlobalMemoryError, NoMemoryError
from ragkit.pipeline import PipelineError
from ragkit.resources import PipelineNotFoundError
from ragkit.stores.store import StoreError
from ragkit.testing.memory import ScriptedMemoryLM

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"


def script(task: str, context: str, question: str) -> str:
    return "Nothing."


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(store indexed with volcanoes.md and no memory, folder with solar_system.md, store dir)."""
    first = tmp_path / "corpus"
    first.mkdir()
    shutil.copy(SAMPLE / "volcanoes.md", first)
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(SAMPLE / "solar_system.md", later)
    store = tmp_path / "store"
    result = ragkit.index_files(first, store=str(store), profile="cpu-small")
    assert result.errors == [] and result.report is not None and result.report.added == 1
    return first, later, store


def test_build_info_add_drop(corpus: tuple[Path, Path, Path]) -> None:
    _, later, store = corpus
    lm = ScriptedMemoryLM(script)
    built = ragkit.build_store_memory(str(store), "cpu-small", lm=lm)
    assert built["kind"] == "kv" and built["sources"] == 1 and built["windows"] == 1
    assert built["model"] == "scripted-memory" and built["bytes"] > 0
    assert Path(built["directory"]) == store.resolve() / "memory" / "default"
    assert "Mauna Loa" in "\n".join(lm.prefills)

    info = ragkit.store_memory_info(str(store))
    assert info["stale"] is False and info["fix"] is None
    assert info["model"] == "scripted-memory" and info["sources"] == 1 and info["windows"] == 1

    lm.prefills.clear()
    added = ragkit.add_to_memory(later, store=str(store), profile="cpu-small", lm=lm)
    assert isinstance(added, ragkit.MemoryAddResult) and added.errors == []
    assert (added.memory["added"], added.memory["changed"], added.memory["removed"]) == (1, 0, 0)
    assert added.memory["windows"] == 2 and added.memory["sources"] == 2
    as_json = added.as_dict()
    assert as_json["indexed"] == {"new": 1, "changed": 0} and as_json["windows"] == 2
    read = "\n".join(lm.prefills)
    assert "Neptune" in read and "Mauna Loa" not in read  # only the new file was read
    # the file was indexed too, and the memory is fresh for the store it now holds
    stats = ragkit.inspect_store(str(store))
    assert isinstance(stats, ragkit.StoreStats)
    assert stats.info["files"] == 2 and stats.warnings == [] and stats.problems == []
    after = ragkit.store_memory_info(str(store))
    assert after["stale"] is False and after["sources"] == 2

    dropped = ragkit.drop_store_memory(str(store))
    assert dropped == {
        "name": "default",
        "store": str(store.resolve()),
        "directory": built["directory"],
    }
    assert not Path(built["directory"]).exists()
    assert ragkit.inspect_store(str(store)).info["files"] == 2  # the store is untouched
    with pytest.raises(NoMemoryError) as info_err:
        ragkit.drop_store_memory(str(store))
    assert str(info_err.value) == f"store {store.resolve()} has no memory 'default'"
    assert info_err.value.exit_code == 1


def test_build_takes_the_pipeline_settings_and_overrides(
    corpus: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path / "cache"))  # an empty gist cache
    _, _, store = corpus
    lm = ScriptedMemoryLM(script)
    built = ragkit.build_store_memory(
        str(store), name="small", kind="gist", window_tokens=64, lm=lm
    )
    assert built["kind"] == "gist"
    assert Path(built["directory"]).name == "small"
    assert lm.calls and all(task == "gist" for task, _ in lm.calls)  # gists were written
    info = ragkit.store_memory_info(str(store), name="small")
    assert info["kind"] == "gist" and info["stale"] is False
    with pytest.raises(NoMemoryError):  # the default memory was not built
        ragkit.store_memory_info(str(store))
    # the gists went to the content-hash cache: a rebuild generates none of them again
    calls = len(lm.calls)
    again = ragkit.build_store_memory(
        str(store), name="small", kind="gist", window_tokens=64, lm=lm
    )
    assert len(lm.calls) == calls and again["llm_calls"] == 0
    assert again["tokens"] == built["tokens"]


def test_add_without_a_memory_indexes_nothing(corpus: tuple[Path, Path, Path]) -> None:
    _, later, store = corpus
    manifest = (store / "manifest.json").read_bytes()
    with pytest.raises(NoMemoryError, match="has no memory 'default'; run: ragkit memory build"):
        ragkit.add_to_memory([later], store=str(store), lm=ScriptedMemoryLM(script))
    assert (store / "manifest.json").read_bytes() == manifest
    assert ragkit.inspect_store(str(store)).info["files"] == 1
    with pytest.raises(InvalidInputError, match="give PATH"):
        ragkit.add_to_memory([], store=str(store))


def _cases(
    tmp_path: Path, store: Path, later: Path
) -> list[tuple[Callable[[], Any], list[str], type]]:
    """(library call, the same request as CLI arguments, the error class both report)."""
    missing = str(tmp_path / "no-store")
    st = str(store)
    return [
        (
            lambda: ragkit.build_store_memory(missing),
            ["memory", "build", "--store", missing],
            StoreError,
        ),
        (
            lambda: ragkit.add_to_memory(later, store=missing),
            ["memory", "add", str(later), "--store", missing],
            StoreError,
        ),
        (
            lambda: ragkit.store_memory_info(missing),
            ["memory", "info", "--store", missing],
            StoreError,
        ),
        (
            lambda: ragkit.drop_store_memory(missing),
            ["memory", "drop", "--store", missing],
            StoreError,
        ),
        (lambda: ragkit.inspect_store(missing), ["stats", "--store", missing], StoreError),
        (lambda: ragkit.store_memory_info(st), ["memory", "info", "--store", st], NoMemoryError),
        (
            lambda: ragkit.drop_store_memory(st, name="other"),
            ["memory", "drop", "--store", st, "--name", "other"],
            NoMemoryError,
        ),
        (
            lambda: ragkit.add_to_memory(later, store=st),
            ["memory", "add", str(later), "--store", st],
            NoMemoryError,
        ),
        (
            lambda: ragkit.build_store_memory(st, pipeline="rag"),
            ["memory", "build", "--store", st, "--pipeline", "rag"],
            PipelineError,
        ),
        (
            lambda: ragkit.build_store_memory(st, pipeline="nope"),
            ["memory", "build", "--store", st, "--pipeline", "nope"],
            PipelineNotFoundError,
        ),
        (
            lambda: ragkit.store_memory_info(":memory:"),
            ["memory", "info", "--store", ":memory:"],
            GlobalMemoryError,
        ),
    ]


def test_bad_input_raises_the_error_the_cli_prints(
    tmp_path: Path, corpus: tuple[Path, Path, Path], errors_match_cli: Callable[..., None]
) -> None:
    _, later, store = corpus
    manifest = (store / "manifest.json").read_bytes()
    errors_match_cli(_cases(tmp_path, store, later))
    assert not (tmp_path / "no-store").exists()  # no call created the missing store
    assert (store / "manifest.json").read_bytes() == manifest  # nor indexed into the real one


def test_a_name_that_is_a_path_never_reaches_the_store(corpus: tuple[Path, Path, Path]) -> None:
    """``--name ..`` once meant ``<store>/memory/..``: drop deleted the whole store."""
    _, _, store = corpus
    ragkit.build_store_memory(str(store), lm=ScriptedMemoryLM(script))
    before = sorted(p.name for p in store.iterdir())
    for name in ("..", ".", "../store", "a/b"):
        with pytest.raises(InvalidInputError, match="invalid memory name") as info:
            ragkit.drop_store_memory(str(store), name=name)
        cli = runner.invoke(app, ["memory", "drop", "--store", str(store), "--name", name])
        assert cli.exit_code == 2 and cli.stderr == f"error: {info.value}\n"
    assert sorted(p.name for p in store.iterdir()) == before
    assert ragkit.store_memory_info(str(store))["stale"] is False  # the memory is still there


def test_invalid_memory_option_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        ragkit.build_store_memory(store=str(tmp_path / "none"), profile="cpu-small", kind="bogus")
    assert (
        "components.memory_recall.init_parameters.memory.kind: must be one of 'kv' or 'gist', "
        "got 'bogus'" in str(info.value)
    )
    assert "\n" not in str(info.value) and info.value.exit_code == 2
