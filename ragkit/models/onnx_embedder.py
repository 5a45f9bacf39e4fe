"""Sentence embeddings on onnxruntime with int8 weights: exported once into the cache, offline.

Why: on a CPU, onnxruntime's fused BERT kernels with int8 matrix multiplies embed MiniLM several
times faster than torch fp32 (see ``docs/benchmarks/embeddings.md``), at a cosine of about 0.99
to the fp32 vectors. sentence-transformers' own ONNX backend needs ``optimum-onnx``, which pins
``transformers<4.58`` while ragkit runs on transformers 5, so ragkit does the same three steps
itself with torch's exporter and onnxruntime's own tools:

1. ``torch.onnx.export`` of the transformer (eager attention, which onnxruntime's fusion knows);
2. ``onnxruntime.transformers.optimizer`` fuses attention, layer norms and GELU (BERT models);
3. ``onnxruntime.quantization.quantize_dynamic`` with per-channel int8 weights (per-tensor
   weights lose too much: cosine 0.95 to fp32 instead of 0.99 on MiniLM).

Pooling and normalization follow the model's ``modules.json``, in numpy. The exported directory
holds the int8 model, the tokenizer and a manifest (format version, source checksums, library
versions, sha256 of every file) checked on reuse; it is built in a temp directory and renamed
into place under a file lock, so a killed export leaves nothing half-written.

:class:`OnnxEncoder` runs one text per call. Dynamic quantization scales activations per tensor,
so in a batch each vector would depend on its batch mates (cosine down to 0.98 against the same
text alone, measured); alone, a text always gets the same vector, and on 2 cores one text per
call was also the fastest (no padding; measured 80/s alone vs 50-74/s in sorted batches of 8-64).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.models.artifact import (
    MANIFEST_NAME,
    build_once,
    file_entry,
    file_problem,
    list_files,
    manifest_problem,
)
from ragkit.models.errors import ModelLoadError

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "OnnxEncoder",
    "encoder_settings",
    "ensure_onnx_int8",
    "onnx_dir_for",
    "verify_onnx_dir",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILE = "model_int8.onnx"
SETTINGS_FILE = "encoder.json"
INSTALL_HINT = "pip install 'ragkit[onnx]' (onnxruntime and onnx)"
# the source files whose change makes an export stale (weights, architecture, tokenizer)
_SOURCE_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json")


def onnx_dir_for(source: Path, cache_dir: Path | str | None = None) -> Path:
    """Cache directory of the int8 export of one model directory, keyed by its resolved path."""
    from ragkit.models.gguf_cache import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    resolved = Path(source).resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return root / "onnx" / f"{resolved.name}-int8-{key}"


def encoder_settings(source: Path) -> dict[str, Any]:
    """Pooling, normalization and length limit from a sentence-transformers model directory.

    Raises:
        ModelLoadError: The model's modules are not Transformer -> Pooling (mean or CLS) ->
            optional Normalize, the only pipeline the ONNX encoder reproduces.
    """
    source = Path(source)
    try:
        modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
        types = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        pooling_dir = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        pooling = json.loads((source / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ModelLoadError(
            f"{source} is not a sentence-transformers model directory the onnx-int8 backend "
            f"can export ({type(exc).__name__}: {exc}); use the torch backend"
        ) from None
    if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLoadError(
            f"{source}: modules {types} are not supported by the onnx-int8 backend (it runs "
            "Transformer -> Pooling -> Normalize); use the torch backend"
        )
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        mode = "mean"
    elif modes == ["pooling_mode_cls_token"]:
        mode = "cls"
    else:
        raise ModelLoadError(
            f"{source}: pooling {modes} is not supported by the onnx-int8 backend (mean or CLS)"
        )
    max_len = 512
    try:
        st_config = json.loads((source / "sentence_bert_config.json").read_text(encoding="utf-8"))
        max_len = int(st_config.get("max_seq_length") or max_len)
    except (OSError, ValueError, TypeError):
        pass
    return {
        "pooling": mode,
        "normalize": types[-1] == "Normalize",
        "max_seq_length": max_len,
        "dimension": int(pooling.get("word_embedding_dimension") or 0),
    }


def _source_info(source: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Size, mtime and sha256 of the source files; a stored hash is reused when unchanged."""
    old = (previous or {}).get("files") or {}
    files = {
        name: file_entry(source / name, old.get(name))
        for name in _SOURCE_FILES
        if (source / name).is_file()
    }
    return {"path": str(source.resolve()), "files": files}


