"""The real CLI in-process, as the tests call it: ``ragkit(*args) -> (code, stdout, stderr)``."""

from __future__ import annotations

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
