"""The real CLI in-process, as the tests call it: ``ragkit(*args) -> (code, stdout, stderr)``."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from ragkit.cli import app

runner = CliRunner()


def ragkit(*args: str) -> tuple[int, str, str]:
    """Run ``ragkit ARGS`` through typer's runner; stdout and stderr apart."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    """The single ``error:`` line ``err`` must consist of."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def reader_profile(tmp_path: Path, base_url: str) -> Path:
    """A profile whose reader is an OpenAI-compatible server at ``base_url`` (no local model).

    The server is remote, so the context fitter has no tokenizer to count with.
    """
    generator = {
        "type": "haystack.components.generators.chat.openai.OpenAIChatGenerator",
        "init_parameters": {
            "api_base_url": base_url,
            "model": "test",
            "api_key": {"type": "env_var", "env_vars": ["RAGKIT_TEST_KEY"], "strict": False},
            "max_retries": 0,
            "timeout": 10,
        },
    }
    profile = {
        "components": {"generator": generator, "fitter": {"init_parameters": {"tokenizer": None}}}
    }
    path = tmp_path / "reader-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path