def _same_source(stored: dict[str, Any], current: dict[str, Any]) -> bool:
    def strip(info: dict[str, Any]) -> dict[str, Any]:
        files = info.get("files") or {}
        return {n: (f.get("size"), f.get("sha256")) for n, f in files.items()}

    return bool(current.get("files")) and strip(stored) == strip(current)


def verify_onnx_dir(directory: Path, source: Path, *, full: bool = True) -> str | None:
    """Check an export against its manifest and its source model.

    Args:
        directory: The export directory.
        source: The model directory it should have been exported from.
        full: Also hash every exported file; otherwise sizes only.

    Returns:
        ``None`` when valid, else a short reason (for the rebuild warning).
    """
    manifest, problem = manifest_problem(directory, FORMAT_VERSION)
    if problem:
        return problem
    stored = manifest.get("source") or {}
    if not _same_source(stored, _source_info(source, stored)):
        return "source model changed"
    return file_problem(directory, manifest.get("files"), full=full)


def _import_onnxruntime() -> Any:
    """onnxruntime, once onnx is known to be installed too; else one line saying how to install.

    onnx itself is imported only by an export: checking that it is there costs nothing, while
    importing it costs ~0.7 s of every command that embeds with a cached export.
    """
    try:
        import onnxruntime
    except ImportError as exc:
        missing: str | None = exc.name or "onnxruntime"
    else:
        missing = None if importlib.util.find_spec("onnx") is not None else "onnx"
    if missing is not None:
        raise ModelLoadError(
            f"the onnx-int8 embedding backend needs onnxruntime and onnx ({missing} is not "
            f"installed); run: {INSTALL_HINT}, or use the torch model (e.g. minilm)"
        ) from None
    return onnxruntime


def _export_fp32(source: Path, out: Path) -> tuple[list[str], Any]:
    """Trace the transformer of ``source`` into ``out`` (fp32 ONNX); returns input names, config."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    # eager attention: onnxruntime's BERT fusion recognizes its graph, not SDPA's
    model = AutoModel.from_pretrained(
        str(source), attn_implementation="eager", dtype=torch.float32
    ).eval()
    names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in tokenizer.model_input_names
    ]
    sample = tokenizer(
        ["ragkit export", "a longer sample sentence, padded to trace the mask"],
        padding=True,
        return_tensors="pt",
    )

    class _Hidden(torch.nn.Module):
        """The transformer's last hidden state from positional inputs (what ONNX traces)."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the legacy exporter's deprecation
        torch.onnx.export(
            _Hidden(model),
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT well
        )
    tokenizer.save_pretrained(str(out.parent))  # writes tokenizer.json for the runtime
    return names, model.config


