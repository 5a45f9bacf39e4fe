"""`ragkit memory build` builds what the pipeline (after profile overrides) will load."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.config import load_profile
from ragkit.memory.components import memory_spec_for_pipeline
from ragkit.pipeline import PipelineError

REPO = Path(__file__).resolve().parents[2]


def test_spec_follows_pipeline_profile_and_cli_changes() -> None:
    pipe = REPO / "pipelines" / "memorag.yaml"
    spec = memory_spec_for_pipeline(pipe)
    assert (spec.model, spec.model_backend, spec.settings.kind) == (
        "smollm2-135m-instruct",
        "llamacpp",
        "kv",
    )
    quality = memory_spec_for_pipeline(pipe, load_profile("cpu-quality").component_overrides())
    assert quality.model == "qwen2.5-coder-0.5b-instruct" and quality.n_ctx == 32768
    changed = memory_spec_for_pipeline(pipe, None, kind="gist", window_tokens=None, name="notes")
    assert changed.settings.kind == "gist" and changed.name == "notes"
    assert changed.settings.window_tokens is None


def test_nested_settings_load_and_the_flat_form_warns_naming_the_new_key(tmp_path: Path) -> None:
    from ragkit.memory.components import MemoryOptions
    from ragkit.pipeline import load_pipeline

    recall = load_pipeline(REPO / "pipelines" / "memorag_lite.yaml").get_component("memory_recall")
    assert (recall.model.backend, recall.model.n_ctx) == ("llama.cpp", 8192)
    assert recall.memory_options == MemoryOptions(kind="gist")
    flat = tmp_path / "flat.yaml"
    flat.write_text(
        "components:\n  memory_recall:\n    type: ragkit.memory.components.MemoryRecall\n"
        "    init_parameters: {model: m, model_backend: transformers, kind: gist, n_ctx: 2048}\n"
        "connections: []\n"
    )
    with pytest.warns(DeprecationWarning, match="'model_backend' is deprecated") as caught:
        recall = load_pipeline(flat).get_component("memory_recall")
    assert any("use 'memory.kind'" in str(w.message) for w in caught)
    assert (recall.model.name, recall.model.backend, recall.model.n_ctx) == (
        "m",
        "transformers",
        2048,
    )
    spec = memory_spec_for_pipeline(flat)
    assert (spec.model, spec.model_backend, spec.settings.kind) == ("m", "transformers", "gist")
    bad = tmp_path / "bad.yaml"
    bad.write_text(flat.read_text().replace("{model: m,", "{memory: {kind: fog}, model: m,"))
    bad.write_text(bad.read_text().replace(" kind: gist,", ""))
    with pytest.raises(PipelineError) as info:
        load_pipeline(bad)
    assert str(info.value) == (
        f"{bad}: components.memory_recall.init_parameters.memory.kind: "
        "must be one of 'kv' or 'gist', got 'fog'"
    )


def test_pipeline_without_memory_is_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="no MemoryRecall component"):
        memory_spec_for_pipeline(REPO / "pipelines" / "rag.yaml")


def test_lite_pipeline_is_memorag_over_a_gist_memory() -> None:
    """memorag_lite.yaml is ``same_as: memorag`` plus two settings: they stay in step.

    The memory kind, and the union's order (fused score for the many-document corpora a gist
    memory serves, corpus order as upstream for memorag.yaml).
    """
    import yaml

    from ragkit.pipeline import read_pipeline_yaml

    root = Path(__file__).resolve().parents[2] / "pipelines"
    base = yaml.safe_load((root / "memorag.yaml").read_text())
    lite, _ = read_pipeline_yaml(root / "memorag_lite.yaml")
    assert lite["components"]["memory_recall"]["init_parameters"]["memory"].pop("kind") == "gist"
    assert base["components"]["memory_recall"]["init_parameters"]["memory"].pop("kind") == "kv"
    assert lite["components"]["clue_retriever"]["init_parameters"].pop("order") == "score"
    assert base["components"]["clue_retriever"]["init_parameters"].pop("order") == "position"
    assert lite == base
