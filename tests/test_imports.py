"""Import hygiene: heavy libraries stay inside ragkit.models, no cycles, no private cross-imports.

Imports inside functions count like top-level ones: a deferred import still ties the two
modules together (only ``if TYPE_CHECKING:`` imports, which never run, are left out).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ragkit

ROOT = Path(ragkit.__file__).parent
HEAVY = ("torch", "transformers", "tokenizers", "sentence_transformers", "llama_cpp", "ray")
# a heavy library that has its own home outside ragkit.models: Ray lives in ragkit.scale
HOMES = {"ray": "ragkit.scale"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def _imports(tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(module, imported names) of each import; top-level means outside functions."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # typing-only imports never run
            if not (top_level_only and inside):
                if isinstance(child, ast.Import):
                    found.extend((a.name, []) for a in child.names)
                elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                    found.append((child.module, [a.name for a in child.names]))
            visit(child, inside)

    visit(tree, False)
    return found


def _loaded_after(imports: str, also: tuple[str, ...] = ()) -> list[str]:
    """Which heavy libraries (and ``also``) a fresh interpreter has loaded after ``imports``."""
    names = (*HEAVY, *also)
    code = f"import sys, json\n{imports}\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_the_packages_loads_no_torch() -> None:
    imports = (
        "import ragkit, ragkit.cli, ragkit.config, ragkit.errors\n"
        "import ragkit.retrieval, ragkit.answering, ragkit.indexing, ragkit.models\n"
        "import ragkit.models.registry, ragkit.models.errors, ragkit.answering.run\n"
        "import ragkit.scale, ragkit.scale.cluster, ragkit.scale.indexing, ragkit.indexing.run"
    )
    assert _loaded_after(imports) == []


def test_importing_components_loads_no_transformers() -> None:
    # Haystack itself imports torch (haystack.utils.device) whenever it is installed, so the
    # component modules cannot avoid torch; transformers and tokenizers are ragkit's to avoid.
    imports = (
        "import ragkit.pipeline, ragkit.retrieval.components, ragkit.retrieval.embedders\n"
        "import ragkit.answering.components, ragkit.indexing.indexer, ragkit.indexing.splitter\n"
        "import ragkit.indexing.loaders, ragkit.indexing.writer, ragkit.models.components\n"
        "import ragkit.models.llamacpp_components, ragkit.models.chat, ragkit.models.driver"
    )
    assert set(_loaded_after(imports)) <= {"torch"}


def test_embedding_with_the_cached_int8_export_loads_no_transformers_and_no_onnx() -> None:
    """The default CPU embedder runs on onnxruntime and tokenizers alone once exported:
    transformers (~0.6 s) and onnx (~0.7 s, the exporter) would be paid by every ``ragkit
    index`` and ``ragkit query``."""
    pytest.importorskip("onnxruntime")
    from ragkit.models.onnx_embedder import ensure_onnx_int8
    from ragkit.models.registry import INT8_EMBEDDING_MODEL, resolve_model

    source = resolve_model(INT8_EMBEDDING_MODEL).path
    ensure_onnx_int8(source)  # the export (in this session's cache), which does need them
    code = (
        "from ragkit.retrieval.embedders import TextEmbedder\n"
        f"embedder = TextEmbedder(model={INT8_EMBEDDING_MODEL!r})\n"
        "embedder.warm_up()\n"
        "assert len(embedder.run(text='Which planet has the strongest winds?')['embedding']) == 384"
    )
    loaded = _loaded_after(code, also=("onnx",))
    assert "transformers" not in loaded and "onnx" not in loaded, loaded
    assert "tokenizers" in loaded  # the probe sees what the encoder does load


def test_heavy_libraries_are_imported_only_inside_ragkit_models() -> None:
    offenders = []
    for name, tree in _modules().items():
        if name.startswith("ragkit.models"):
            continue
        for module, _ in _imports(tree, top_level_only=False):
            root = module.split(".")[0]
            home = HOMES.get(root)
            if home is not None and (name == home or name.startswith(home + ".")):
                continue
            if root in HEAVY:
                offenders.append(f"{name} imports {module}")
    assert offenders == []


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = []
    for name, tree in _modules().items():
        for module, names in _imports(tree, top_level_only=False):
            if module.startswith("ragkit") and module != name:
                offenders += [f"{name}: {module}.{n}" for n in names if n.startswith("_")]
    assert offenders == []


def _graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Module -> the ragkit modules it imports, function-local imports included."""
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        deps = set()
        for module, names in _imports(tree, top_level_only=False):
            for candidate in (module, *(f"{module}.{n}" for n in names)):
                if candidate in modules and candidate != name:
                    deps.add(candidate)
        graph[name] = deps
    return graph


def test_imports_inside_functions_are_seen() -> None:
    tree = ast.parse("def f():\n    from ragkit.models import registry\n")
    assert _imports(tree, top_level_only=False) == [("ragkit.models", ["registry"])]
    assert _imports(tree, top_level_only=True) == []


FORBIDDEN = {
    # the store layer takes what it needs from the models as an argument (model_files)
    "ragkit.stores": ("ragkit.models",),
    # the methods do not lean on each other; shared helpers live in ragkit.documents/ragkit.text
    "ragkit.decoding": ("ragkit.memory", "ragkit.stores", "ragkit.selection", "ragkit.notes"),
    "ragkit.selection": ("ragkit.memory", "ragkit.stores", "ragkit.decoding", "ragkit.notes"),
    "ragkit.ordering": ("ragkit.memory", "ragkit.stores", "ragkit.decoding", "ragkit.notes"),
    # models never import the algorithms above them
    "ragkit.models": (
        "ragkit.decoding",
        "ragkit.selection",
        "ragkit.memory",
        "ragkit.notes",
        "ragkit.ordering",
        "ragkit.retrieval",
        "ragkit.answering",
        "ragkit.indexing",
        "ragkit.stores",
        "ragkit.pipeline",
    ),
}


def test_layers_import_one_way() -> None:
    offenders = []
    for name, deps in _graph(_modules()).items():
        for layer, banned in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                offenders += [
                    f"{name} imports {dep}"
                    for dep in sorted(deps)
                    if any(dep == b or dep.startswith(b + ".") for b in banned)
                ]
    assert offenders == []


def test_no_import_cycles_and_nothing_imports_the_cli() -> None:
    modules = _modules()
    graph = _graph(modules)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
    # the CLI is the top layer: library code (benchmarks included) never imports it
    users = [
        name
        for name, tree in modules.items()
        if name not in {"ragkit.cli", "ragkit.__main__"}
        and any(m == "ragkit.cli" for m, _ in _imports(tree, top_level_only=False))
    ]
    assert users == []
