"""Store-only rows of ``ragkit bench retrieval``: Qdrant local mode (exact) vs Qdrant Edge (HNSW).

Per corpus size: index throughput (``RagkitStore.write`` + ``commit``: vectors, payloads and
ragkit's BM25, plus Edge's in-process HNSW build), dense and hybrid query p50/p95, and recall@10 of
each engine's dense top 10 against exact cosine top 10 computed with numpy. Hybrid is the shipped
``pipelines/retrieve.yaml`` components (dense 20 + BM25 20, weighted RRF to 5) run on the open
store with a precomputed query vector: the MiniLM query embedding is the same for both engines and
is measured by the ``hybrid query`` rows of the indexing run.

The default engine (:data:`ragkit.stores.layout.DEFAULT_ENGINE`, Qdrant Edge) is built as a new
store without ``engine:``, so its rows are the path a user gets; ``close_s`` is the writer's close
(Edge: settling and sealing the shard, :mod:`ragkit.stores.edge`).

Vectors are synthetic but shaped like sentence embeddings (384-d unit vectors around topic
centres, cosine ~0.6 within a topic); chunk texts are the BM25 bench corpus (real English).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.bench.table import make_row, render_rows
from ragkit.bench.timing import Stopwatch, timed

DIM = 384
_BATCH = 1024
_PER_TOPIC = 1000  # chunks per topic centre
_WARMUP = 20  # untimed queries per engine before the timed ones
_NOISE = 0.8  # per-dimension noise around a centre: cosine ~1 / (1 + 0.8^2) within a topic


def _log(progress: bool, msg: str) -> None:
    """A progress line on stderr (stdout stays for the table or the JSON)."""
    if progress:
        print(msg, file=sys.stderr, flush=True)


def synthetic_vectors(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` chunk vectors and ``n_queries`` query vectors, float32, unit length, deterministic."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // _PER_TOPIC), DIM), dtype=np.float32)

    def draw(k: int) -> np.ndarray:
        out = np.empty((k, DIM), dtype=np.float32)
        for i in range(0, k, 65536):  # bounded temporaries at 1M
            m = min(65536, k - i)
            v = centres[rng.integers(0, len(centres), m)]
            v = v + _NOISE * rng.standard_normal((m, DIM), dtype=np.float32)
            out[i : i + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    """Exact cosine top 10 per query (unit vectors: dot product), best first."""
    out: list[list[int]] = []
    for q in queries:
        scores = vectors @ q
        top = np.argpartition(-scores, 10)[:10]
        out.append(top[np.argsort(-scores[top])].tolist())
    return out


def _docs(lo: int, hi: int, vectors: np.ndarray, texts: Sequence[str]) -> list[Any]:
    """Chunks ``lo``..``hi`` as Haystack documents shaped like ``ragkit index`` writes them."""
    from haystack import Document

    return [
        Document(
            id=f"c{i}",
            content=texts[i],
            embedding=vectors[i].tolist(),
            meta={"source": f"part{i // 1000:04d}.jsonl", "chunk_index": i % 1000},
        )
        for i in range(lo, hi)
    ]


def _measure_engine(
    engine: str,
    vectors: np.ndarray,
    texts: Sequence[str],
    qvecs: np.ndarray,
    qtexts: Sequence[str],
    exact: list[list[int]],
    tmp: Path,
    progress: bool,
) -> dict[str, Any]:
    """Build a store with ``engine`` and time its index, dense and hybrid paths."""
    from ragkit.config import EmbeddedStore
    from ragkit.stores.layout import DEFAULT_ENGINE
    from ragkit.stores.store import open_store, release_store

    n = len(vectors)
    # the default engine is opened as a new store without `engine:`, the path users get
    default = engine == DEFAULT_ENGINE
    config = EmbeddedStore(path=str(tmp / f"{engine}-{n}"), engine=None if default else engine)
    store = open_store(config)
    assert store.engine == engine
    closed = False
    try:
        write_s, index_s = _build(store, engine, vectors, texts, progress)
        dense_lat, hybrid_lat, found, hybrid_ids = _measure_queries(store, qvecs, qtexts)
        recall = _recall(found, exact)
        sweep = _ef_sweep(store, qvecs, exact) if engine == "edge" else []
        # edge: the writer's close settles and seals the shard
        close_s, _ = timed(lambda: release_store(store))
        closed = True
        return {
            "engine": engine,
            "default_engine": default,
            "chunks": n,
            "queries": len(qvecs),
            "index_s": index_s,
            "commit_s": index_s - write_s,
            "close_s": close_s,
            "index_rate": n / index_s,
            "dense_p50": float(np.percentile(dense_lat, 50)),
            "dense_p95": float(np.percentile(dense_lat, 95)),
            "hybrid_p50": float(np.percentile(hybrid_lat, 50)),
            "hybrid_p95": float(np.percentile(hybrid_lat, 95)),
            "recall_at_10": recall,
            "hnsw_ef_sweep": sweep,
            "dense_ids": found,
            "hybrid_ids": hybrid_ids,
        }
    finally:
        if not closed:
            release_store(store)


def _build(
    store: Any, engine: str, vectors: np.ndarray, texts: Sequence[str], progress: bool
) -> tuple[float, float]:
    """Write every chunk in batches, then commit; returns seconds to the last write and overall.

    The commit is part of indexing: Edge builds its HNSW graph there, both engines save BM25.
    """
    n = len(vectors)
    with Stopwatch() as clock:
        for lo in range(0, n, _BATCH):
            store.write(_docs(lo, min(n, lo + _BATCH), vectors, texts))
            if progress and (lo // _BATCH) % 100 == 0:
                _log(progress, f"  {engine}: {lo:,}/{n:,} written")
        write_s = clock.elapsed()
        store.commit()  # edge: flush + optimize (HNSW); both: BM25 saved
    index_s = clock.seconds
    _log(
        progress,
        f"  {engine}: indexed {n:,} in {index_s:.1f} s (commit {index_s - write_s:.1f} s)",
    )
    return write_s, index_s


def _measure_queries(
    store: Any, qvecs: np.ndarray, qtexts: Sequence[str]
) -> tuple[list[float], list[float], list[list[int]], list[list[str]]]:
    """Dense and hybrid latency per query after a warm-up on other queries.

    Returns dense and hybrid seconds per query, the dense top-10 rows and the hybrid ids.
    """
    from ragkit.bench.corpus import bench_queries
    from ragkit.pipeline import load_pipeline
    from ragkit.resources import shipped_dir

    pipe = load_pipeline(shipped_dir("pipelines") / "retrieve.yaml", store=store)
    dense_c, bm25_c, joiner = (pipe.get_component(c) for c in ("dense", "bm25", "joiner"))

    def hybrid(qv: list[float], text: str) -> list[Any]:
        dense = dense_c.run(query_embedding=qv)["documents"]
        return joiner.run(documents=[dense, bm25_c.run(query=text)["documents"]])["documents"]

    # warm-up on other queries, as any long-running process would be: page cache, mmaps
    wvecs, wtexts = synthetic_vectors(_WARMUP, _WARMUP, seed=1)[1], bench_queries(_WARMUP, 1)
    for q, text in zip(wvecs, wtexts, strict=True):
        hybrid(q.tolist(), text)
    dense_lat, hybrid_lat, found, hybrid_ids = [], [], [], []
    for q, text in zip(qvecs, qtexts, strict=True):
        qv = q.tolist()
        seconds, hits = timed(lambda qv=qv: store.dense_search(qv, top_k=10))
        dense_lat.append(seconds)
        found.append([int(d.id[1:]) for d in hits])
        seconds, fused = timed(lambda qv=qv, text=text: hybrid(qv, text))
        hybrid_lat.append(seconds)
        hybrid_ids.append([d.id for d in fused])
    return dense_lat, hybrid_lat, found, hybrid_ids


def _recall(found: list[list[int]], exact: list[list[int]]) -> float:
    """Mean share of each exact top 10 that the engine found."""
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=False)]))


def _ef_sweep(store: Any, qvecs: np.ndarray, exact: list[list[int]]) -> list[dict[str, float]]:
    """Dense recall and latency of the same Edge shard at other HNSW beam widths (no rebuild)."""
    out = []
    default = store.qdrant.hnsw_ef
    try:
        for ef in (64, 128, 256, 512, 1024):
            store.qdrant.hnsw_ef = ef
            lat, found = [], []
            for q in qvecs:
                seconds, hits = timed(lambda q=q: store.dense_search(q.tolist(), top_k=10))
                lat.append(seconds)
                found.append([int(d.id[1:]) for d in hits])
            out.append(
                {
                    "hnsw_ef": ef,
                    "recall_at_10": _recall(found, exact),
                    "dense_p50": float(np.percentile(lat, 50)),
                    "dense_p95": float(np.percentile(lat, 95)),
                }
            )
    finally:
        store.qdrant.hnsw_ef = default
    return out


def run_store_bench(
    sizes: Sequence[int] = (10_000,),
    queries: int = 100,
    engines: Sequence[str] = ("local", "edge"),
    local_max: int = 100_000,
    local_queries: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure each engine at each size; local mode above ``local_max`` is skipped (too slow).

    Args:
        sizes: corpus sizes in chunks.
        queries: queries per engine (dense and hybrid each).
        engines: which of ``local`` and ``edge`` to run.
        local_max: the largest size local mode is built at; above it only Edge runs.
        local_queries: queries for local mode above 100k chunks (each is a full scan).
        progress: progress lines on stderr.

    Returns:
        ``{"rows": [...], "runs": [...]}``: table rows (Edge vs local as baseline) and raw runs.
    """
    from ragkit.errors import InvalidInputError

    unknown = sorted(set(engines) - {"local", "edge"})
    if unknown or not engines:
        raise InvalidInputError(f"--engines: {unknown or engines!r}; use local, edge or both")
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for n in sizes:
        by_engine = _measure_size(n, queries, engines, local_max, local_queries, progress)
        edge, local = by_engine.get("edge"), by_engine.get("local")
        if edge and local:
            _compare(edge, local)
        for run in by_engine.values():
            run.pop("dense_ids")
            run.pop("hybrid_ids")
            runs.append(run)
        rows.extend(_rows(n, edge, local))
    return {"rows": rows, "runs": runs}