def _fuse(path: Path, config: Any) -> Path:
    """Fuse a BERT graph's attention, layer norms and GELU; other models are left unfused."""
    if getattr(config, "model_type", None) != "bert":
        return path
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(
        str(path),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    out = path.with_name("model_fused.onnx")
    fused.save_model_to_file(str(out))
    return out


def _quantize(path: Path, out: Path) -> None:
    """Dynamic int8 quantization with per-channel weights (per-tensor costs ~0.04 in cosine)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(path))
    # fusion by onnxruntime's optimizer is the pre-processing quantize_dynamic asks for; the
    # marker keeps it from logging a warning through (and configuring) the root logger
    onnx.helper.set_model_props(model, {"onnx.quant.pre_process": "onnxruntime.quant"})
    marked = path.with_name("model_marked.onnx")
    onnx.save(model, str(marked))
    quantize_dynamic(
        str(marked),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # fused contrib ops have no ONNX shape inference; their outputs are fp32
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _export(source: Path, out: Path, settings: dict[str, Any]) -> list[str]:
    """Export, fuse and quantize ``source`` into ``out``; only the int8 model is kept."""
    work = out / "work"
    work.mkdir()
    names, config = _export_fp32(source, work / "model_fp32.onnx")
    _quantize(_fuse(work / "model_fp32.onnx", config), out / MODEL_FILE)
    if not (work / "tokenizer.json").is_file():
        raise ModelLoadError(f"{source}: the onnx-int8 backend needs a fast tokenizer")
    shutil.move(str(work / "tokenizer.json"), str(out / "tokenizer.json"))
    shutil.rmtree(work)
    body = {**settings, "input_names": names}
    (out / SETTINGS_FILE).write_text(json.dumps(body, indent=1), encoding="utf-8")
    return names


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def ensure_onnx_int8(
    source: Path | str, cache_dir: Path | str | None = None, *, verify: bool = True
) -> Path:
    """A verified int8 ONNX export of the sentence-transformers model in ``source``.

    Exports on first use (offline: only local files are read) and reuses the export after; a
    stale or corrupt export is rebuilt with a warning. Concurrent callers wait on a file lock, so
    the model is exported once.

    Args:
        source: The model directory (e.g. the packaged MiniLM).
        cache_dir: Cache root (default ``$RAGKIT_CACHE``); tests pass a tmp dir.
        verify: Hash the exported files on reuse; ``False`` checks sizes only.

    Returns:
        The export directory, for :class:`OnnxEncoder`.

    Raises:
        ModelLoadError: onnxruntime/onnx missing, an unsupported model, or a failed export.
    """
    source = Path(source).resolve()
    settings = encoder_settings(source)
    _import_onnxruntime()
    target = onnx_dir_for(source, cache_dir)

    def export(tmp: Path, previous: dict[str, Any] | None) -> None:
        info = _source_info(source, previous)
        _export(source, tmp, settings)
        manifest = {
            "format_version": FORMAT_VERSION,
            "backend": "onnx-int8",
            "source": info,
            "versions": _versions(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": list_files(tmp),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    def failure(exc: Exception) -> ModelLoadError:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return ModelLoadError(
            f"exporting {source} to ONNX int8 failed ({type(exc).__name__}: {first[:200]}); "
            "use the torch model instead"
        )

    build_once(
        target,
        what="ONNX embedding cache",
        problem=lambda: verify_onnx_dir(target, source, full=verify),
        build=export,
        failure=failure,
    )
    return target


class OnnxEncoder:
    """Embeds texts with an int8 ONNX export (see :func:`ensure_onnx_int8`), one text per call.

    Args:
        directory: The export directory.
        threads: onnxruntime intra-op threads; None lets onnxruntime use the physical cores.
    """

    def __init__(self, directory: Path | str, threads: int | None = None) -> None:
        """Load the tokenizer and an onnxruntime session on the CPU."""
        from tokenizers import Tokenizer

        ort = _import_onnxruntime()
        directory = Path(directory)
        self.directory = directory
        self.settings = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()  # one text per call: nothing to pad
        self._tokenizer.enable_truncation(max_length=int(self.settings["max_seq_length"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        # on a busy machine spinning threads steal the CPU from each other: one text per call ran
        # at 33 texts/s with spinning and 118/s without at a load of 8 on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = list(self.settings["input_names"])

    @property
    def dimension(self) -> int:
        """Vector size."""
        return int(self.settings["dimension"])

    def encode(self, texts: Sequence[str], normalize: bool | None = None) -> Any:
        """Embed ``texts``; returns a float32 array (one row per text, in input order).

        Texts are stripped as sentence-transformers does and truncated to the model's length.

        Args:
            texts: The texts.
            normalize: Scale rows to unit length; None does what the model's modules say.
        """
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([str(t).strip() for t in texts])
        mean = self.settings["pooling"] == "mean"
        for row, enc in enumerate(encodings):
            ids = np.asarray([enc.ids], dtype=np.int64)
            feed = {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
            }
            hidden = self._session.run(None, {n: feed[n] for n in self._inputs})[0][0]
            out[row] = hidden.mean(axis=0) if mean else hidden[0]
        if self.settings["normalize"] if normalize is None else normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.clip(norms, 1e-12, None)
        return out
