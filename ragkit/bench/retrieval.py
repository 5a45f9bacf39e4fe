"""``ragkit bench retrieval``: BM25 engines, incremental updates, hybrid latency, indexing speed.

Everything is measured in one run on this machine, each figure next to its baseline:
- BM25 (see :mod:`ragkit.bench.bm25_bench`): ragkit vs rank-bm25 vs bm25s at ``chunks``.
- ``ragkit index`` chunks/s (load, split, embed, write dense + BM25, manifest) vs the raw
  encoder's throughput on the same texts and the same device (goal >= 0.8x), for today's MiniLM
  on torch fp32 and for ``minilm-int8`` (onnxruntime, int8); then int8 against fp32, end to end
  and raw (goal >= 2.0x end to end).
- Hybrid query (MiniLM query embedding + Qdrant dense + BM25 + RRF) p50/p95 over the store the
  indexing run built (``hybrid_chunks`` chunks, embedded Qdrant), and p50 on the int8 store.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.bench.bm25_bench import format_table, run_bm25_bench
from ragkit.bench.corpus import bench_queries, build_bench_corpus
from ragkit.bench.table import make_row
from ragkit.bench.timing import timed

BASE_EMBEDDER = "minilm"
"""The baseline: ``ragkit index``'s embedder before new stores defaulted to ``minilm-int8``
(sentence-transformers on torch, fp32; existing stores and GPU profiles still use it). Its row
keeps the label ``ragkit index`` so earlier reports compare."""
EMBEDDERS = (BASE_EMBEDDER, "minilm-int8")


def _log(progress: bool, msg: str) -> None:
    """A progress line on stderr (stdout stays for the table or the JSON)."""
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _load() -> float:
    """The 1-minute load average: the busier the shared machine, the lower every rate."""
    return round(os.getloadavg()[0], 2)


def _raw_encoder(model: str, device: str) -> tuple[Callable[[list[str]], Any], str]:
    """The model's encoder without Haystack or ragkit around it: the ceiling of ``ragkit index``.

    Returns:
        ``encode(texts)`` and a label for the table.
    """
    from ragkit.models.registry import resolve_model

    spec = resolve_model(model, kind="embedding")
    if spec.backend == "onnx-int8":
        from ragkit.models.onnx_embedder import OnnxEncoder, ensure_onnx_int8

        assert spec.path is not None
        encoder = OnnxEncoder(ensure_onnx_int8(spec.path))
        return (lambda texts: encoder.encode(texts, normalize=True)), "raw onnxruntime int8, cpu"
    from ragkit.models.hf import load_sentence_transformer

    st = load_sentence_transformer(model, device=device)
    return (
        lambda texts: st.encode(texts, batch_size=64, normalize_embeddings=True)
    ), f"raw ST encode, {device}"


def _write_corpus(chunks: list[tuple[int, str]], corpus: Path) -> None:
    """100 jsonl files of one chunk-sized record per line: each record becomes one chunk."""
    corpus.mkdir()
    per_file = max(1, len(chunks) // 100)
    for f in range(0, len(chunks), per_file):
        lines = [json.dumps({"text": t, "id": i}) for i, t in chunks[f : f + per_file]]
        (corpus / f"part{f // per_file:03d}.jsonl").write_text("\n".join(lines) + "\n")


def _index_rate(model: str, device: str, corpus: Path, store: Any, progress: bool) -> float:
    """``ragkit index`` (load, split, embed, write dense + BM25, manifest) chunks/s into ``store``."""
    from ragkit.indexing.indexer import Indexer
    from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
    from ragkit.resources import shipped_dir

    overrides = {
        "embedder": {"init_parameters": {"model": model, "device": device}},
        "writer": {"init_parameters": {"embedding_model": model}},
    }
    pipe = load_pipeline(shipped_dir("indexers") / "default.yaml", overrides=overrides)
    bind_store(pipe, store)
    pipe.warm_up()  # model load (and the one-off ONNX export) is not indexing, as for raw
    indexer = Indexer(store, pipe, progress=progress)
    seconds, report = timed(lambda: indexer.index([corpus]))
    rate = report.chunks_written / seconds
    close_pipeline(pipe)
    return rate


def _hybrid_latency(store: Any, n_queries: int) -> tuple[float, float]:
    """p50 and p95 seconds of the shipped hybrid pipeline (query embedding included) on ``store``."""
    from ragkit.pipeline import bind_store, close_pipeline, load_pipeline, run_inputs
    from ragkit.resources import shipped_dir

    qpipe = load_pipeline(shipped_dir("pipelines") / "retrieve.yaml")
    bind_store(qpipe, store)  # its query embedder takes the store's model
    qpipe.warm_up()
    lat = [
        timed(lambda q=q: qpipe.run(run_inputs(qpipe, q, 10)))[0] for q in bench_queries(n_queries)
    ]
    close_pipeline(qpipe)
    p50, p95 = np.percentile(lat, [50, 95])
    return float(p50), float(p95)


def _usable(model: str, progress: bool) -> bool:
    """Whether ``model``'s backend is installed (the int8 rows need the ``onnx`` extra)."""
    from ragkit.errors import RagkitError
    from ragkit.models.registry import resolve_model

    try:
        if resolve_model(model, kind="embedding").backend == "onnx-int8":
            import importlib.util

            if importlib.util.find_spec("onnxruntime") is None:
                raise RagkitError("onnxruntime is not installed (pip install 'ragkit[onnx]')")
    except RagkitError as exc:
        _log(progress, f"skipping the {model} rows: {exc}")
        return False
    return True


