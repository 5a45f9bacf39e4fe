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
