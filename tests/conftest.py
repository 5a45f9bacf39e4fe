"""Test environment: offline models, no telemetry, quiet progress bars; shared fixtures."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# the shipped default profile reads with Qwen 1.5B through llama.cpp, which CI does not fetch:
# commands without --profile use the small packaged reader here
os.environ.setdefault("RAGKIT_PROFILE", "cpu-small")
# one cache (models, eval stores, prefixes, gists) per test process: SmolLM2 is converted from
# GGUF once, not per test. Each xdist worker gets its own (the controller's is inherited
# otherwise): some tests assert that they computed a prefix or built an eval store themselves,
# which a worker beside them sharing the directory would spoil. Only the converted models are
# shared by every worker (the cache's gguf/ and onnx/ link to one directory): SmolLM2's
# conversion (~20 s) and the int8 embedder's export (~4 s) hold a file lock, so each runs once
# per test run, not once per worker; the test that damages a converted model damages a private
# copy. A RAGKIT_CACHE set before pytest starts is used as it is.
if "RAGKIT_CACHE" not in os.environ or os.environ.get("RAGKIT_TEST_OWN_CACHE") == "1":
    os.environ["RAGKIT_CACHE"] = tempfile.mkdtemp(prefix="ragkit-test-cache-")
    os.environ["RAGKIT_TEST_OWN_CACHE"] = "1"
    atexit.register(shutil.rmtree, os.environ["RAGKIT_CACHE"], True)
    if "RAGKIT_TEST_MODELS" not in os.environ:  # the first process (xdist's controller)
        os.environ["RAGKIT_TEST_MODELS"] = tempfile.mkdtemp(prefix="ragkit-test-models-")
        atexit.register(shutil.rmtree, os.environ["RAGKIT_TEST_MODELS"], True)
    for _kind in ("gguf", "onnx"):
        _shared = Path(os.environ["RAGKIT_TEST_MODELS"]) / _kind
        _shared.mkdir(exist_ok=True)
        (Path(os.environ["RAGKIT_CACHE"]) / _kind).symlink_to(_shared, target_is_directory=True)
# On a 2-core machine (CI, or one shared with other jobs) two OpenMP threads spin-wait on each
# other: the small models here take several times the CPU time they take on one thread. Set before
# torch is imported (its default thread count reads it) and inherited by the CLI processes the
# tests start. numba's OpenMP threading layer (bm25s's numba backend, in the BM25 bench) would
# raise the process-wide OpenMP thread count back to the core count for torch as well; its
# workqueue layer leaves OpenMP alone.
if (os.cpu_count() or 1) <= 2:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "ragkit" / "data" / "sample"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default run): one worker per core, at most 4.

    Most of the suite's time is single-threaded (one OpenMP thread on small machines, subprocess
    and server waits), so a worker per core runs it about as many times faster; each worker
    builds its own session fixtures (the sample store, a loaded model per module), which is why
    more than 4 stop paying.
    """
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (the default run) with the Ray files as one unit.

    A file's tests run on one worker in file order, as in one process: a module-scoped fixture
    (a server, a loaded model, an indexed store) starts once, and no test sees another worker's
    share of its module. The Ray files share one worker, so one local cluster starts. (xdist's
    ``loadgroup`` marks cannot do this under pytest 9: they rename ``item._nodeid``, which
    pytest 9 no longer reads.)
    """
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for on the command line: xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class RayTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/ray" if nodeid.startswith("tests/ray/") else super()._split_scope(nodeid)

    return RayTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without CUDA."""
    if not any("gpu" in item.keywords for item in items):
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def sample_corpus(tmp_path: Path) -> Path:
    """A private copy of the bundled sample corpus, safe to modify."""
    dest = tmp_path / "corpus"
    shutil.copytree(SAMPLE, dest)
    return dest


def _store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store but the process locks (their content is the holder's pid)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled sample corpus indexed once per session by ``ragkit index`` (default profile).

    Shared by the tests that only read it: none may change it (checked when the session ends).
    A test that changes its store builds (or copies) its own in ``tmp_path``.
    """
    from cli_run import ragkit

    store = tmp_path_factory.mktemp("sample-store") / "store"
    code, _, err = ragkit("index", str(SAMPLE), "--store", str(store), "-q")
    assert code == 0, err
    before = _store_files(store)
    yield store
    assert _store_files(store) == before, "a test changed the shared sample_store"


@pytest.fixture
def mini_qa_file(tmp_path: Path) -> Path:
    """A two-question QA jsonl (passages with gold marks) for eval-style runs without shared data."""
    rows = [
        {
            "question": "Which planet has the strongest winds?",
            "answers": ["Neptune"],
            "passages": [
                {"title": "Neptune", "text": "Neptune has the strongest winds.", "isgold": True},
                {"title": "Etna", "text": "Etna is a volcano in Sicily."},
            ],
        },
        {
            "question": "Where is Etna?",
            "answers": ["Sicily"],
            "passages": [{"title": "Etna", "text": "Etna is a volcano in Sicily.", "isgold": True}],
        },
    ]
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def errors_match_cli():
    """Check library calls against the CLI: each ``(call, cli_args, error_class)`` case raises
    that ragkit error, and the CLI with those arguments prints it as one line with its exit code."""
    from cli_run import runner

    from ragkit.cli import app
    from ragkit.errors import RagkitError

    def check(cases) -> None:
        for call, args, cls in cases:
            with pytest.raises(RagkitError) as info:
                call()
            exc = info.value
            assert type(exc) is cls, (args, type(exc))
            cli = runner.invoke(app, args)
            assert cli.exit_code == exc.exit_code, (args, cli.stderr)
            assert cli.stderr == f"error: {exc}\n", args

    return check
