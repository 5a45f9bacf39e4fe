"""The README's two commands stay true: CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    main_job, tests = blocks[0], blocks[1]
    assert tests.startswith("python3 -m venv .venv") and tests.endswith("-m pytest")
    assert tests in (REPO / ".ci" / "run").read_text()
    assert "torch==2.13.0" in main_job and "ragkit index" in main_job and "ragkit query" in main_job
    # the default profile's reader is set up by the same line: llama.cpp build + Qwen fetch
    assert "llamacpp" in main_job and "ragkit models fetch qwen2.5-coder-1.5b-instruct" in main_job
    assert main_job.count("\n") == 0
