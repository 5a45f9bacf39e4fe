"""Pipeline YAML: loading through Haystack's allowlist and precise one-line validation errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import runner

from ragkit.cli import app
from ragkit.pipeline import PipelineError, load_pipeline, run_inputs, validate_pipeline_file

REPO = Path(__file__).resolve().parent.parent
GOOD = (REPO / "pipelines" / "retrieve.yaml").read_text()


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_retrieve_pipeline_loads_and_maps_inputs() -> None:
    pipe = load_pipeline(REPO / "pipelines" / "retrieve.yaml")
    inputs = run_inputs(pipe, "q?", top_k=3)
    assert inputs["query_embedder"] == {"text": "q?"}
    assert inputs["bm25"]["query"] == "q?"
    # --top-k goes to the final joiner only, so retrievers keep their wider candidate lists
    assert inputs["joiner"] == {"top_k": 3}
    assert "top_k" not in inputs["bm25"]


def test_import_ragkit_registers_haystack_allowlist() -> None:
    code = (
        "import ragkit\n"
        "from haystack import Pipeline\n"
        f"p = Pipeline.loads(open({str(REPO / 'pipelines' / 'retrieve.yaml')!r}).read())\n"
        "print(sorted(p.graph.nodes))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "bm25" in out.stdout
    # and without importing ragkit, Haystack refuses the module
    bare = code.replace("import ragkit\n", "")
    out = subprocess.run(
        [sys.executable, "-c", bare], capture_output=True, text=True, env={"PATH": ""}
    )
    assert out.returncode != 0
    assert "ragkit" in out.stderr and "allow" in out.stderr.lower()


def test_bad_init_parameter_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("top_k: 20", "top_k: ten", 1))
    problems = validate_pipeline_file(path)
    assert problems == [f"{path}: components.dense.init_parameters.top_k: expected int, got 'ten'"]


def test_unknown_parameter_suggests_close_name(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("top_k: 20", "topk: 20", 1))
    (problem,) = validate_pipeline_file(path)
    assert problem.startswith(f"{path}: components.dense.init_parameters.topk: unknown parameter")
    assert "did you mean 'top_k'" in problem


def test_unknown_component_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("components.DenseRetriever", "components.DenseRetreiver"))
    (problem,) = validate_pipeline_file(path)
    assert "components.dense.type: unknown component type" in problem
    assert "did you mean ragkit.retrieval.components.DenseRetriever" in problem


def test_disallowed_module_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evilmod.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    path = write(
        tmp_path, GOOD.replace("ragkit.retrieval.components.DenseRetriever", "evilmod.Thing")
    )
    sys.path.insert(0, str(tmp_path))
    try:
        (problem,) = validate_pipeline_file(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "module 'evilmod' is not allowed" in problem
    assert not marker.exists()


def test_bad_connection(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("receiver: dense.query_embedding", "receiver: dense.query"))
    problems = validate_pipeline_file(path)
    assert any(p.startswith(f"{path}: connections[0]:") for p in problems), problems
    path = write(
        tmp_path, GOOD.replace("sender: bm25.documents", "sender: bm26.documents"), "y.yaml"
    )
    assert validate_pipeline_file(path) == [
        f"{path}: connections[2].sender: no component named 'bm26'"
    ]


def test_missing_input(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - sender: query_embedder.embedding\n    receiver: dense.query_embedding\n", ""
    ).replace(
        "  query_embedder:\n    type: ragkit.retrieval.embedders.TextEmbedder\n    init_parameters:\n      model: minilm\n",
        "",
    )
    path = write(tmp_path, text)
    (problem,) = validate_pipeline_file(path)
    assert problem == (
        f"{path}: components.dense: input 'query_embedding' is required but nothing is connected "
        "to it; add a connection or remove the component"
    )


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "components: [unclosed\n")
    (problem,) = validate_pipeline_file(path)
    assert problem.startswith(f"{path}:") and "malformed YAML" in problem
    assert validate_pipeline_file(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: file not found"
    ]
    with pytest.raises(PipelineError):
        load_pipeline(path)


def test_cli_validate_exit_code_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("top_k: 20", "top_k: ten", 1))
    result = runner.invoke(app, ["pipelines", "validate", str(path)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"{path}: components.dense.init_parameters.top_k: expected int, got 'ten'"
    )
    ok = runner.invoke(app, ["pipelines", "list"])
    assert "retrieve.yaml" in ok.stdout and "default.yaml" in ok.stdout
