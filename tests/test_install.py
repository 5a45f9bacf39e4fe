"""A non-editable install works: the wheel carries pipelines/, indexers/ and configs/.

The wheel is built and installed with pip (``pip install .``, not ``-e``) into a fresh venv. The
heavy dependencies (torch, haystack, qdrant, the packaged models) come from the test's own
environment through a ``.pth`` line instead of being downloaded again; ragkit itself must come
from the new venv, which the test checks. Every command runs from an unrelated directory, with
no ``PYTHONPATH``, so nothing can fall back on the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "ragkit" / "data" / "sample"


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with ragkit installed from a wheel built out of a copy of this checkout."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("ragkit", "pipelines", "indexers", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the dependencies of this test environment, appended after the venv's own site-packages
    (site / "_ragkit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(src),
        ],  # fmt: skip
        cwd=root,
        env=env,
    )
    return venv, env


def test_wheel_install_indexes_queries_and_evaluates_elsewhere(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    work = tmp_path / "unrelated"
    work.mkdir()
    bin_dir = venv / "bin"

    probe = _run(
        [str(bin_dir / "python"), "-c",
         "import ragkit, ragkit.resources as r; print(ragkit.__file__); "
         "print(r.shipped_dir('pipelines')); print(r.shipped_dir('configs'))"],
        cwd=work, env=env,
    )  # fmt: skip
    module, pipelines, configs = (Path(line) for line in probe.split())
    for path in (module, pipelines, configs):
        assert path.is_relative_to(venv), f"{path} does not come from the installed wheel"
    assert (pipelines / "rag.yaml").is_file() and (configs / "memory.yaml").is_file()

    listing = _run([str(bin_dir / "ragkit"), "pipelines", "list"], cwd=work, env=env)
    assert "pipelines/rag.yaml" in listing and "indexers/default.yaml" in listing

    corpus = work / "docs"
    corpus.mkdir()
    for name in ("solar_system.md", "volcanoes.md"):
        shutil.copy2(SAMPLE / name, corpus / name)
    out = _run(
        [str(bin_dir / "ragkit"), "index", "docs", "--store", "store", "-q", "--json"],
        cwd=work,
        env=env,
    )
    assert json.loads(out)["chunks_total"] > 0

    out = _run(
        [str(bin_dir / "ragkit"), "query", "Which planet has the strongest winds?",
         "--store", "store", "--pipeline", "retrieve", "--json"],
        cwd=work, env=env,
    )  # fmt: skip
    assert json.loads(out)["passages"][0]["source"].endswith("solar_system.md")

    rows = [
        {"question": "Which planet has the strongest winds?", "answers": ["Neptune"],
         "passages": [{"title": "Neptune", "text": "Neptune has the strongest winds.", "isgold": True},
                      {"title": "Etna", "text": "Etna is a volcano in Sicily."}]},
        {"question": "Where is Etna?", "answers": ["Sicily"],
         "passages": [{"title": "Etna", "text": "Etna is a volcano in Sicily.", "isgold": True}]},
        {"question": "Unused?", "answers": ["x"], "passages": [{"title": "U", "text": "u"}]},
    ]  # fmt: skip
    (work / "mini.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = _run(
        [str(bin_dir / "ragkit"), "eval", "mini.jsonl", "--pipeline", "retrieve",
         "--profile", "memory", "--limit", "2", "--json"],
        cwd=work, env=env,
    )  # fmt: skip
    summary = json.loads(out)
    assert summary["count"] == 2
    assert summary["metrics"]["recall@1"] == pytest.approx(1.0)
    run_dir = work / summary["out_dir"]
    assert run_dir.parent == work / "runs"
    assert (run_dir / "run.json").is_file() and (run_dir / "results.jsonl").is_file()
