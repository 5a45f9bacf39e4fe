"""``ragkit index --ray`` on a local two-CPU cluster equals a single-process run chunk for chunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.data")

from cli_run import ragkit  # noqa: E402
from ray_helpers import SAMPLE, assert_same_store  # noqa: E402

from ragkit.config import resolve_profile  # noqa: E402
from ragkit.indexing.run import open_indexer  # noqa: E402
from ragkit.scale.cluster import ray_session  # noqa: E402
from ragkit.scale.indexing import EmbedStage, RayProducer  # noqa: E402


def test_index_on_ray_equals_a_single_process_run(
    ray_cluster: str, sample_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    args = ["index", str(SAMPLE), "--store", str(store), "--ray", ray_cluster, "--json"]
    # two workers: the five files go out as three batches (two per worker at least)
    code, out, err = ragkit(*args, "--ray-workers", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 5 and report["errors"] == []
    assert_same_store(store, sample_store)

    # the same settings fingerprint as a single-process run: nothing left to do
    code, out, err = ragkit(*args)
    assert code == 0, err
    assert json.loads(out)["unchanged"] == 5


def crash_once(marker: Path) -> type[EmbedStage]:
    """An embedding stage whose worker process dies (``os._exit``) on its first batch only.

    Defined in a function, so Ray ships the class by value: the workers need no test module.
    """

    class CrashOnce(EmbedStage):
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().__call__(batch)
            os.close(fd)
            os._exit(1)  # the whole worker process dies, mid-batch

    return CrashOnce


def test_a_killed_worker_is_retried_without_duplicates_or_gaps(
    ray_cluster: str, sample_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    marker = tmp_path / "crashed"
    stage = crash_once(marker)
    profile = resolve_profile(None)
    with (
        ray_session(ray_cluster) as ray,
        open_indexer(
            str(store),
            profile,
            producer=lambda pipe: RayProducer(pipe, ray, workers=2, embed_stage=stage),
        ) as idx,
    ):
        report = idx.index([SAMPLE])
    assert marker.exists(), "no worker was killed"
    assert report.errors == [] and report.added == 5
    assert_same_store(store, sample_store)


def test_missing_ray_is_one_actionable_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from ragkit.cli import main\n"
        f"sys.argv = ['ragkit', 'index', {str(SAMPLE)!r}, '--store', {str(tmp_path / 's')!r}, "
        "'--ray', 'auto']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: --ray needs Ray (with Ray Data), which is not installed: pip install 'ragkit[ray]'"
    ], proc.stderr
    assert not (tmp_path / "s").exists()
