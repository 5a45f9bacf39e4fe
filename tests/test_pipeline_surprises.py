"""Issue 11 "surprises": misspelled profile component names, and size caps on YAML files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from cli_run import runner

from ragkit.cli import app
from ragkit.config import MAX_YAML_BYTES, ConfigError, load_profile
from ragkit.pipeline import PipelineError, load_pipeline, validate_pipeline_file

REPO = Path(__file__).resolve().parent.parent
RETRIEVE = REPO / "pipelines" / "retrieve.yaml"


def test_misspelled_override_names_it_and_the_pipeline_components() -> None:
    with pytest.raises(PipelineError) as info:
        load_pipeline(RETRIEVE, overrides={"joinr": {"init_parameters": {"top_k": 3}}})
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    assert "'joinr'" in msg and "did you mean 'joiner'" in msg
    for name in ("query_embedder", "dense", "bm25", "joiner"):
        assert name in msg


def test_override_for_a_component_other_pipelines_have_is_accepted() -> None:
    # profiles set generator/fitter for answering pipelines; retrieve.yaml has neither
    overrides = {
        "generator": {"init_parameters": {"model": "x"}},
        "fitter": {"init_parameters": {"tokenizer": None}},
        "joiner": {"init_parameters": {"top_k": 3}},
    }
    pipe = load_pipeline(RETRIEVE, overrides=overrides)
    assert pipe.get_component("joiner").top_k == 3
    # the indexing pipeline accepts the same profile (its split/loader keys target it)
    load_pipeline(REPO / "indexers" / "default.yaml", overrides=overrides)


def test_override_known_from_a_sibling_pipeline_folder(tmp_path: Path) -> None:
    """A user's own pipelines/ folder counts: its component names are legitimate profile targets."""
    own = tmp_path / "pipelines"
    own.mkdir()
    data = yaml.safe_load(RETRIEVE.read_text())
    data["components"]["reranker_x"] = data["components"].pop("joiner")
    data["connections"] = [
        {k: v.replace("joiner", "reranker_x") for k, v in c.items()} for c in data["connections"]
    ]
    (own / "mine.yaml").write_text(yaml.safe_dump(data))
    (own / "plain.yaml").write_text(RETRIEVE.read_text())
    load_pipeline(own / "plain.yaml", overrides={"reranker_x": {"init_parameters": {"top_k": 2}}})
    with pytest.raises(PipelineError, match="reranker_y"):
        load_pipeline(own / "plain.yaml", overrides={"reranker_y": {"init_parameters": {}}})


def test_cli_reports_the_profile_typo(tmp_path: Path) -> None:
    profile = tmp_path / "typo.yaml"
    profile.write_text("components:\n  joinr:\n    init_parameters:\n      top_k: 3\n")
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        ["query", "q", "--store", str(store), "--pipeline", "retrieve", "--profile", str(profile)],
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "joinr" in lines[0] and str(profile) in lines[0]
    assert "joiner" in lines[0]
    assert not store.exists()  # checked before the store is opened


def test_oversized_pipeline_yaml_is_refused_fast(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    filler = "# " + "x" * 78 + "\n"
    big.write_text(RETRIEVE.read_text() + filler * (MAX_YAML_BYTES // len(filler) + 1))
    assert big.stat().st_size > MAX_YAML_BYTES
    start = time.perf_counter()
    problems = validate_pipeline_file(big)
    assert time.perf_counter() - start < 0.5
    assert len(problems) == 1 and str(big) in problems[0] and "limit" in problems[0]
    with pytest.raises(PipelineError, match="limit"):
        load_pipeline(big)
    # just under the cap still loads
    ok = tmp_path / "ok.yaml"
    ok.write_text(RETRIEVE.read_text() + filler * ((MAX_YAML_BYTES - 4096) // len(filler)))
    assert ok.stat().st_size <= MAX_YAML_BYTES
    assert validate_pipeline_file(ok) == []


def test_oversized_profile_yaml_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big-profile.yaml"
    big.write_text("store:\n  kind: memory\n" + "# filler\n" * (MAX_YAML_BYTES // 9 + 1))
    with pytest.raises(ConfigError, match="limit") as info:
        load_profile(str(big))
    assert str(big) in str(info.value)
