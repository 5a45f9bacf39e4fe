"""The int8 ONNX embedding backend (``minilm-int8``): offline atomic export, vectors, store identity.

The export and the store checks that need no model run with fakes; the tests that export the
packaged MiniLM for real share one export per module (about 10-20 s on 2 cores) and are marked
``slow`` with it.
"""

from __future__ import annotations

import json
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit.config import EmbeddedStore
from ragkit.models import onnx_embedder
from ragkit.models.errors import ModelLoadError
from ragkit.models.registry import INT8_EMBEDDING_MODEL, model_files, resolve_model
from ragkit.retrieval.embedders import DocumentEmbedder, TextEmbedder
from ragkit.stores.store import StoreError, open_store, release_store, same_embedding_model

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"


def _minilm_dir() -> Path:
    path = resolve_model("minilm").path
    assert path is not None
    return path


def _sample_texts() -> list[str]:
    """Paragraphs of the shipped sample corpus: real prose of mixed lengths."""
    texts: list[str] = []
    for path in sorted(SAMPLE.glob("*.md")) + sorted(SAMPLE.glob("*.txt")):
        texts += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return texts[:40]


# ---------------------------------------------------------------- registry and store identity


def test_int8_model_is_its_own_embedding_identity() -> None:
    spec = resolve_model(INT8_EMBEDDING_MODEL)
    assert (spec.kind, spec.backend, spec.path) == ("embedding", "onnx-int8", _minilm_dir())
    assert resolve_model("minilm").backend == "torch"
    # same weights, other vectors: never the same model as minilm or its directory
    assert model_files(INT8_EMBEDDING_MODEL) is None
    assert not same_embedding_model("minilm", INT8_EMBEDDING_MODEL, model_files)
    assert not same_embedding_model(str(_minilm_dir()), INT8_EMBEDDING_MODEL, model_files)
    assert same_embedding_model(INT8_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL, model_files)
    assert same_embedding_model("minilm", str(_minilm_dir()), model_files)  # unchanged


@pytest.mark.parametrize(
    ("built", "asked"), [("minilm", INT8_EMBEDDING_MODEL), (INT8_EMBEDDING_MODEL, "minilm")]
)
def test_store_refuses_the_other_backend(tmp_path: Path, built: str, asked: str) -> None:
    config = EmbeddedStore(path=str(tmp_path / "store"))
    release_store(open_store(config, embedding_model=built, model_files=model_files))
    with pytest.raises(StoreError, match=f"built with embedding model '{built}', not '{asked}'"):
        open_store(config, embedding_model=asked, model_files=model_files)
    store = open_store(config, model_files=model_files)  # no model asked: the recorded one
    try:
        assert store.embedding_model == built
        query = TextEmbedder(model="minilm" if built != "minilm" else INT8_EMBEDDING_MODEL)
        query.bind_store(store)
        assert query.model == built  # queries embed in the store's vector space
    finally:
        release_store(store)


def test_gpu_device_is_refused_before_any_export() -> None:
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        DocumentEmbedder(model=INT8_EMBEDDING_MODEL, device="cuda").warm_up()


def test_missing_onnxruntime_names_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ModelLoadError, match=r"pip install 'ragkit\[onnx\]'"):
        onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_missing_onnx_is_named_before_any_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx is only checked for (importing it costs ~0.7 s per command), yet still named."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ModelLoadError, match=r"\(onnx is not installed\).*pip install"):
        onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- atomic export (fake exporter)


def _fake_export(calls: list[str], fail: BaseException | None = None) -> Any:
    """An ``_export`` stand-in writing the files of an export, or failing half-way."""

    def export(source: Path, out: Path, settings: dict[str, Any]) -> list[str]:
        calls.append(str(out))
        (out / onnx_embedder.MODEL_FILE).write_bytes(b"half")
        if fail is not None:
            raise fail
        (out / "tokenizer.json").write_text("{}")
        body = {**settings, "input_names": ["input_ids"]}
        (out / onnx_embedder.SETTINGS_FILE).write_text(json.dumps(body))
        return ["input_ids"]

    return export


