"""BM25 benchmark: ragkit's BM25Index against rank-bm25 (the oracle) and bm25s, in one run.

Every engine gets the same pre-tokenized corpus and queries (tokenized once with
`ragkit.stores.tokenize`), so the numbers compare indexing and scoring, not tokenizers. Absolute
times only mean something on the machine that produced them; the ratios are the point.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.bench.corpus import bench_queries, build_bench_corpus
from ragkit.bench.table import make_row, render_rows
from ragkit.stores.bm25 import BM25Index
from ragkit.stores.tokenize import tokenize_many

__all__ = ["format_table", "run_bm25_bench", "top_k_agrees"]

_UPDATE_DOCS = 1_000


def top_k_agrees(
    result: Sequence[tuple[str, float]],
    oracle_scores: np.ndarray,
    shares_term: np.ndarray,
    row_of: Mapping[str, int],
    k: int = 10,
    rtol: float = 1e-9,
) -> bool:
    """Check a ragkit top-k against rank-bm25 scores, treating tied documents as interchangeable.

    The result agrees when its score sequence equals the oracle's top-k sequence (over documents
    sharing a query term, the only ones ragkit returns) and every returned document has, in the
    oracle, the score ragkit reported. Then the result is *a* valid top-k, whichever of several
    tied documents it picked at the cut.

    Args:
        result: ragkit (id, score) pairs, best first.
        oracle_scores: rank-bm25 `get_scores` for the same query, one per oracle row.
        shares_term: Per oracle row, whether the document contains a query term.
        row_of: Maps a document id to its oracle row.
        k: The cut-off that was requested.
        rtol: Relative tolerance for "same score".

    Returns:
        True when the result is a correct top-k up to ties.
    """
    cand = np.flatnonzero(shares_term)
    expected = np.sort(oracle_scores[cand])[::-1][:k]
    got = np.array([s for _, s in result], dtype=np.float64)
    if len(got) != len(expected) or not np.allclose(got, expected, rtol=rtol, atol=1e-12):
        return False
    for doc_id, score in result:
        row = row_of.get(doc_id)
        if row is None or not shares_term[row]:
            return False
        if not np.isclose(oracle_scores[row], score, rtol=rtol, atol=1e-12):
            return False
    return True


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_bm25_bench(
    n_chunks: int = 100_000, n_queries: int = 200, progress: bool = True
) -> dict[str, Any]:
    """Measure ragkit BM25 against rank-bm25 and bm25s on the same corpus, in the same process.

    Measures build time and single-query throughput of each engine, top-10 agreement with
    rank-bm25 (tie-aware), and ragkit's update paths: adding 1k chunks incrementally versus a full
    rebuild, deleting 1k chunks, the first query after an update (lazy cache refresh), and
    save/load (including an incremental save after the add).

    Args:
        n_chunks: Corpus size in chunks (~60 words each).
        n_queries: Queries timed for ragkit and bm25s; rank-bm25 (~1 q/s at 100k) gets 5.
        progress: Print a line per phase to stderr.

    Returns:
        A dict with the setup (`n_chunks`, `n_queries`, `bm25s_input`, ...) and `rows`: a list
        of {metric, ragkit, baseline, baseline_name, unit, ratio}. `ratio` is a speedup of
        ragkit over the baseline (> 1 is better), whatever the unit.
    """

    def say(msg: str) -> None:
        if progress:
            print(f"[bm25 bench] {msg}", file=sys.stderr, flush=True)

    rows: list[dict] = []
    say(f"building corpus of {n_chunks + _UPDATE_DOCS} chunks")
    corpus = build_bench_corpus(n_chunks + _UPDATE_DOCS)
    ids = [doc_id for doc_id, _ in corpus]
    t_tok, tokens = _time(lambda: tokenize_many([text for _, text in corpus]))
    base_ids, base_tokens = ids[:n_chunks], tokens[:n_chunks]
    extra_ids, extra_tokens = ids[n_chunks:], tokens[n_chunks:]
    queries = bench_queries(n_queries)
    q_tokens = tokenize_many(queries)
    n_oracle = min(5, n_queries)

    say("ragkit: build")
    index = BM25Index()
    t_build, _ = _time(lambda: index.add_tokens(base_ids, base_tokens))
    index.search_tokens(q_tokens[0])  # warm the lazy idf / tf-part caches, like a server would
    say("ragkit: queries")
    t_q, ragkit_results = _time(lambda: [index.search_tokens(q, 10) for q in q_tokens])
    ragkit_qps = len(q_tokens) / t_q

    say("bm25s: build + queries")
    import bm25s

    bm = bm25s.BM25()
    t_bm_build, _ = _time(lambda: bm.index(base_tokens, show_progress=False))
    bm.retrieve([q_tokens[0]], k=10, show_progress=False)
    t_bm_q, _ = _time(lambda: [bm.retrieve([q], k=10, show_progress=False) for q in q_tokens if q])
    bm_qps = sum(1 for q in q_tokens if q) / t_bm_q

    say("rank-bm25: build + queries (slow)")
    from rank_bm25 import BM25Okapi

    t_rb_build, oracle = _time(lambda: BM25Okapi(base_tokens))
    oracle_q = q_tokens[:n_oracle]

    def oracle_search(q: list[str], oracle: BM25Okapi = oracle) -> np.ndarray:
        scores = oracle.get_scores(q)
        np.argsort(scores)[::-1][:10]  # the top-10 step is part of the timed query
        return scores

    t_rb_q, oracle_scores = _time(lambda: [oracle_search(q) for q in oracle_q])
    rb_qps = len(oracle_q) / t_rb_q
    row_of = {doc_id: i for i, doc_id in enumerate(base_ids)}
    agree = 0
    for q, scores, res in zip(oracle_q, oracle_scores, ragkit_results, strict=False):
        qset = set(q)
        shares = np.fromiter(
            (not qset.isdisjoint(d) for d in oracle.doc_freqs), dtype=bool, count=len(base_ids)
        )
        agree += top_k_agrees(res, scores, shares, row_of)
    del oracle

    rows.append(make_row("build (s)", t_build, t_bm_build, "bm25s", "s"))
    rows.append(make_row("build (s)", t_build, t_rb_build, "rank-bm25", "s"))
    rows.append(make_row("single-query throughput (q/s)", ragkit_qps, bm_qps, "bm25s", "q/s"))
    rows.append(make_row("single-query throughput (q/s)", ragkit_qps, rb_qps, "rank-bm25", "q/s"))
    rows.append(
        make_row("top-10 agreement with rank-bm25", agree / max(1, n_oracle), None, "", "frac")
    )

    say("ragkit: updates")
    tmp = Path(tempfile.mkdtemp(prefix="ragkit-bm25-bench-"))
    try:
        t_save, _ = _time(lambda: index.save(tmp / "idx"))
        t_add, _ = _time(lambda: index.add_tokens(extra_ids, extra_tokens))
        t_first, _ = _time(lambda: index.search_tokens(q_tokens[0], 10))
        t_save_inc, _ = _time(lambda: index.save(tmp / "idx"))
        expected = [index.search_tokens(q, 10) for q in q_tokens[:20]]
        t_load, loaded = _time(lambda: BM25Index.load(tmp / "idx"))
        reload_ok = expected == [loaded.search_tokens(q, 10) for q in q_tokens[:20]]
        del loaded
        t_rebuild, _ = _time(lambda: BM25Index().add_tokens(ids, tokens))
        t_delete, _ = _time(lambda: index.delete(base_ids[:_UPDATE_DOCS]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows.append(make_row(f"add {_UPDATE_DOCS} chunks (s)", t_add, t_rebuild, "full rebuild", "s"))
    rows.append(
        make_row(f"delete {_UPDATE_DOCS} chunks (s)", t_delete, t_rebuild, "full rebuild", "s")
    )
    rows.append(make_row("first query after update (s)", t_first, None, "", "s"))
    rows.append(make_row("save (s)", t_save, None, "", "s"))
    rows.append(
        make_row(f"save after {_UPDATE_DOCS}-chunk add (s)", t_save_inc, t_save, "full save", "s")
    )
    rows.append(make_row("load (s)", t_load, None, "", "s"))
    say("done")
    return {
        "n_chunks": n_chunks,
        "n_queries": len(q_tokens),
        "n_oracle_queries": n_oracle,
        "tokenize_s": t_tok,
        "bm25s_input": "pre-tokenized (same tokens as ragkit), method=lucene, numpy backend",
        "ragkit_input": "pre-tokenized via search_tokens (search(str) adds ~5 us of tokenizing)",
        "reload_consistent": reload_ok,
        "stats": index.stats(),
        "rows": rows,
    }


def format_table(result: Mapping[str, Any]) -> str:
    """Render `run_bm25_bench` output as an aligned text table.

    Args:
        result: The dict returned by `run_bm25_bench`.

    Returns:
        The table; `ratio` is ragkit's speedup over the baseline (> 1 is better).
    """
    out = render_rows(result["rows"])
    note = (
        f"{result['n_chunks']:,} chunks, {result['n_queries']} queries "
        f"({result['n_oracle_queries']} for rank-bm25); bm25s: {result['bm25s_input']}"
    )
    return "\n".join([note, *out])
