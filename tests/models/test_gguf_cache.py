"""GGUF conversion cache: reuse without reconversion, corrupt-cache rebuild, clear failures."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import pytest

from ragkit.models import gguf_cache
from ragkit.models.errors import ModelLoadError
from ragkit.models.gguf_cache import (
    MANIFEST_NAME,
    converted_dir_for,
    ensure_converted,
    read_manifest,
    verify_converted,
)
from ragkit.models.registry import resolve_model


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = resolve_model("smollm2-135m-instruct").path
    assert path is not None
    return path


def test_manifest_describes_source_and_files(lm, gguf: Path, model_cache_dir: Path) -> None:
    target = converted_dir_for(gguf, model_cache_dir)
    manifest = read_manifest(target)
    assert manifest is not None
    assert manifest["source"]["size"] == gguf.stat().st_size
    assert len(manifest["source"]["sha256"]) == 64
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    assert verify_converted(target, gguf) is None


def test_reuse_does_not_reconvert(lm, gguf: Path, model_cache_dir: Path) -> None:
    target = converted_dir_for(gguf, model_cache_dir)
    before = (target / MANIFEST_NAME).stat().st_mtime_ns
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ensure_converted(gguf, model_cache_dir) == target
    assert time.perf_counter() - started < 10  # a conversion takes ~20-35 s
    assert (target / MANIFEST_NAME).stat().st_mtime_ns == before


def test_corrupt_cache_is_detected_and_rebuilt(
    lm, gguf: Path, model_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a private cache holding a copy of the session's conversion: the session's own copy is
    # shared with the other test workers, which must never load the damaged one
    cache = tmp_path / "cache"
    target = converted_dir_for(gguf, cache)
    shutil.copytree(converted_dir_for(gguf, model_cache_dir), target)
    assert verify_converted(target, gguf) is None
    # The rebuild's dequantization would write the bytes the session's conversion wrote
    # (~20-35 s again): it copies them from before the damage; the rest of the rebuild is real.
    pristine = tmp_path / "pristine"
    shutil.copytree(target, pristine, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    converted: list[Path] = []

    def convert(source: Path, out: Path) -> None:
        converted.append(source)
        shutil.copytree(pristine, out, dirs_exist_ok=True)

    monkeypatch.setattr(gguf_cache, "_convert", convert)
    weights = target / "model.safetensors"
    with open(weights, "r+b") as fh:  # same size, different bytes: only the hash can tell
        fh.seek(weights.stat().st_size // 2)
        fh.write(b"\x00corrupt\x00")
    assert verify_converted(target, gguf) == "model.safetensors checksum mismatch"
    with pytest.warns(RuntimeWarning, match="invalid .*checksum mismatch.*rebuilding"):
        assert ensure_converted(gguf, cache) == target
    assert converted == [gguf.resolve()]  # rebuilt from the GGUF, not patched in place
    assert verify_converted(target, gguf) is None
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_bad_gguf_raises_model_load_error_naming_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file" * 10)
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        ensure_converted(bad, tmp_path / "cache")
    left = [p.name for p in (tmp_path / "cache" / "gguf").iterdir() if p.suffix != ".lock"]
    assert left == []  # temp dir cleaned up (the conversion's lock file stays, as filelock's do)


def test_concurrent_first_loads_convert_once_and_clear_a_killed_conversion(
    gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes loading the model first (a server and an eval) wait on one conversion."""
    import threading

    cache = tmp_path / "cache"
    target = converted_dir_for(gguf, cache)
    target.parent.mkdir(parents=True)
    killed = target.parent / f".{target.name}.tmp-killed"  # what a SIGKILLed conversion leaves
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"partial")
    calls: list[Path] = []

    def slow_convert(source: Path, out: Path) -> None:
        calls.append(source)
        time.sleep(0.5)  # long enough for the second caller to arrive while the first converts
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(gguf_cache, "_convert", slow_convert)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_converted(gguf, cache)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [target, target] and calls == [gguf.resolve()]
    assert not killed.exists()
    assert verify_converted(target, gguf) is None
