"""The ``Examples:`` in the public components' docstrings run, offline, as written.

They are collected here, module by module, rather than by ``--doctest-modules`` for the whole
package: importing every module of ragkit for doctests would load optional extras. A module
whose examples use an undefined name, or print something else than they show, fails here.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import ragkit

MODULES = [
    "ragkit.answering.components",
    "ragkit.memory.components",
    "ragkit.ordering.components",
    "ragkit.retrieval.components",
    "ragkit.retrieval.links",
    "ragkit.selection.components",
]
"""Every ragkit module with a ``>>>`` example (checked below, so a new one is not forgotten)."""

WITH_EXAMPLES = [
    "BM25Retriever",
    "ChunkSelector",
    "ClueRetriever",
    "ContextFitter",
    "DenseRetriever",
    "LinkedPassages",
    "Reorderer",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0, f"{name} has no docstring examples"
    assert results.failed == 0, "".join(report)


def test_every_module_with_examples_is_collected() -> None:
    root = Path(ragkit.__file__).parent
    found = sorted(
        ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for path in root.rglob("*.py")
        if ">>>" in path.read_text(encoding="utf-8")
    )
    assert found == MODULES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_public_components_show_a_runnable_example(name: str) -> None:
    doc = getattr(ragkit, name).__doc__ or ""
    assert "Examples:" in doc and ">>> " in doc, name
