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


def test_pipeline_without_memory_is_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="no MemoryRecall component"):
        memory_spec_for_pipeline(REPO / "pipelines" / "rag.yaml")


def test_lite_pipeline_is_memorag_over_a_gist_memory() -> None:
    """memorag_lite.yaml copies memorag.yaml (pipelines are self-contained): they stay in step.

    Two settings differ on purpose: the memory kind, and the union's order (fused score for the
    many-document corpora a gist memory serves, corpus order as upstream for memorag.yaml).
    """
    import yaml

    root = Path(__file__).resolve().parents[2] / "pipelines"
    base = yaml.safe_load((root / "memorag.yaml").read_text())
    lite = yaml.safe_load((root / "memorag_lite.yaml").read_text())
    assert lite["components"]["memory_recall"]["init_parameters"].pop("kind") == "gist"
    assert base["components"]["memory_recall"]["init_parameters"].pop("kind") == "kv"
    assert lite["components"]["clue_retriever"]["init_parameters"].pop("order") == "score"
    assert base["components"]["clue_retriever"]["init_parameters"].pop("order") == "position"
    assert lite == base