def _index_and_hybrid(
    n_chunks: int,
    n_queries: int,
    progress: bool,
    embedders: Sequence[str] = EMBEDDERS,
    runs: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Raw encoder and ``ragkit index`` rates per embedder on the same texts, then hybrid latency.

    The first embedder is the baseline of the others. Raw encoders run back to back, then the
    indexing runs in the same order, so each pair of backends meets the same load as closely as
    a shared machine allows; ``runs`` receives each timed run with the load average around it.
    """
    from ragkit.models.device import resolve_device
    from ragkit.stores.store import release_store

    runs = runs if runs is not None else []
    chunks = build_bench_corpus(n_chunks)
    texts = [t for _, t in chunks]
    models = [m for m in dict.fromkeys(embedders) if _usable(m, progress)]
    # Both sides on the same device: the pipeline's embedder would otherwise pick "auto".
    device, _ = resolve_device("auto")
    with tempfile.TemporaryDirectory(prefix="ragkit-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        _write_corpus(chunks, corpus)
        raw, labels = _measure_raw(models, texts, device, runs, progress)
        stores: dict[str, Any] = {}
        try:
            index = _measure_index(models, len(texts), device, Path(tmp), stores, runs, progress)
            rows = _index_rows(models, index, raw, labels)
            rows += _hybrid_rows(models, stores, n_queries, progress)
        finally:
            for store in stores.values():
                release_store(store)
    return rows


def _timed_run(
    runs: list[dict[str, Any]],
    what: str,
    model: str,
    fn: Callable[[], float | None],
    n_texts: int,
    progress: bool,
    **extra: Any,
) -> float:
    """Time one embedding run and record it in ``runs`` with the load average around it.

    Returns the run's chunks/s: what ``fn`` returns, or ``n_texts`` over its wall time.
    """
    before = _load()
    seconds, rate = timed(fn)
    rate = rate if rate is not None else n_texts / seconds
    runs.append(
        {"run": what, "model": model, "chunks_per_s": rate, "seconds": seconds,
         "load_before": before, "load_after": _load(), **extra}
    )  # fmt: skip
    _log(progress, f"  {what} {model}: {rate:,.1f} chunks/s (load {before} -> {_load()})")
    return rate


def _measure_raw(
    models: Sequence[str], texts: list[str], device: str, runs: list[dict[str, Any]],
    progress: bool,
) -> tuple[dict[str, float], dict[str, str]]:  # fmt: skip
    """Each raw encoder's chunks/s on the texts (after a warm batch), and its table label."""
    raw: dict[str, float] = {}
    labels: dict[str, str] = {}
    for model in models:
        _log(progress, f"raw encoder {model}: {len(texts):,} chunks ...")
        encode, labels[model] = _raw_encoder(model, device)
        encode(texts[:64])  # warm

        def encode_all(enc: Callable[[list[str]], Any] = encode) -> None:
            enc(texts)

        raw[model] = _timed_run(runs, "raw", model, encode_all, len(texts), progress)
        del encode
    return raw, labels


def _measure_index(
    models: Sequence[str],
    n_texts: int,
    device: str,
    tmp: Path,
    stores: dict[str, Any],
    runs: list[dict[str, Any]],
    progress: bool,
) -> dict[str, float]:
    """``ragkit index`` chunks/s per model, each into its own embedded store (kept in
    ``stores`` for the hybrid rows; the caller releases them)."""
    from ragkit.config import EmbeddedStore
    from ragkit.models.registry import model_files, resolve_model
    from ragkit.stores.store import open_store

    index: dict[str, float] = {}
    for model in models:
        _log(progress, f"ragkit index {model}: {n_texts:,} chunks into an embedded store ...")
        store = open_store(
            EmbeddedStore(path=str(tmp / f"store-{model}")),
            embedding_model=model,
            model_files=model_files,
        )
        stores[model] = store
        # the int8 backend runs on the CPU whatever the device (see DocumentEmbedder)
        where = "cpu" if resolve_model(model).backend == "onnx-int8" else device
        index[model] = _timed_run(
            runs, "index", model,
            lambda m=model, s=store, w=where: _index_rate(m, w, tmp / "corpus", s, progress),
            n_texts, progress, engine=store.engine,
        )  # fmt: skip
    return index


def _index_rows(
    models: Sequence[str],
    index: dict[str, float],
    raw: dict[str, float],
    labels: dict[str, str],
) -> list[dict[str, Any]]:
    """Indexing against the raw encoder per model, then each model against the first."""
    base = models[0] if models else None
    rows = [
        make_row(
            "ragkit index (chunks/s)" if model == base else f"ragkit index {model} (chunks/s)",
            index[model],
            raw[model],
            labels[model],
            "chunks/s",
        )
        for model in models
    ]
    for model in models[1:]:
        assert base is not None
        rows.append(
            make_row(
                f"ragkit index {model} vs {base} (chunks/s)",
                index[model],
                index[base],
                f"ragkit index {base}",
                "chunks/s",
            )
        )
        rows.append(
            make_row(
                f"raw encoder {model} vs {base} (chunks/s)",
                raw[model],
                raw[base],
                labels[base],
                "chunks/s",
            )
        )
    return rows


def _hybrid_rows(
    models: Sequence[str], stores: dict[str, Any], n_queries: int, progress: bool
) -> list[dict[str, Any]]:
    """Hybrid query p50/p95 on the first model's store; p50 on the others against it."""
    base = models[0] if models else None
    rows: list[dict[str, Any]] = []
    p50_base: float | None = None
    for model in models:
        store = stores[model]
        _log(progress, f"hybrid query latency over {store.count():,} chunks ({model}) ...")
        p50, p95 = _hybrid_latency(store, n_queries)
        at = f"@{store.count():,}"
        if model == base:
            p50_base = p50
            rows.append(make_row(f"hybrid query p50 {at} (s)", p50, None, "", "s"))
            rows.append(make_row(f"hybrid query p95 {at} (s)", p95, None, "", "s"))
        else:
            rows.append(make_row(f"hybrid query p50 {at}, {model} (s)", p50, p50_base, base, "s"))
    return rows


def run_retrieval_bench(
    chunks: int = 100_000,
    queries: int = 200,
    hybrid_chunks: int = 10_000,
    hybrid_queries: int = 100,
    progress: bool = True,
    store_sizes: Sequence[int] = (10_000,),
    embedders: Sequence[str] = EMBEDDERS,
) -> dict[str, Any]:
    """Run every retrieval measurement; returns the BM25 result dict with extra rows appended.

    ``store_sizes`` adds the store-engine rows (local mode vs Qdrant Edge, see
    :mod:`ragkit.bench.store_bench`) at each size; empty skips them. ``embedders`` are the
    embedding models of the indexing rows, the first one the baseline; ``embedding_runs`` in the
    result lists every timed run with the load average before and after it.
    """
    result = run_bm25_bench(chunks, queries, progress=progress)
    runs: list[dict[str, Any]] = []
    result["rows"].extend(
        _index_and_hybrid(hybrid_chunks, hybrid_queries, progress, embedders, runs)
    )
    result["embedding_runs"] = runs
    if store_sizes:
        from ragkit.bench.store_bench import run_store_bench

        stores = run_store_bench(store_sizes, hybrid_queries, progress=progress)
        result["rows"].extend(stores["rows"])
        result["store_runs"] = stores["runs"]
    return result


def format_report(result: dict[str, Any]) -> str:
    """The table printed by ``ragkit bench retrieval``."""
    lines = [format_table(result)]
    runs = result.get("embedding_runs") or []
    if runs:
        lines.append(
            "embedding runs (load average before -> after): "
            + ", ".join(
                f"{r['run']} {r['model']}{' on ' + r['engine'] if r.get('engine') else ''} "
                f"{r['chunks_per_s']:,.1f}/s "
                f"({r['load_before']} -> {r['load_after']})"
                for r in runs
            )
        )
    return "\n".join(lines)