@pytest.fixture
def fake_onnx(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    pytest.importorskip("onnxruntime")
    calls: list[str] = []
    monkeypatch.setattr(onnx_embedder, "_export", _fake_export(calls))
    yield calls


@pytest.mark.parametrize("error", [RuntimeError("exporter crashed"), KeyboardInterrupt()])
def test_failed_export_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    pytest.importorskip("onnxruntime")
    calls: list[str] = []
    monkeypatch.setattr(onnx_embedder, "_export", _fake_export(calls, fail=error))
    expected = ModelLoadError if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected):
        onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path)
    target = onnx_embedder.onnx_dir_for(_minilm_dir(), tmp_path)
    assert calls and not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_export_is_published_once_reused_and_rebuilt_when_corrupt(
    tmp_path: Path, fake_onnx: list[str]
) -> None:
    target = onnx_embedder.onnx_dir_for(_minilm_dir(), tmp_path)
    target.parent.mkdir(parents=True)
    killed = target.parent / f".{target.name}.tmp-killed"  # what a SIGKILLed export leaves
    killed.mkdir()
    (killed / onnx_embedder.MODEL_FILE).write_bytes(b"partial")

    assert onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path) == target
    assert not killed.exists()
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["format_version"] == onnx_embedder.FORMAT_VERSION
    assert "model.safetensors" in manifest["source"]["files"]
    assert set(manifest["files"]) == {onnx_embedder.MODEL_FILE, "tokenizer.json", "encoder.json"}
    assert onnx_embedder.verify_onnx_dir(target, _minilm_dir()) is None

    onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path)
    assert len(fake_onnx) == 1  # reused

    (target / onnx_embedder.MODEL_FILE).write_bytes(b"hal!")  # same size, other bytes
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path)
    assert len(fake_onnx) == 2
    assert onnx_embedder.verify_onnx_dir(target, _minilm_dir()) is None


def test_changed_source_model_makes_the_export_stale(tmp_path: Path, fake_onnx: list[str]) -> None:
    import shutil

    source = tmp_path / "minilm"
    shutil.copytree(_minilm_dir(), source)
    target = onnx_embedder.ensure_onnx_int8(source, tmp_path / "cache")
    assert onnx_embedder.verify_onnx_dir(target, source) is None
    with (source / "config.json").open("a") as fh:
        fh.write("\n")
    assert onnx_embedder.verify_onnx_dir(target, source) == "source model changed"


def test_unsupported_modules_are_refused(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x.models.Transformer"}])
    )
    with pytest.raises(ModelLoadError, match="torch backend"):
        onnx_embedder.encoder_settings(tmp_path)


def test_minilm_settings_match_its_sentence_transformers_modules() -> None:
    assert onnx_embedder.encoder_settings(_minilm_dir()) == {
        "pooling": "mean",
        "normalize": True,
        "max_seq_length": 256,
        "dimension": 384,
    }


# ---------------------------------------------------------------- the real export (slow)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported once for this module with every network connection refused."""
    pytest.importorskip("onnxruntime")

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access during the ONNX export")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fresh cache: no rebuild warning
            return onnx_embedder.ensure_onnx_int8(_minilm_dir(), tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_real_export_is_offline_and_complete(exported: Path) -> None:
    assert onnx_embedder.verify_onnx_dir(exported, _minilm_dir()) is None
    names = {p.name for p in exported.iterdir()}
    assert names == {onnx_embedder.MODEL_FILE, "tokenizer.json", "encoder.json", "manifest.json"}
    # int8 weights: about a quarter of the 90 MB fp32 safetensors
    assert (exported / onnx_embedder.MODEL_FILE).stat().st_size < 30_000_000


@pytest.mark.slow
def test_int8_vectors_are_close_to_fp32(exported: Path) -> None:
    from ragkit.models.hf import load_sentence_transformer

    texts = _sample_texts()
    int8 = onnx_embedder.OnnxEncoder(exported).encode(texts, normalize=True)
    fp32 = load_sentence_transformer("minilm").encode(texts, normalize_embeddings=True)
    cosine = (int8 * fp32).sum(axis=1)
    # measured on 200 HotpotQA/2Wiki paragraphs: min 0.987, mean 0.994
    assert cosine.min() >= 0.98
    assert cosine.mean() >= 0.99
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_vectors_come_back_in_input_order_whatever_the_batch(exported: Path) -> None:
    encoder = onnx_embedder.OnnxEncoder(exported)
    texts = _sample_texts()
    together = encoder.encode(texts)
    backwards = encoder.encode(texts[::-1])[::-1]
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    # one text per run: a vector depends on its text only, never on its batch mates or place
    assert np.array_equal(together, backwards)
    assert np.array_equal(together, alone)
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_tokens_match_sentence_transformers(exported: Path) -> None:
    from ragkit.models.hf import load_sentence_transformer

    st = load_sentence_transformer("minilm")
    encoder = onnx_embedder.OnnxEncoder(exported)
    long_text = " ".join(_sample_texts())  # far over the 256-token limit
    for text in ["  Rivers carry sediment.  ", long_text, ""]:
        expected = st.tokenize([text])["input_ids"][0].tolist()
        got = encoder._tokenizer.encode(text.strip()).ids
        assert got == expected


@pytest.mark.slow
def test_components_embed_documents_and_queries_alike(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haystack import Document

    monkeypatch.setattr(onnx_embedder, "ensure_onnx_int8", lambda source: exported)
    texts = _sample_texts()[:5]
    docs = DocumentEmbedder(model=INT8_EMBEDDING_MODEL).run([Document(content=t) for t in texts])
    query = TextEmbedder(model=INT8_EMBEDDING_MODEL)
    for doc, text in zip(docs["documents"], texts, strict=True):
        assert doc.content == text and len(doc.embedding) == 384
        assert np.allclose(query.run(text)["embedding"], doc.embedding, atol=1e-6)
