"""``ragkit bench retrieval``: BM25 engines, incremental updates, hybrid latency, indexing speed.

Everything is measured in one run on this machine, each figure next to its baseline:
- BM25 (see :mod:`ragkit.bench.bm25_bench`): ragkit vs rank-bm25 vs bm25s at ``chunks``.
- ``ragkit index`` chunks/s (load, split, embed, write dense + BM25, manifest) vs the raw
  sentence-transformers ``encode`` throughput on the same texts and the same device (goal >= 0.8x).
- Hybrid query (MiniLM query embedding + Qdrant dense + BM25 + RRF) p50/p95 over the store the
  indexing run built (``hybrid_chunks`` chunks, embedded Qdrant).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.bench.bm25_bench import format_table, run_bm25_bench
from ragkit.bench.corpus import bench_queries, build_bench_corpus
from ragkit.bench.table import make_row


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _index_and_hybrid(n_chunks: int, n_queries: int, progress: bool) -> list[dict[str, Any]]:
    from ragkit.config import EmbeddedStore
    from ragkit.indexing.indexer import Indexer
    from ragkit.models.hf import load_sentence_transformer
    from ragkit.pipeline import bind_store, close_pipeline, load_pipeline, run_inputs
    from ragkit.resources import shipped_dir
    from ragkit.stores.store import open_store, release_store

    chunks = build_bench_corpus(n_chunks)
    texts = [t for _, t in chunks]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ragkit-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        # 100 jsonl files of one chunk-sized record per line: each record becomes one chunk
        per_file = max(1, len(chunks) // 100)
        for f in range(0, len(chunks), per_file):
            lines = [json.dumps({"text": t, "id": i}) for i, t in chunks[f : f + per_file]]
            (corpus / f"part{f // per_file:03d}.jsonl").write_text("\n".join(lines) + "\n")

        from ragkit.models.device import resolve_device

        # Both sides on the same device: the pipeline's embedder would otherwise pick "auto".
        device, _ = resolve_device("auto")
        _log(progress, f"raw embedder: encoding {len(texts):,} chunks on {device} ...")
        model = load_sentence_transformer("minilm", device=device)
        model.encode(texts[:64], batch_size=64)  # warm
        t0 = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True)
        raw_rate = len(texts) / (time.perf_counter() - t0)
        del model

        _log(progress, f"ragkit index: {len(texts):,} chunks into an embedded store ...")
        store = open_store(EmbeddedStore(path=str(Path(tmp) / "store")))
        try:
            pipe = load_pipeline(shipped_dir("indexers") / "default.yaml")
            bind_store(pipe, store)
            pipe.get_component("embedder").device = device
            pipe.warm_up()  # model load is a one-off, like the raw embedder's
            indexer = Indexer(store, pipe, progress=progress)
            t0 = time.perf_counter()
            report = indexer.index([corpus])
            index_rate = report.chunks_written / (time.perf_counter() - t0)
            close_pipeline(pipe)
            rows.append(
                make_row(
                    "ragkit index (chunks/s)",
                    index_rate,
                    raw_rate,
                    f"raw ST encode, {device}",
                    "chunks/s",
                )
            )

            _log(progress, f"hybrid query latency over {store.count():,} chunks ...")
            qpipe = load_pipeline(shipped_dir("pipelines") / "retrieve.yaml")
            bind_store(qpipe, store)
            qpipe.warm_up()
            lat = []
            for q in bench_queries(n_queries):
                t0 = time.perf_counter()
                qpipe.run(run_inputs(qpipe, q, 10))
                lat.append(time.perf_counter() - t0)
            close_pipeline(qpipe)
            p50, p95 = np.percentile(lat, [50, 95])
            rows.append(
                make_row(f"hybrid query p50 @{store.count():,} (s)", float(p50), None, "", "s")
            )
            rows.append(
                make_row(f"hybrid query p95 @{store.count():,} (s)", float(p95), None, "", "s")
            )
        finally:
            release_store(store)
    return rows


def run_retrieval_bench(
    chunks: int = 100_000,
    queries: int = 200,
    hybrid_chunks: int = 10_000,
    hybrid_queries: int = 100,
    progress: bool = True,
    store_sizes: Sequence[int] = (10_000,),
) -> dict[str, Any]:
    """Run every retrieval measurement; returns the BM25 result dict with extra rows appended.

    ``store_sizes`` adds the store-engine rows (local mode vs Qdrant Edge, see
    :mod:`ragkit.bench.store_bench`) at each size; empty skips them.
    """
    result = run_bm25_bench(chunks, queries, progress=progress)
    result["rows"].extend(_index_and_hybrid(hybrid_chunks, hybrid_queries, progress))
    if store_sizes:
        from ragkit.bench.store_bench import run_store_bench

        stores = run_store_bench(store_sizes, hybrid_queries, progress=progress)
        result["rows"].extend(stores["rows"])
        result["store_runs"] = stores["runs"]
    return result


def format_report(result: dict[str, Any]) -> str:
    """The table printed by ``ragkit bench retrieval``."""
    return format_table(result)
