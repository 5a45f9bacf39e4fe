"""Verified artifacts: a file is rehashed only when something wrote to it since it was listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit.models import artifact
from ragkit.models.artifact import MANIFEST_NAME, read_verified, write_verified


def _saved(tmp_path: Path) -> Path:
    target = tmp_path / "art"
    write_verified(
        target, {"weights.bin": b"w" * 4096, "config.json": b"{}"}, {"format_version": 1}
    )
    return target


def _read(target: Path) -> dict:
    return read_verified(target, what="artifact", format_version=1, error=RuntimeError, rebuild="r")


def _hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = artifact.file_sha256

    def counting(path: Path, *args: object) -> str:
        names.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(artifact, "file_sha256", counting)
    return names


def test_unchanged_files_are_not_hashed_again(tmp_path: Path, monkeypatch) -> None:
    target = _saved(tmp_path)
    files = json.loads((target / MANIFEST_NAME).read_text())["files"]
    assert all("mtime_ns" in meta for meta in files.values())
    hashed = _hashed(monkeypatch)
    _read(target)
    assert hashed == []


def test_a_same_size_write_is_rehashed_and_refused(tmp_path: Path, monkeypatch) -> None:
    target = _saved(tmp_path)
    weights = target / "weights.bin"
    with open(weights, "r+b") as fh:  # same size, other bytes: only the hash can tell
        fh.seek(100)
        fh.write(b"corrupt")
    hashed = _hashed(monkeypatch)
    with pytest.raises(RuntimeError, match="weights.bin checksum mismatch"):
        _read(target)
    assert hashed == ["weights.bin"]


def test_a_manifest_without_times_hashes_every_file(tmp_path: Path, monkeypatch) -> None:
    """Manifests written before the time was recorded keep the full check."""
    target = _saved(tmp_path)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    for meta in manifest["files"].values():
        del meta["mtime_ns"]
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    hashed = _hashed(monkeypatch)
    _read(target)
    assert sorted(hashed) == ["config.json", "weights.bin"]