def _measure_size(
    n: int,
    queries: int,
    engines: Sequence[str],
    local_max: int,
    local_queries: int,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Every engine on the same ``n`` chunks and queries, with exact top 10s to check against."""
    from ragkit.bench.corpus import bench_queries, build_bench_corpus

    _log(progress, f"store bench @{n:,}: building corpus and {DIM}-d vectors ...")
    vectors, qvecs = synthetic_vectors(n, queries)
    texts = [t for _, t in build_bench_corpus(n)]
    qtexts = bench_queries(queries)
    exact = exact_top10(vectors, qvecs)
    by_engine: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ragkit-store-bench-") as tmp:
        for engine in engines:
            if engine == "local" and n > local_max:
                _log(progress, f"  local: skipped at {n:,} (> --local-max {local_max:,})")
                continue
            k = local_queries if engine == "local" and n > 100_000 else queries
            by_engine[engine] = _measure_engine(
                engine, vectors, texts, qvecs[:k], qtexts[:k], exact[:k], Path(tmp), progress
            )
    return by_engine


def _compare(edge: dict[str, Any], local: dict[str, Any]) -> None:
    """Record in ``edge`` how often its top results equal local mode's on the shared queries."""
    k = min(edge["queries"], local["queries"])
    edge["same_dense_top10_as_local"] = float(
        np.mean([edge["dense_ids"][i] == local["dense_ids"][i] for i in range(k)])
    )
    edge["same_hybrid_top5_as_local"] = float(
        np.mean([edge["hybrid_ids"][i] == local["hybrid_ids"][i] for i in range(k)])
    )


def _rows(n: int, edge: dict[str, Any] | None, local: dict[str, Any] | None) -> list[dict]:
    """Edge in the ragkit column, local mode (exact) as the baseline; one engine alone otherwise."""
    at = f"@{n:,}"
    main, base = (edge, local) if edge else (local, None)
    if main is None:
        return []
    label = "edge" if edge else "local"
    base_name = f"local mode, {local['queries']} q" if local else ""
    out = [
        make_row(
            f"store index {label} {at} (chunks/s)",
            main["index_rate"],
            base["index_rate"] if base else None,
            "local mode",
            "chunks/s",
        )
    ]
    for kind in ("dense", "hybrid"):
        for p in ("p50", "p95"):
            key = f"{kind}_{p}"
            out.append(
                make_row(
                    f"store {kind} query {p} {label} {at} (s)",
                    main[key],
                    base[key] if base else None,
                    base_name,
                    "s",
                )
            )
    out.append(
        make_row(f"recall@10 vs exact, {label} {at}", main["recall_at_10"], None, "", "recall")
    )
    if edge and local:
        out.append(
            make_row(
                f"hybrid top-5 same as local mode {at}",
                edge["same_hybrid_top5_as_local"],
                None,
                "",
                "recall",
            )
        )
    return out


def format_store_table(result: dict[str, Any]) -> str:
    """The store rows as an aligned table."""
    return "\n".join(render_rows(result["rows"], ratio_digits=1))


def parse_sizes(text: str) -> list[int]:
    """``"10000,100000"`` (``_`` and ``k``/``m`` suffixes allowed) as sizes; one-line error else."""
    from ragkit.errors import InvalidInputError

    out = []
    for part in (p.strip().lower().replace("_", "") for p in text.split(",")):
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        try:
            n = int(float(part[:-1] if scale > 1 else part) * scale)
        except ValueError:
            n = 0
        if n < 100:
            raise InvalidInputError(f"--sizes: {part!r} is not a size of at least 100 chunks")
        out.append(n)
    return out
