"""Registry, device and pure helpers: no model weights are loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.models.base import require_capability, truncate_passages_to_fit
from ragkit.models.device import resolve_device
from ragkit.models.errors import (
    CapabilityError,
    ContextLengthError,
    ModelLoadError,
    UnknownModelError,
)
from ragkit.models.registry import (
    PACKAGED_MODELS,
    PackagedModel,
    known_model_names,
    register_packaged_model,
    resolve_model,
)


def test_packaged_defaults_resolve_to_files_on_disk() -> None:
    emb = resolve_model("minilm")
    assert (emb.kind, emb.source) == ("embedding", "packaged")
    assert emb.path is not None and emb.path.is_dir()
    llm = resolve_model("smollm2-135m-instruct")
    assert (llm.kind, llm.source) == ("causal", "packaged")
    assert llm.path is not None and llm.path.suffix == ".gguf" and llm.path.is_file()
    assert llm.is_gguf


def test_paths_and_hub_ids(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)).source == "gguf"
    st_dir = tmp_path / "st"
    st_dir.mkdir()
    (st_dir / "modules.json").write_text("[]")
    assert resolve_model(str(st_dir)).kind == "embedding"
    assert resolve_model(str(tmp_path)).source == "local_dir"
    hub = resolve_model("org/some-model")
    assert (hub.source, hub.hub_id, hub.path) == ("hub", "org/some-model", None)


@pytest.mark.parametrize("name", ["no-such-model", "./missing/dir/x", "missing.gguf", ""])
def test_unknown_name_lists_known_names(name: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve_model(name)
    message = str(info.value)
    assert "\n" not in message
    for known in known_model_names():
        assert known in message


def test_kind_mismatch_is_reported() -> None:
    with pytest.raises(ModelLoadError, match="embedding model"):
        resolve_model("minilm", kind="causal")


def test_register_packaged_model_extension_point(tmp_path: Path) -> None:
    gguf = tmp_path / "extra.gguf"
    gguf.write_bytes(b"GGUF")
    try:
        register_packaged_model("extra-test", PackagedModel(kind="causal", locate=lambda: gguf))
        assert resolve_model("extra-test").path == gguf
        assert "extra-test" in known_model_names()
        with pytest.raises(ValueError, match="already registered"):
            register_packaged_model("extra-test", PackagedModel(kind="causal", locate=lambda: gguf))
    finally:
        PACKAGED_MODELS.pop("extra-test", None)


def test_missing_package_gives_install_hint() -> None:
    from ragkit.models.registry import packaged_gguf

    with pytest.raises(ModelLoadError, match="pip install no-such-pkg"):
        packaged_gguf("no_such_pkg_xyz", "no-such-pkg")


def test_resolve_device() -> None:
    import torch

    assert resolve_device("cpu") == ("cpu", torch.float32)
    assert resolve_device("cpu", "bf16") == ("cpu", torch.bfloat16)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == ("cpu", torch.float32)
        with pytest.raises(ModelLoadError, match="CUDA requested but not available"):
            resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_device("cpu", "int3")
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("tpu")


def _words(text: str) -> int:
    return len(text.split())


def test_truncate_passages_drops_and_trims_never_the_question() -> None:
    passages = ["a " * 10, "b " * 10, "c " * 10]
    assert truncate_passages_to_fit("q q", passages, 100, count_tokens=_words) == passages
    with pytest.warns(RuntimeWarning, match="of 3 passages kept 1 whole, trimmed 1, dropped 1"):
        kept = truncate_passages_to_fit(
            "q q",
            passages,
            2 + 10 + 5,
            count_tokens=_words,
            trim=lambda t, n: " ".join(t.split()[:n]),
            min_trimmed_tokens=3,
        )
    assert kept == [passages[0], "b b b b b"]
    with pytest.raises(ContextLengthError):
        truncate_passages_to_fit("q " * 50, passages, 10, count_tokens=_words)


def test_require_capability_message() -> None:
    class Remote:
        name = "server"
        supports_logits = False

    with pytest.raises(CapabilityError, match="needs token logits"):
        require_capability(Remote(), "supports_logits", "LLM relevance scoring")
