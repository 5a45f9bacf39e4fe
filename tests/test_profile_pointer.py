"""``same_as``: a profile that points at another (configs/default.yaml -> cpu-quality)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragkit.config import ConfigError, load_profile

REPO = Path(__file__).resolve().parent.parent


def test_default_is_a_pointer_not_a_copy() -> None:
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    assert data == {"same_as": "cpu-quality"}
    default, quality = load_profile("default"), load_profile("cpu-quality")
    assert default.model_dump() == quality.model_dump()
    assert default._source is not None and default._source.endswith("cpu-quality.yaml")


def test_pointer_to_a_file_and_a_chain(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("store: {kind: memory}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(f"same_as: {tmp_path / 'mine.yaml'}\n", encoding="utf-8")
    (tmp_path / "a.yaml").write_text(f"same_as: {tmp_path / 'b.yaml'}\n", encoding="utf-8")
    assert load_profile(tmp_path / "a.yaml").store.kind == "memory"


def test_pointer_loop_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(f"same_as: {tmp_path / 'b.yaml'}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(f"same_as: {tmp_path / 'a.yaml'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="points back at itself"):
        load_profile(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("value", "message"),
    [("no-such-profile", "unknown profile 'no-such-profile'"), ("[1, 2]", "must name a profile")],
)
def test_bad_pointer_names_the_file(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"same_as: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_same_as_beside_settings_is_refused(tmp_path: Path) -> None:
    """Only a pure pointer redirects: a pointer with overrides would hide which value wins."""
    path = tmp_path / "p.yaml"
    path.write_text("same_as: cpu-quality\nstore: {kind: memory}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="same_as"):
        load_profile(path)
