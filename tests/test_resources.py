"""Shipped pipelines, indexers and profiles resolve from any directory; the user's own files win."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.config import ConfigError, load_profile
from ragkit.resources import ResourceNotFoundError, resolve_yaml, shipped_dir, shipped_files

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An unrelated working directory, without pipelines/, indexers/ or configs/."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_checkout_uses_the_top_level_folders(elsewhere: Path) -> None:
    # a checkout has no ragkit/data/<kind> copy (only the wheel build makes it)
    for kind in ("pipelines", "indexers", "configs"):
        assert shipped_dir(kind) == REPO / kind
    names = [p.stem for p in shipped_files("pipelines")]
    assert names == sorted(p.stem for p in (REPO / "pipelines").glob("*.yaml"))
    assert "rag" in names and "retrieve" in names


def test_bare_names_resolve_from_an_unrelated_directory(elsewhere: Path) -> None:
    assert resolve_yaml("rag", "pipelines") == REPO / "pipelines" / "rag.yaml"
    assert resolve_yaml("retrieve.yaml", "pipelines") == REPO / "pipelines" / "retrieve.yaml"
    assert resolve_yaml("default", "indexers") == REPO / "indexers" / "default.yaml"
    reader = load_profile("cpu-small").components["generator"].init_parameters["model"]
    assert reader == "smollm2-135m-instruct"


def test_user_files_override_shipped_ones(elsewhere: Path) -> None:
    own = elsewhere / "pipelines" / "rag.yaml"
    own.parent.mkdir()
    own.write_text("# mine\n")
    assert resolve_yaml("rag", "pipelines") == own
    explicit = elsewhere / "my.yaml"
    explicit.write_text("# by path\n")
    assert resolve_yaml(str(explicit), "pipelines") == explicit
    assert resolve_yaml("retrieve", "pipelines") == REPO / "pipelines" / "retrieve.yaml"
    # profiles too: ./configs/<name>.yaml before the shipped one of the same name
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "cpu-small.yaml").write_text("embedding:\n  batch_size: 3\n")
    assert load_profile("cpu-small").embedding.batch_size == 3


def test_unknown_names_list_the_shipped_ones(elsewhere: Path) -> None:
    with pytest.raises(ResourceNotFoundError, match=r"unknown pipeline 'nope': .*rag, .*retrieve"):
        resolve_yaml("nope", "pipelines")
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'; known profiles: .*cpu-small"):
        load_profile("nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        shipped_dir("prompts")  # type: ignore[arg-type]
