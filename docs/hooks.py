"""MkDocs hooks: the CLI and Python API reference pages are generated at build time.

``reference/cli.md`` is typer's own Markdown for the ``ragkit`` app (``typer ragkit.cli utils
docs --name ragkit``) and ``reference/api.md`` one mkdocstrings entry per name in
``ragkit.__all__``, so neither page can drift from the code: a new option, command or public
name appears on the next build.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
API_PAGE = "reference/api.md"

# modules whose classes are Haystack components besides the ``*.components`` ones
_COMPONENT_MODULES = {
    "ragkit.indexing.loaders",
    "ragkit.indexing.splitter",
    "ragkit.indexing.writer",
    "ragkit.retrieval.embedders",
    "ragkit.models.llamacpp_components",
}


def cli_reference() -> str:
    """typer's Markdown for ``ragkit``, with a line saying where it comes from."""
    docs = subprocess.run(
        [sys.executable, "-m", "typer", "ragkit.cli", "utils", "docs", "--name", "ragkit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = docs.split("\n", 1)[1] if docs.startswith("# ") else docs
    return (
        "# CLI reference\n\n"
        "Generated from the typer app in `ragkit/cli.py` on every docs build "
        "(`typer ragkit.cli utils docs --name ragkit`); `ragkit COMMAND --help` prints the same.\n"
        + body
    )


def _group(name: str, module: str) -> str:
    if name.endswith("Error") or name == "InvalidParameter":
        return "errors"
    if name[0].islower():
        return "functions"
    if module.endswith(".components") or module in _COMPONENT_MODULES:
        return "components"
    return "types"


def api_reference() -> str:
    """One mkdocstrings entry per public name, grouped: functions, components, types, errors."""
    import ragkit

    exports: dict[str, str] = ragkit._EXPORTS  # name -> defining module
    titles = {
        "functions": "Functions: the CLI's commands as calls",
        "components": "Haystack components",
        "types": "Results, settings, stores and models",
        "errors": "Errors",
    }
    intro = {
        "functions": "Each is one call, the same run as the matching `ragkit` command.",
        "components": (
            "Every one is a Haystack `@component`: it loads from pipeline YAML "
            "(`type: ragkit....`) and drops into a plain Haystack pipeline."
        ),
        "types": "What the functions return or take.",
        "errors": (
            "Every error derives from `RagkitError`; its message is the one line the CLI prints "
            "and `exit_code` the status it exits with."
        ),
    }
    lines = [
        "# Python API reference",
        "",
        "Every name below is importable from the top level (`from ragkit import NAME`): this page "
        "is generated from `ragkit.__all__` on every docs build. Importing `ragkit` is cheap: "
        "each name loads its module on first use.",
        "",
    ]
    for group, title in titles.items():
        names = sorted(n for n in ragkit.__all__ if _group(n, exports[n]) == group)
        lines += [f"## {title}", "", intro[group], ""]
        for name in names:
            lines.append(f"::: {exports[name]}.{name}")
            if group == "errors":
                lines += ["    options:", "      members: false"]
            lines.append("")
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages to the build."""
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, API_PAGE, content=api_reference()))
    return files
