"""Profiles: YAML with precise errors, and --store overriding the profile's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.config import (
    ConfigError,
    EmbeddedStore,
    MemoryStore,
    ServerStore,
    load_profile,
    store_from_location,
)


def test_shipped_profiles_load() -> None:
    assert isinstance(load_profile("default").store, EmbeddedStore)
    server = load_profile("server").store
    assert (
        isinstance(server, ServerStore)
        and server.shard_number == 2
        and server.replication_factor == 2
    )
    assert isinstance(load_profile("memory").store, MemoryStore)


def test_cli_default_profile_is_cpu_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --profile the CLI answers with the stronger reader; cpu-small stays the small one."""
    from ragkit.cli import _profile

    monkeypatch.delenv("RAGKIT_PROFILE", raising=False)
    default = _profile(None).component_overrides()
    assert default == load_profile("cpu-quality").component_overrides()
    assert default["generator"]["init_parameters"]["model"] == "qwen2.5-coder-1.5b-instruct"
    small = load_profile("cpu-small").component_overrides()
    assert small["generator"]["init_parameters"]["model"] == "smollm2-135m-instruct"
    monkeypatch.setenv("RAGKIT_PROFILE", "cpu-small")
    assert _profile(None).component_overrides() == small


def test_unknown_key_and_bad_value_name_the_yaml_path(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("store:\n  kind: embedded\n  pth: x\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: store\.pth: unknown key"):
        load_profile(str(bad))
    bad.write_text("indexing:\n  max_file_mb: lots\n")
    with pytest.raises(ConfigError, match=r"indexing\.max_file_mb: .*got 'lots'"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="unknown profile 'nope'; known profiles: .*default"):
        load_profile("nope")


def test_store_location_overrides_profile() -> None:
    assert store_from_location(":memory:").kind == "memory"
    srv = store_from_location("http://qdrant:6333", load_profile("server"))
    assert (
        isinstance(srv, ServerStore) and srv.url == "http://qdrant:6333" and srv.shard_number == 2
    )
    emb = store_from_location("/tmp/x")
    assert isinstance(emb, EmbeddedStore) and emb.path == "/tmp/x"
    assert store_from_location(None, load_profile("server")).kind == "server"


def test_indexing_overrides_only_from_keys_the_profile_sets(tmp_path: Path) -> None:
    assert load_profile(None).indexing_overrides() == {}
    prof = tmp_path / "p.yaml"
    prof.write_text("split:\n  split_by: word\n  split_length: 50\nindexing:\n  max_file_mb: 1\n")
    out = load_profile(str(prof)).indexing_overrides()
    assert out == {
        "splitter": {"init_parameters": {"split_by": "word", "split_length": 50}},
        "loader": {"init_parameters": {"max_file_mb": 1.0}},
    }
    from ragkit.pipeline import load_pipeline

    pipe = load_pipeline(
        Path(__file__).resolve().parent.parent / "indexers" / "default.yaml", overrides=out
    )
    assert pipe.get_component("splitter").split_length == 50
    assert pipe.get_component("splitter").split_overlap == 20  # the YAML's own value stays
