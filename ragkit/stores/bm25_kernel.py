"""Optional compiled BM25 query kernel (numba), used by `BM25Index` when numba is installed.

numpy cannot accumulate a query's postings without O(n_docs) passes (``np.bincount`` allocates
and zeroes a dense array, and finding the candidates is another dense pass), and at 100k
documents those passes and the per-call overhead of a dozen numpy calls are most of a query. The
compiled loop accumulates into a reused buffer, remembers which documents it touched, keeps the
k best scores in a small sorted array and resets only the touched entries, so a query costs
O(postings of its terms); a batch of queries is one call, so batches pay no per-query dispatch.

Each document's score is ``0.0 + w_1 * tf_part_1 + w_2 * tf_part_2 + ...`` in query-term order,
the float64 operations of a dense ``np.bincount`` scatter. numba is optional
(``pip install 'ragkit[fast]'``); without it `load_kernel` returns None and the index uses numpy.
The kernel is compiled on first use and cached on disk by numba (``cache=True``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["available", "load_kernel"]


def available() -> bool:
    """Whether numba is installed (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


@functools.cache  # one compiled function per process: compiling (or loading numba's cache) is costly
def load_kernel() -> Callable[..., Any] | None:
    """The compiled batched top-k kernel, or None when numba is not installed.

    Returns:
        ``kernel(terms, indptr, rows, tfp, tmax, qids, weights, qptr, live, check_live, buf,
        touched, out, top_k)`` -> ``(cand_rows int64[:], cand_scores float64[:],
        cand_ptr int64[:], stale int64[:])``. Query ``q`` owns the global term ids
        ``qids[qptr[q]:qptr[q+1]]`` and their ``weights`` (every weight > 0); a term is looked
        up in the segment's sorted ``terms`` (postings ``rows[indptr[p]:indptr[p+1]]`` with tf
        parts ``tfp[...]``; a term the segment lacks matches nothing). Its result is
        ``cand_*[cand_ptr[q]:cand_ptr[q+1]]``: every live row scoring at least its k-th best
        score (ties at the cut all kept, so the caller's id tie-break is exact), unordered.
        When some query term's tf parts are not filled yet (``tmax`` NaN), nothing is scored
        and ``stale`` lists those term positions: fill them and call again.
        ``buf`` (float64 zeros, one per document) is left all zeros again; ``touched`` (int64)
        and ``out`` (float64) are scratch space of n_docs + 1 entries.
    """
    if not available():
        return None
    import numba
    import numpy as np

    @numba.njit(cache=True, nogil=True)
    def top_k_batch(  # noqa: ANN202
        terms,
        indptr,
        rows,
        tfp,
        tmax,
        qids,
        weights,
        qptr,
        live,
        check_live,
        buf,
        touched,
        out,
        top_k,
    ):  # noqa: ANN001, E501
        n_queries = len(qptr) - 1
        # Where each query term's postings are; terms whose tf parts are not filled yet
        # (NaN maximum) go back to the caller, which fills them and calls again.
        n_terms = len(qids)
        starts = np.zeros(n_terms, np.int64)
        ends = np.zeros(n_terms, np.int64)
        stale = np.empty(n_terms, np.int64)
        n_stale = 0
        for j in range(n_terms):
            p = np.searchsorted(terms, qids[j])
            if p < len(terms) and terms[p] == qids[j]:  # else: an empty span
                if np.isnan(tmax[p]):
                    stale[n_stale] = p
                    n_stale += 1
                starts[j] = indptr[p]
                ends[j] = indptr[p + 1]
        if n_stale:
            empty_rows = np.empty(0, np.int64)
            empty_scores = np.empty(0, np.float64)
            return empty_rows, empty_scores, np.zeros(n_queries + 1, np.int64), stale[:n_stale]
        cap = max(16, 2 * top_k * n_queries)
        res_rows = np.empty(cap, np.int64)
        res_scores = np.empty(cap, np.float64)
        res_ptr = np.zeros(n_queries + 1, np.int64)
        n_res = 0
        best = np.empty(top_k)
        for q in range(n_queries):
            n_touched = 0
            for j in range(qptr[q], qptr[q + 1]):
                w = weights[j]
                for p in range(starts[j], ends[j]):
                    r = rows[p]
                    v = buf[r]
                    touched[n_touched] = r
                    # every contribution is > 0, so 0.0 means "not touched yet" (no branch)
                    n_touched += v == 0.0
                    buf[r] = v + tfp[p] * w
            # One pass: read and reset each touched score, keep the k best in `best`
            # (ascending) and append every live row scoring >= the running k-th best. That
            # threshold only rises, so the appended rows hold every final candidate.
            best[:] = -1.0
            n_out = 0
            for i in range(n_touched):
                r = touched[i]
                s = buf[r]
                buf[r] = 0.0
                if check_live and not live[r]:
                    continue
                if s > best[0]:
                    pos = 0
                    while pos + 1 < top_k and best[pos + 1] < s:
                        best[pos] = best[pos + 1]
                        pos += 1
                    best[pos] = s
                if s >= best[0]:
                    touched[n_out] = r  # n_out <= i: that slot was already read
                    out[n_out] = s
                    n_out += 1
            kth = best[0]
            for i in range(n_out):
                if out[i] >= kth:
                    if n_res == cap:
                        cap *= 2
                        grown_rows = np.empty(cap, np.int64)
                        grown_rows[:n_res] = res_rows[:n_res]
                        res_rows = grown_rows
                        grown_scores = np.empty(cap, np.float64)
                        grown_scores[:n_res] = res_scores[:n_res]
                        res_scores = grown_scores
                    res_rows[n_res] = touched[i]
                    res_scores[n_res] = out[i]
                    n_res += 1
            res_ptr[q + 1] = n_res
        return res_rows[:n_res], res_scores[:n_res], res_ptr, stale[:0]

    return top_k_batch
