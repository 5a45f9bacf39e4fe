"""Incremental, persistent BM25 (Okapi) index in pure numpy.

Scores are those of rank-bm25 0.2.2's `BM25Okapi` (k1=1.5, b=0.75, epsilon=0.25, including its
idf floor: terms with a negative idf get `epsilon * average_idf`, the mean idf over every term of
the live vocabulary), so rank-bm25 serves as the correctness oracle, while queries run hundreds of
times faster because only the posting lists of the query terms are touched.

Layout (Lucene-like, so updates never rebuild the whole index):

* A global vocabulary maps terms to ids; it only grows until `compact()` prunes dead terms.
* Documents live in immutable *segments*: term-major postings (sorted term ids, `indptr`, doc
  rows, term frequencies) plus per-document lengths, ids and sources. `add` writes a new small
  segment; a merge policy folds small segments together when there are more than
  `max_segments`, and rewrites a segment whose tombstone ratio exceeds `max_deleted_ratio`.
* Deletes are tombstones (a live mask per segment). Global document frequencies, the live
  document count and the total length are kept up to date incrementally, so idf and avgdl are
  always those of the live corpus.
* At query time each segment scores with `idf * tf*(k1+1)/(tf + k1*(1-b+b*dl/avgdl))`, the
  same float operations as rank-bm25. The tf part is cached per posting, filled lazily term by
  term for the terms queries use and invalidated (O(terms)) when avgdl changes, and idf is
  recomputed lazily after changes, so an update never costs an O(postings) refresh.
  Rare terms are scattered densely with `np.bincount`; a lower bound on the k-th best score
  (exact scores of k documents of the rarest term) and the per-term maximum tf part then prune
  every document that cannot reach the top-k, so the long postings of common terms are only
  binary-searched for the few remaining candidates (MaxScore-style, exact, ties included).
* With numba installed (`pip install 'ragkit[fast]'`), segments of >= `KERNEL_MIN_DOCS`
  documents are scored by a compiled kernel instead (`ragkit.stores.bm25_kernel`): every
  posting of the query terms accumulated into a reused buffer, the top-k kept in one pass over
  the touched documents, a whole batch of queries in one call. Same scores, same ties.
* `save` writes each segment once (`.npz`, no pickle), tombstones as small `.npy` files, the
  vocabulary as append-only JSON parts, then a JSON manifest, each through a temp file and
  `os.replace`, so a crash leaves the previous index readable. The manifest records the sha256
  of every file it references (and of itself), and `load` verifies them all, so corruption the
  structural checks cannot see (two vocabulary terms swapped, a flipped tf) is still refused.

Deviation from rank-bm25, on purpose: `search` returns only documents that share at least one
term with the query. rank-bm25 scores every document; the others all score 0 and cannot be
relevant, and leaving them out keeps queries proportional to the postings touched. Ties are
broken by document id (ascending) so results are deterministic.

The index is not thread-safe for writes: guard them with a lock if several threads share one
(concurrent searches only fill caches with identical values, and each takes its own kernel
scratch buffers from a pool).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.atomic import file_sha256, write_bytes_atomic
from ragkit.errors import RagkitError
from ragkit.stores import bm25_kernel
from ragkit.stores.tokenize import tokenize, tokenize_many

__all__ = ["BM25Index", "BM25IndexError"]

FORMAT_NAME = "ragkit-bm25"
FORMAT_VERSION = 2  # 2: sha256 of every file in the manifest
MANIFEST = "manifest.json"
_VOCAB_PART_LIMIT = 16
# The first dense stage of a query scatters about 1/_COMMON_FRACTION of a segment in postings.
_COMMON_FRACTION = 4
#: With kernel="auto", segments of at least this many documents are scored by the numba kernel.
KERNEL_MIN_DOCS = 20_000
# Names are unique per content (random tags), so "file exists" means "already written".
_OWN_FILE_RE = re.compile(
    r"^(seg-[0-9a-f-]+(\.npz|\.del-[0-9a-f]+\.npy)|vocab-[0-9a-f-]+\.json)(\.tmp)?$"
)


class BM25IndexError(RagkitError, RuntimeError):
    """A saved BM25 index is missing, corrupt or of an unsupported format."""


# A query as the search loop sees it: term ids, weights (idf * count), all weights > 0.
_Query = tuple[np.ndarray, np.ndarray, bool]


@dataclass(eq=False)
class _Segment:
    """Immutable postings of a batch of documents, plus a mutable tombstone mask."""

    name: str
    ids: list[str]
    sources: list[str | None]
    doc_len: np.ndarray  # int32 [n_docs]
    terms: np.ndarray  # int32 [n_terms], sorted global term ids present in this segment
    indptr: np.ndarray  # int64 [n_terms + 1], postings of terms[i] are [indptr[i], indptr[i+1])
    rows: np.ndarray  # int32 [n_postings], doc rows, ascending within a term
    tfs: np.ndarray  # int32 [n_postings], term frequencies
    live: np.ndarray  # bool [n_docs]
    n_live: int
    del_file: str | None = None  # saved tombstone file matching `live`; None once it changes
    # Query-time caches, rebuilt lazily.
    _norm: np.ndarray | None = field(default=None, repr=False)
    _norm_avgdl: float = field(default=-1.0, repr=False)
    _dead: np.ndarray | None = field(default=None, repr=False)
    # Per-posting tf part tf*(k1+1)/(tf+norm) and its per-term maximum (NaN = not filled yet),
    # filled lazily term by term and reset when avgdl changes.
    _tfp: np.ndarray | None = field(default=None, repr=False)
    _tfp_max: np.ndarray | None = field(default=None, repr=False)
    _tfp_avgdl: float = field(default=-1.0, repr=False)
    _id_rank: np.ndarray | None = field(default=None, repr=False)
    # (score buffer of zeros, row scratch, score scratch) for the numba kernel, reused by queries.
    _scratch: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list, repr=False
    )

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    def dead_rows(self) -> np.ndarray:
        if self._dead is None:
            self._dead = np.flatnonzero(~self.live).astype(np.int64)
        return self._dead

    def id_rank(self) -> np.ndarray:
        """Rank of each row's id in sorted id order, for tie-breaks among many equal scores."""
        if self._id_rank is None:
            order = np.argsort(np.array(self.ids, dtype=object), kind="stable")
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self._id_rank = rank
        return self._id_rank

    def nbytes(self) -> int:
        arrays = [self.doc_len, self.terms, self.indptr, self.rows, self.tfs, self.live]
        extra = (self._norm, self._tfp, self._tfp_max, self._id_rank)
        arrays += [a for a in extra if a is not None]
        arrays += [a for scratch in self._scratch for a in scratch]
        return int(sum(a.nbytes for a in arrays))


class BM25Index:
    """A BM25Okapi index that supports adds, replaces, deletes, persistence and fast search.

    Args:
        k1: Term-frequency saturation (rank-bm25 default 1.5).
        b: Length normalisation (rank-bm25 default 0.75).
        epsilon: Floor factor for negative idf, applied as `epsilon * average_idf`.
        stopwords: Whether `add` and `search` drop English stopwords when tokenizing.
        max_segments: Merge the smallest segments when an add leaves more than this many.
        max_deleted_ratio: Rewrite a segment once this fraction of its documents is deleted.
        kernel: How queries accumulate scores: "numpy", "numba" (the compiled kernel of
            `ragkit.stores.bm25_kernel`; needs numba, `pip install ragkit[fast]`) or "auto"
            (numba when it is installed and a segment holds >= `KERNEL_MIN_DOCS` documents,
            where it pays for importing numba). Results are the same either way; not saved.
    """

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        stopwords: bool = True,
        max_segments: int = 10,
        max_deleted_ratio: float = 0.3,
        kernel: str = "auto",
    ) -> None:
        if max_segments < 1:
            raise ValueError("max_segments must be >= 1")
        _check_kernel(kernel)
        self.kernel = kernel
        self.k1 = float(k1)
        self.b = float(b)
        self.epsilon = float(epsilon)
        self.stopwords = bool(stopwords)
        self.max_segments = int(max_segments)
        self.max_deleted_ratio = float(max_deleted_ratio)
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df = np.zeros(1024, dtype=np.int64)
        self._n_live = 0
        self._total_len = 0
        self._segments: list[_Segment] = []
        self._where: dict[str, tuple[_Segment, int]] = {}
        self._by_source: dict[str, set[str]] = {}
        self._uid = uuid.uuid4().hex[:12]
        self._vocab_parts: list[tuple[int, int, str]] = []  # saved (start, end, file) parts
        self._file_sha: dict[str, str] = {}  # sha256 of each file this index wrote or verified
        self._next_seq = 0
        self._idf: np.ndarray | None = None

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._where

    def ids(self) -> list[str]:
        """Return the ids of all live documents, in segment order.

        Returns:
            A new list of ids.
        """
        out: list[str] = []
        for seg in self._segments:
            if seg.n_live == seg.n_docs:
                out.extend(seg.ids)
            else:
                ids = seg.ids
                out.extend(ids[r] for r in np.flatnonzero(seg.live).tolist())
        return out

    def source_counts(self) -> dict[str, int]:
        """Live documents per source (documents added without a source are not counted).

        Returns:
            source -> number of live documents.
        """
        return {src: len(ids) for src, ids in self._by_source.items()}

    def stats(self) -> dict[str, int]:
        """Summarise the index size, for logs, benchmarks and merge-policy tuning.

        Returns:
            docs (live), terms (with live postings), vocab (all known terms), segments,
            deleted (tombstoned, not yet merged away), postings and bytes (numpy arrays in
            memory, caches included).
        """
        vocab = len(self._terms)
        return {
            "docs": self._n_live,
            "terms": int(np.count_nonzero(self._df[:vocab])),
            "vocab": vocab,
            "segments": len(self._segments),
            "deleted": sum(s.n_docs - s.n_live for s in self._segments),
            "postings": sum(len(s.rows) for s in self._segments),
            "bytes": sum(s.nbytes() for s in self._segments) + int(self._df.nbytes),
        }

    # ------------------------------------------------------------------ writes

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        sources: Sequence[str] | None = None,
    ) -> None:
        """Tokenize and index documents; an id that already exists is replaced.

        Args:
            ids: Unique document ids. Within one call the last occurrence of an id wins.
            texts: Document texts, tokenized with `ragkit.stores.tokenize.tokenize`.
            sources: Optional source (e.g. file path) per document, for `delete_source`.
        """
        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids)} ids but {len(texts)} texts")
        self.add_tokens(ids, tokenize_many(texts, stopwords=self.stopwords), sources)

    def add_tokens(
        self,
        ids: Sequence[str],
        token_lists: Sequence[Sequence[str]],
        sources: Sequence[str] | None = None,
    ) -> None:
        """Index pre-tokenized documents as one new segment; existing ids are replaced.

        Args:
            ids: Unique document ids. Within one call the last occurrence of an id wins.
            token_lists: One token sequence per document (empty documents are allowed and
                count towards N and avgdl, as in rank-bm25).
            sources: Optional source per document, for `delete_source`.
        """
        n = len(ids)
        if len(token_lists) != n:
            raise ValueError(f"got {n} ids but {len(token_lists)} token lists")
        if sources is not None and len(sources) != n:
            raise ValueError(f"got {n} ids but {len(sources)} sources")
        if n == 0:
            return
        for doc_id in ids:
            if not isinstance(doc_id, str):
                raise TypeError(f"document ids must be str, got {type(doc_id).__name__}")
        srcs: list[str | None] = list(sources) if sources is not None else [None] * n
        id_list = list(ids)
        toks = token_lists
        if len(set(id_list)) != n:  # keep the last occurrence of each id
            last = {doc_id: i for i, doc_id in enumerate(id_list)}
            keep = sorted(last.values())
            id_list = [id_list[i] for i in keep]
            toks = [token_lists[i] for i in keep]
            srcs = [srcs[i] for i in keep]
            n = len(id_list)
        replaced = [doc_id for doc_id in id_list if doc_id in self._where]
        if replaced:
            self._delete_ids(replaced)

        seg = self._build_segment(id_list, toks, srcs)
        counts = np.diff(seg.indptr)
        self._df[seg.terms] += counts
        self._n_live += n
        self._total_len += int(seg.doc_len.sum(dtype=np.int64))
        self._register(seg)
        self._segments.append(seg)
        self._changed()
        self._apply_merge_policy()

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (tombstones; space is reclaimed by merges).

        Args:
            ids: Ids to delete; unknown ids are ignored.

        Returns:
            How many documents were deleted.
        """
        removed = self._delete_ids(ids)
        if removed:
            self._apply_merge_policy()
        return removed

    def delete_source(self, source: str) -> int:
        """Delete every document that was added with this source.

        Args:
            source: The source given to `add`.

        Returns:
            How many documents were deleted.
        """
        return self.delete(list(self._by_source.get(source, ())))

    def compact(self) -> None:
        """Merge all segments into one, drop tombstones and prune terms no live document uses.

        Queries get slightly faster and memory shrinks; the next `save` rewrites everything.
        """
        vocab = len(self._terms)
        dead_terms = vocab - int(np.count_nonzero(self._df[:vocab]))
        if not self._segments:
            if vocab:
                self._prune_vocab()
            return
        if len(self._segments) > 1 or self._segments[0].n_live < self._segments[0].n_docs:
            merged = self._merge(self._segments)
            self._segments = [merged] if merged.n_docs else []
        if dead_terms:
            self._prune_vocab()
        self._changed()

    # ------------------------------------------------------------------ search

    def search(self, query: str, top_k: int = 10) -> list[tuple[str, float]]:
        """Return the best-scoring documents for a query.

        Args:
            query: Free text, tokenized like the documents.
            top_k: Maximum number of results.

        Returns:
            (id, score) pairs sorted by score descending, ties by id ascending. Documents that
            share no term with the query are never returned.
        """
        return self.search_tokens(tokenize(query, stopwords=self.stopwords), top_k)

    def search_many(self, queries: Sequence[str], top_k: int = 10) -> list[list[tuple[str, float]]]:
        """Run `search` for several queries.

        Args:
            queries: Query texts.
            top_k: Maximum number of results per query.

        Returns:
            One result list per query, in order.
        """
        return self.search_tokens_many(tokenize_many(queries, stopwords=self.stopwords), top_k)

    def search_tokens_many(
        self, token_lists: Sequence[Sequence[str]], top_k: int = 10
    ) -> list[list[tuple[str, float]]]:
        """Run `search_tokens` for several pre-tokenized queries.

        With the numba kernel (see `kernel`) a large segment scores the whole batch in one
        compiled call; otherwise queries run one after another (a few numpy calls each).

        Args:
            token_lists: One token sequence per query.
            top_k: Maximum number of results per query.

        Returns:
            One result list per query, in order.
        """
        if top_k <= 0 or self._n_live == 0:
            return [[] for _ in token_lists]
        hits: list[list[tuple[float, str]]] = [[] for _ in token_lists]
        queries: dict[int, _Query] = {}  # query number -> its terms, for queries that can match
        for i, tokens in enumerate(token_lists):
            terms = self._query_terms(tokens)
            if terms is not None:
                queries[i] = terms
        avgdl = self._total_len / self._n_live
        for seg in self._segments:
            if seg.n_live == 0 or len(seg.terms) == 0:
                continue
            todo = list(queries)
            if self._use_kernel(seg):
                fast = [i for i in todo if queries[i][2]]  # all weights > 0
                if fast:
                    found = self._top_kernel(seg, [queries[i] for i in fast], avgdl, top_k)
                    for i, (cand, cs) in zip(fast, found, strict=True):
                        _collect(hits[i], seg, cand, cs, top_k)
                    todo = [i for i in todo if not queries[i][2]]
            for i in todo:
                qids, qw, positive = queries[i]
                pos = np.searchsorted(seg.terms, qids.astype(seg.terms.dtype))
                np.minimum(pos, len(seg.terms) - 1, out=pos)
                found_at = np.flatnonzero(seg.terms[pos] == qids)
                if len(found_at) == 0:
                    continue
                top = self._top_positive if positive else self._top_exhaustive
                cand, cs = top(seg, pos[found_at], qw[found_at], avgdl, top_k)
                _collect(hits[i], seg, cand, cs, top_k)
        out = []
        for h in hits:
            h.sort(key=lambda hit: (-hit[0], hit[1]))
            out.append([(doc_id, score) for score, doc_id in h[:top_k]])
        return out

    def search_tokens(self, tokens: Sequence[str], top_k: int = 10) -> list[tuple[str, float]]:
        """Search with an already tokenized query (repeated tokens count repeatedly).

        Args:
            tokens: Query tokens.
            top_k: Maximum number of results.

        Returns:
            (id, score) pairs as in `search`.
        """
        return self.search_tokens_many([tokens], top_k)[0]

    def _query_terms(self, tokens: Sequence[str]) -> _Query | None:
        """(term ids, weights idf * count, all weights > 0) of a query; None if nothing matches.

        Terms without live postings (unknown, or only in deleted docs) cannot match anything
        and are dropped. With all weights > 0, "shares a query term" is exactly "score > 0".
        """
        df = self._df
        qcount = Counter(map(self._vocab.get, tokens))
        qcount.pop(None, None)
        if qcount and not (df[list(qcount)] > 0).all():
            qcount = Counter({t: c for t, c in qcount.items() if df[t] > 0})
        if not qcount:
            return None
        idf = self._idf if self._idf is not None else self._compute_idf()
        qids = np.fromiter(qcount.keys(), dtype=np.int64, count=len(qcount))
        qw = idf[qids] * np.fromiter(qcount.values(), dtype=np.float64, count=len(qcount))
        return qids, qw, bool((qw > 0).all())

    def uses_kernel(self) -> bool:
        """Whether queries run on the numba kernel, on at least one segment (see `kernel`).

        Returns:
            True when `kernel` is "numba", or "auto" with numba installed and a segment of at
            least `KERNEL_MIN_DOCS` documents.
        """
        return any(self._use_kernel(seg) for seg in self._segments)

    def _use_kernel(self, seg: _Segment) -> bool:
        if self.kernel == "numpy":
            return False
        if self.kernel == "auto" and seg.n_docs < KERNEL_MIN_DOCS:
            return False
        return bm25_kernel.load_kernel() is not None

    def _top_kernel(
        self,
        seg: _Segment,
        queries: list[_Query],
        avgdl: float,
        top_k: int,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact top-k rows (with ties at the cut) of one segment per query, in one kernel call.

        Every posting of the query terms is accumulated (a compiled loop needs no pruning to
        beat numpy's dense passes). The scratch buffers come from a per-segment pool (a list,
        whose pop/append are atomic), so concurrent searches never share one.
        """
        kernel = bm25_kernel.load_kernel()
        assert kernel is not None
        if len(queries) == 1:
            qids, qw = queries[0][0], queries[0][1]
            qptr = np.array([0, len(qids)], dtype=np.int64)
        else:
            qids = np.concatenate([q[0] for q in queries])
            qw = np.concatenate([q[1] for q in queries])
            qptr = np.zeros(len(queries) + 1, dtype=np.int64)
            np.cumsum([len(q[0]) for q in queries], out=qptr[1:])
        tfp, tmax = self._tfp_arrays(seg, avgdl)
        pool = seg._scratch
        if pool:
            buf, touched, out = pool.pop()
        else:  # the kernel writes one slot past the last distinct row: n_docs + 1
            buf = np.zeros(seg.n_docs)
            touched = np.empty(seg.n_docs + 1, np.int64)
            out = np.empty(seg.n_docs + 1)
        try:
            for attempt in range(2):  # a second call only after filling stale tf parts
                rows, scores, ptr, stale = kernel(
                    seg.terms,
                    seg.indptr,
                    seg.rows,
                    tfp,
                    tmax,
                    qids,
                    qw,
                    qptr,
                    seg.live,
                    seg.n_live < seg.n_docs,
                    buf,
                    touched,
                    out,
                    top_k,
                )
                if not len(stale):
                    break
                if attempt:
                    raise RuntimeError("BM25 kernel: tf parts still unfilled after filling them")
                self._seg_tfp(seg, avgdl, stale, seg.indptr[stale], seg.indptr[stale + 1])
        except BaseException:
            buf.fill(0.0)  # interrupted mid-query: the buffer may hold partial scores
            raise
        finally:
            pool.append((buf, touched, out))
        if len(queries) == 1:
            return [(rows, scores)]
        bounds = ptr.tolist()
        return [(rows[a:b], scores[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]

    def _top_exhaustive(
        self, seg: _Segment, pos: np.ndarray, qw: np.ndarray, avgdl: float, top_k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (with ties at the cut) of one segment when some query weight is <= 0.

        Then "score > 0" no longer means "shares a query term", so every touched live row is
        a candidate. Only reachable with a non-default epsilon <= 0.
        """
        norm = self._seg_norm(seg, avgdl)
        indptr = seg.indptr
        row_parts, tf_parts, qw_parts = [], [], []
        for p, w in zip(pos.tolist(), qw.tolist(), strict=True):
            s, e = int(indptr[p]), int(indptr[p + 1])
            row_parts.append(seg.rows[s:e])
            tf_parts.append(seg.tfs[s:e])
            qw_parts.append(np.full(e - s, w))
        rows = np.concatenate(row_parts)
        tf = np.concatenate(tf_parts).astype(np.float64)
        w_all = np.concatenate(qw_parts)
        # Same float operations, in the same order, as rank-bm25's get_scores.
        vals = w_all * ((tf * (self.k1 + 1)) / (tf + norm[rows]))
        scores = np.bincount(rows, vals, minlength=seg.n_docs)
        touched = np.bincount(rows, minlength=seg.n_docs) > 0
        touched &= seg.live
        return _top_with_ties(np.flatnonzero(touched), scores, top_k)

    def _top_positive(
        self, seg: _Segment, pos: np.ndarray, qw: np.ndarray, avgdl: float, top_k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k rows (with ties at the cut) of one segment, all query weights > 0.

        Scores are exactly rank-bm25's (`w * tf_part`, tf parts cached per posting), but the
        work avoids most of a dense pass over every posting (MaxScore-style pruning):

        * Terms are scattered densely rarest first, in stages (the first stage holds about
          1/4 of the segment's size in postings, each next one twice as many).
        * After a stage, the k documents of the rarest term with the best partial scores get
          their exact scores (the remaining terms looked up by binary search in their sorted
          rows): the k-th best of those is a lower bound on the k-th best score overall.
        * A document whose partial score plus `sum(w * max tf_part)` of the remaining terms is
          below that bound can reach neither the top-k nor a tie with it, so only the few
          others are completed by lookups, and the common terms' long postings are never read.
        * Otherwise the next stage is scattered; after the last one the top-k is selected
          among the documents scoring at least the bound, not among all rows.
        """
        n = seg.n_docs
        indptr = seg.indptr
        pl = pos.tolist()
        starts = indptr[pos].tolist()
        ends = indptr[pos + 1].tolist()
        ws = qw.tolist()
        tfp, tmax = self._seg_tfp(seg, avgdl, pl, starts, ends)
        m = len(pl)
        order = sorted(range(m), key=lambda j: ends[j] - starts[j])  # rarest first
        terms = [(starts[j], ends[j], ws[j]) for j in order]
        bounds = [ws[j] * float(tmax[pl[j]]) for j in order]
        sample = self._sample_rows(seg, [(s, e) for s, e, _ in terms], top_k)
        partial = seg.n_live < n
        rows = seg.rows
        scores: np.ndarray | None = None
        done = 0
        budget = max(1, n // _COMMON_FRACTION)
        while True:
            stop, acc = done, 0
            while stop < m and (stop == done or acc + terms[stop][1] - terms[stop][0] <= budget):
                acc += terms[stop][1] - terms[stop][0]
                stop += 1
            if sample is None:  # no lower bound to prune with: scatter everything
                stop = m
            part = _scatter(rows, tfp, terms[done:stop], n)
            if scores is None:
                scores = part
            else:
                scores += part
            done = stop
            if partial:
                scores[seg.dead_rows()] = 0.0
            if done == m or sample is None:
                break
            rest = terms[done:]
            # The k-th best full score of any k live documents is a lower bound on the k-th
            # best overall: complete the k sample documents with the best partial scores.
            best = sample
            if len(best) > top_k:
                ps = scores[best]
                best = best[np.argpartition(ps, len(ps) - top_k)[len(ps) - top_k :]]
            theta = float((scores[best] + _lookup(rows, tfp, rest, best)).min())
            limit = theta - sum(bounds[done:]) - 1e-9 * theta
            if limit > 0.0:
                cand = np.flatnonzero(scores >= limit)
                if len(cand) * 16 <= sum(e - s for s, e, _ in rest):
                    cs = scores[cand] + _lookup(rows, tfp, rest, cand)
                    return _top_with_ties(cand, cs, top_k, presliced=True)
            budget *= 2
        cand = None
        if sample is not None:
            theta = np.partition(scores[sample], len(sample) - top_k)[len(sample) - top_k]
            if theta > 0.0:
                cand = np.flatnonzero(scores >= theta)
        if cand is None:
            cand = np.flatnonzero(scores > 0.0)
        return _top_with_ties(cand, scores, top_k)

    def _sample_rows(
        self, seg: _Segment, spans: list[tuple[int, int]], top_k: int
    ) -> np.ndarray | None:
        """At least `top_k` distinct live rows from the rarest query term that has that many.

        The k-th best score among any k live documents is a lower bound on the k-th best
        score overall; the rarest terms carry the largest weights, so their documents give a
        tight bound. None when no single query term has `top_k` live documents.
        """
        for s, e in spans:
            if e - s < top_k:
                continue
            rows = seg.rows[s:e]
            if seg.n_live < seg.n_docs:
                rows = rows[seg.live[rows]]
                if len(rows) < top_k:
                    continue
            return rows
        return None

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path | str) -> None:
        """Persist the index atomically; segments already in `directory` are not rewritten.

        New files are written under temporary names and renamed into place, then the manifest
        is replaced last, so readers see either the old or the new index, never a mix. Files
        of this index format that the new manifest no longer references are then removed.

        Args:
            directory: Target folder (created if missing).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = len(self._terms)
        covered = self._vocab_parts[-1][1] if self._vocab_parts else 0
        if covered < vocab:
            self._vocab_parts.append((covered, vocab, _vocab_file(self._uid, covered, vocab)))
        if len(self._vocab_parts) > _VOCAB_PART_LIMIT:
            self._vocab_parts = [(0, vocab, _vocab_file(self._uid, 0, vocab))]
        vocab_entries = []
        for start, end, fname in self._vocab_parts:
            sha = self._ensure_file(
                directory,
                fname,
                lambda s=start, e=end: json.dumps(self._terms[s:e]).encode("utf-8"),
            )
            vocab_entries.append({"file": fname, "start": start, "end": end, "sha256": sha})
        seg_entries = []
        for seg in self._segments:
            fname = f"{seg.name}.npz"
            sha = self._ensure_file(directory, fname, lambda seg=seg: _segment_bytes(seg))
            del_name = None
            del_sha = None
            if seg.n_live < seg.n_docs:
                if seg.del_file is None:
                    seg.del_file = f"{seg.name}.del-{uuid.uuid4().hex[:8]}.npy"
                del_name = seg.del_file
                del_sha = self._ensure_file(
                    directory,
                    del_name,
                    lambda seg=seg: _npy_bytes(seg.dead_rows().astype(np.int32)),
                )
            seg_entries.append(
                {
                    "file": fname,
                    "sha256": sha,
                    "deletes": del_name,
                    "deletes_sha256": del_sha,
                    "n_docs": seg.n_docs,
                    "n_live": seg.n_live,
                    "n_terms": len(seg.terms),
                    "n_postings": len(seg.rows),
                }
            )
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "params": {
                "k1": self.k1,
                "b": self.b,
                "epsilon": self.epsilon,
                "stopwords": self.stopwords,
                "max_segments": self.max_segments,
                "max_deleted_ratio": self.max_deleted_ratio,
            },
            "uid": self._uid,
            "next_seq": self._next_seq,
            "n_docs": self._n_live,
            "n_terms": vocab,
            "total_len": self._total_len,
            "vocab": vocab_entries,
            "segments": seg_entries,
        }
        manifest["sha256"] = _manifest_sha(manifest)
        _atomic_write(directory / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        referenced = {MANIFEST} | {v["file"] for v in vocab_entries}
        for entry in seg_entries:
            referenced.add(entry["file"])
            if entry["deletes"]:
                referenced.add(entry["deletes"])
        self._file_sha = {k: v for k, v in self._file_sha.items() if k in referenced}
        for path in directory.iterdir():
            if _OWN_FILE_RE.match(path.name) and path.name not in referenced:
                path.unlink(missing_ok=True)

    def _ensure_file(self, directory: Path, fname: str, make: Any) -> str:
        """Write ``fname`` unless this index already wrote (or verified) it there; its sha256."""
        path = directory / fname
        known = self._file_sha.get(fname)
        if known is not None and path.exists():
            return known
        data: bytes = make()
        _atomic_write(path, data)
        sha = hashlib.sha256(data).hexdigest()
        self._file_sha[fname] = sha
        return sha

    @classmethod
    def load(cls, directory: Path | str, kernel: str = "auto") -> BM25Index:
        """Load an index written by `save`, verifying the manifest against the files.

        Args:
            directory: Folder given to `save`.
            kernel: The query kernel, as in the constructor (it is not saved).

        Returns:
            The loaded index, with the parameters it was saved with.

        Raises:
            BM25IndexError: The folder has no index, or it is corrupt or of another format.
        """
        _check_kernel(kernel)
        directory = Path(directory)
        rebuild = f"delete {directory} and rebuild the index"
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise BM25IndexError(
                f"no BM25 index in {directory}: {MANIFEST} is missing; build one and save it there"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BM25IndexError(
                f"corrupt BM25 manifest in {directory} ({exc}); {rebuild}"
            ) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise BM25IndexError(f"{directory / MANIFEST} is not a ragkit BM25 manifest; {rebuild}")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BM25IndexError(
                f"BM25 index in {directory} has format version {version!r}, this ragkit reads "
                f"{FORMAT_VERSION}; {rebuild}"
            )
        if manifest.get("sha256") != _manifest_sha(manifest):
            raise BM25IndexError(
                f"corrupt BM25 manifest in {directory}: its checksum does not match; {rebuild}"
            )
        try:
            index = cls._from_manifest(directory, manifest)
            index.kernel = kernel
            return index
        except BM25IndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
            raise BM25IndexError(
                f"corrupt BM25 index in {directory} ({type(exc).__name__}: {exc}); {rebuild}"
            ) from exc

    @classmethod
    def _from_manifest(cls, directory: Path, manifest: dict[str, Any]) -> BM25Index:
        rebuild = f"delete {directory} and rebuild the index"
        params = manifest["params"]
        index = cls(**{k: params[k] for k in _PARAM_NAMES})
        index._uid = str(manifest["uid"])
        index._next_seq = int(manifest["next_seq"])
        for entry in [*manifest["vocab"], *manifest["segments"]]:
            for key in ("file", "deletes"):
                name = entry.get(key)
                if name is None:
                    continue
                path = directory / name
                if not path.is_file():
                    raise BM25IndexError(
                        f"BM25 index in {directory} is missing {name} listed in {MANIFEST}; "
                        f"{rebuild}"
                    )
                want = entry.get("sha256" if key == "file" else "deletes_sha256")
                if not isinstance(want, str) or file_sha256(path) != want:
                    raise BM25IndexError(
                        f"BM25 index in {directory} is corrupt: {name} does not match the "
                        f"checksum in {MANIFEST}; {rebuild}"
                    )
                index._file_sha[name] = want
        terms: list[str] = []
        for entry in manifest["vocab"]:
            start, end = int(entry["start"]), int(entry["end"])
            part = json.loads((directory / entry["file"]).read_text(encoding="utf-8"))
            if start != len(terms) or len(part) != end - start:
                raise BM25IndexError(f"vocabulary parts in {directory} do not line up; {rebuild}")
            terms.extend(part)
            index._vocab_parts.append((start, end, str(entry["file"])))
        n_terms = int(manifest["n_terms"])
        if len(terms) != n_terms:
            raise BM25IndexError(
                f"BM25 index in {directory} lists {n_terms} terms but its vocabulary has "
                f"{len(terms)}; {rebuild}"
            )
        index._terms = terms
        index._vocab = {t: i for i, t in enumerate(terms)}
        if len(index._vocab) != n_terms:
            raise BM25IndexError(f"duplicate terms in the vocabulary of {directory}; {rebuild}")
        index._df = np.zeros(max(1024, n_terms), dtype=np.int64)
        for entry in manifest["segments"]:
            seg = _load_segment(directory, entry, n_terms)
            if seg.n_live != int(entry["n_live"]):
                raise BM25IndexError(
                    f"segment {entry['file']} in {directory} has {seg.n_live} live documents, "
                    f"the manifest says {entry['n_live']}; {rebuild}"
                )
            if seg.n_live < seg.n_docs:
                live_post = seg.live[seg.rows].astype(np.int64)
                counts = np.add.reduceat(live_post, seg.indptr[:-1]) if len(seg.rows) else live_post
            else:
                counts = np.diff(seg.indptr)
            index._df[seg.terms] += counts
            index._n_live += seg.n_live
            index._total_len += int(seg.doc_len[seg.live].sum(dtype=np.int64))
            index._register(seg)
            index._segments.append(seg)
        if index._n_live != int(manifest["n_docs"]) or len(index._where) != index._n_live:
            raise BM25IndexError(
                f"BM25 index in {directory} holds {len(index._where)} unique live documents, "
                f"the manifest says {manifest['n_docs']}; {rebuild}"
            )
        return index

    # ------------------------------------------------------------------ internals

    def _changed(self) -> None:
        self._idf = None

    def _compute_idf(self) -> np.ndarray:
        """rank-bm25 BM25Okapi._calc_idf over the live vocabulary, as a dense array."""
        vocab = len(self._terms)
        df = self._df[:vocab]
        present = df > 0
        dfp = df[present].astype(np.float64)
        n = float(self._n_live)
        idf_p = np.log(n - dfp + 0.5) - np.log(dfp + 0.5)
        idf = np.zeros(vocab, dtype=np.float64)
        if len(idf_p):
            average_idf = float(idf_p.sum()) / len(idf_p)
            idf_p[idf_p < 0] = self.epsilon * average_idf
            idf[present] = idf_p
        self._idf = idf
        return idf

    def _seg_norm(self, seg: _Segment, avgdl: float) -> np.ndarray:
        """Per-document length norm `k1*(1-b+b*dl/avgdl)`, cached until avgdl changes.

        Caching per document (not per posting) keeps the refresh after an update O(docs)
        instead of O(postings), so interleaved adds and queries stay cheap.
        """
        if seg._norm is None or seg._norm_avgdl != avgdl:
            k1, b = self.k1, self.b
            seg._norm = k1 * ((1 - b) + (b * seg.doc_len.astype(np.float64)) / avgdl)
            seg._norm_avgdl = avgdl
        return seg._norm

    def _tfp_arrays(self, seg: _Segment, avgdl: float) -> tuple[np.ndarray, np.ndarray]:
        """The segment's tf-part cache and per-term maxima (NaN: not filled) for this avgdl."""
        if seg._tfp is None or seg._tfp_max is None:
            seg._tfp = np.empty(len(seg.rows), dtype=np.float64)
            seg._tfp_max = np.full(len(seg.terms), np.nan)
            seg._tfp_avgdl = avgdl
        elif seg._tfp_avgdl != avgdl:
            seg._tfp_max.fill(np.nan)
            seg._tfp_avgdl = avgdl
        return seg._tfp, seg._tfp_max

    def _seg_tfp(
        self,
        seg: _Segment,
        avgdl: float,
        pos: Sequence[int] | np.ndarray,
        starts: Sequence[int] | np.ndarray,
        ends: Sequence[int] | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-posting `tf*(k1+1)/(tf+norm)` and per-term maxima, filled for the given terms.

        Filled lazily per term (only the query's terms pay), and invalidated by an O(terms)
        reset when avgdl changes, so an update never triggers an O(postings) refresh.
        """
        tfp, tmax = self._tfp_arrays(seg, avgdl)
        if np.isnan(tmax[pos]).any():
            stale = [j for j, p in enumerate(pos) if np.isnan(tmax[p])]
            norm = self._seg_norm(seg, avgdl)
            k1 = self.k1
            for j in stale:
                s, e = starts[j], ends[j]
                tf = seg.tfs[s:e].astype(np.float64)
                # Same float operations, in the same order, as rank-bm25's get_scores.
                part = (tf * (k1 + 1)) / (tf + norm[seg.rows[s:e]])
                tfp[s:e] = part
                tmax[pos[j]] = part.max()
        return tfp, tmax

    def _new_name(self) -> str:
        self._next_seq += 1
        return f"seg-{self._next_seq:08d}-{uuid.uuid4().hex[:8]}"

    def _term_ids(self, flat: list[str]) -> np.ndarray:
        vocab = self._vocab
        terms = self._terms
        for t in dict.fromkeys(flat):  # unique in first-seen order, C speed
            if t not in vocab:
                vocab[t] = len(terms)
                terms.append(t)
        if len(terms) > len(self._df):
            grown = np.zeros(max(len(terms), 2 * len(self._df)), dtype=np.int64)
            grown[: len(self._df)] = self._df
            self._df = grown
        return np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))

    def _build_segment(
        self, ids: list[str], token_lists: Sequence[Sequence[str]], sources: list[str | None]
    ) -> _Segment:
        n = len(ids)
        lens = np.fromiter(map(len, token_lists), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(token_lists))
        tids = self._term_ids(flat)
        docs = np.repeat(np.arange(n, dtype=np.int64), lens)
        # One sort of (term, doc) keys yields term-major postings with tf as run lengths.
        keys, tfs = np.unique(tids * n + docs, return_counts=True)
        post_terms = keys // n
        rows = (keys - post_terms * n).astype(np.int32)
        terms, indptr = _runs(post_terms)
        return _Segment(
            name=self._new_name(),
            ids=ids,
            sources=sources,
            doc_len=lens.astype(np.int32),
            terms=terms.astype(np.int32),
            indptr=indptr,
            rows=rows,
            tfs=tfs.astype(np.int32),
            live=np.ones(n, dtype=bool),
            n_live=n,
        )

    def _register(self, seg: _Segment) -> None:
        where = self._where
        by_source = self._by_source
        live = seg.live
        for row, (doc_id, src) in enumerate(zip(seg.ids, seg.sources, strict=True)):
            if not live[row]:
                continue
            where[doc_id] = (seg, row)
            if src is not None:
                by_source.setdefault(src, set()).add(doc_id)

    def _delete_ids(self, ids: Iterable[str]) -> int:
        per_seg: dict[int, tuple[_Segment, list[int]]] = {}
        where = self._where
        for doc_id in ids:
            loc = where.pop(doc_id, None)
            if loc is None:
                continue
            seg, row = loc
            per_seg.setdefault(id(seg), (seg, []))[1].append(row)
            src = seg.sources[row]
            if src is not None:
                members = self._by_source.get(src)
                if members is not None:
                    members.discard(doc_id)
                    if not members:
                        del self._by_source[src]
        removed = 0
        for seg, rows_list in per_seg.values():
            rows = np.asarray(rows_list, dtype=np.int64)
            mark = np.zeros(seg.n_docs, dtype=bool)
            mark[rows] = True
            hit = np.flatnonzero(mark[seg.rows])
            term_pos = np.searchsorted(seg.indptr, hit, side="right") - 1
            self._df[seg.terms] -= np.bincount(term_pos, minlength=len(seg.terms))
            self._total_len -= int(seg.doc_len[rows].sum(dtype=np.int64))
            seg.live[rows] = False
            seg.n_live -= len(rows)
            seg.del_file = None
            seg._dead = None
            removed += len(rows)
        if removed:
            self._n_live -= removed
            self._segments = [s for s in self._segments if s.n_live > 0]
            self._changed()
        return removed

    def _apply_merge_policy(self) -> None:
        """Expunge tombstone-heavy segments, then merge the smallest while there are too many."""
        changed = False
        for i, seg in enumerate(self._segments):
            if seg.n_live < seg.n_docs and (seg.n_docs - seg.n_live) > self.max_deleted_ratio * (
                seg.n_docs
            ):
                self._segments[i] = self._merge([seg])
                changed = True
        while len(self._segments) > self.max_segments:
            m = len(self._segments) - self.max_segments + 1
            order = sorted(range(len(self._segments)), key=lambda i: self._segments[i].n_live)
            pick = sorted(order[: max(2, m)])
            merged = self._merge([self._segments[i] for i in pick])
            rest = [s for i, s in enumerate(self._segments) if i not in set(pick)]
            rest.insert(min(pick[0], len(rest)), merged)
            self._segments = rest
            changed = True
        if changed:
            self._changed()

    def _merge(self, segs: list[_Segment]) -> _Segment:
        """Merge segments into a new one holding only their live documents, in order."""
        ids: list[str] = []
        sources: list[str | None] = []
        lens, term_parts, row_parts, tf_parts = [], [], [], []
        offset = 0
        for seg in segs:
            counts = np.diff(seg.indptr)
            post_terms = np.repeat(seg.terms.astype(np.int64), counts)
            if seg.n_live < seg.n_docs:
                live_rows = np.flatnonzero(seg.live)
                remap = np.full(seg.n_docs, -1, dtype=np.int64)
                remap[live_rows] = np.arange(len(live_rows)) + offset
                keep = seg.live[seg.rows]
                term_parts.append(post_terms[keep])
                row_parts.append(remap[seg.rows[keep]])
                tf_parts.append(seg.tfs[keep])
                lens.append(seg.doc_len[live_rows])
                rl = live_rows.tolist()
                ids.extend(seg.ids[r] for r in rl)
                sources.extend(seg.sources[r] for r in rl)
            else:
                term_parts.append(post_terms)
                row_parts.append(seg.rows.astype(np.int64) + offset)
                tf_parts.append(seg.tfs)
                lens.append(seg.doc_len)
                ids.extend(seg.ids)
                sources.extend(seg.sources)
            offset += seg.n_live
        n = offset
        post_terms = np.concatenate(term_parts) if term_parts else np.zeros(0, np.int64)
        rows = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
        tfs = np.concatenate(tf_parts) if tf_parts else np.zeros(0, np.int32)
        order = np.argsort(post_terms * max(n, 1) + rows)
        post_terms = post_terms[order]
        terms, indptr = _runs(post_terms)
        merged = _Segment(
            name=self._new_name(),
            ids=ids,
            sources=sources,
            doc_len=np.concatenate(lens).astype(np.int32) if lens else np.zeros(0, np.int32),
            terms=terms.astype(np.int32),
            indptr=indptr,
            rows=rows[order].astype(np.int32),
            tfs=tfs[order].astype(np.int32),
            live=np.ones(n, dtype=bool),
            n_live=n,
        )
        where = self._where
        for row, doc_id in enumerate(ids):
            where[doc_id] = (merged, row)
        return merged

    def _prune_vocab(self) -> None:
        """Drop terms without live postings and renumber the rest (order is preserved)."""
        vocab = len(self._terms)
        alive = self._df[:vocab] > 0
        remap = np.cumsum(alive) - 1
        self._terms = [t for t, a in zip(self._terms, alive.tolist(), strict=True) if a]
        self._vocab = {t: i for i, t in enumerate(self._terms)}
        df = self._df[:vocab][alive]
        self._df = np.zeros(max(1024, len(df)), dtype=np.int64)
        self._df[: len(df)] = df
        for i, seg in enumerate(self._segments):
            new = self._merge([seg]) if seg.n_live < seg.n_docs else seg
            new.terms = remap[new.terms].astype(np.int32)
            if new is seg:  # contents changed: it must be saved under a new name
                seg.name = self._new_name()
            self._segments[i] = new
        self._uid = uuid.uuid4().hex[:12]
        self._vocab_parts = []
        self._changed()


def _collect(
    hits: list[tuple[float, str]], seg: _Segment, cand: np.ndarray, cs: np.ndarray, top_k: int
) -> None:
    """Add one segment's candidate rows to a query's hits, at most `top_k` of them by id."""
    if len(cand) == 0:
        return
    if len(cand) > 2 * top_k:  # many ties at the cut: keep the k smallest ids among them
        pick = np.lexsort((seg.id_rank()[cand], -cs))[:top_k]
        cand, cs = cand[pick], cs[pick]
    seg_ids = seg.ids
    hits.extend(zip(cs.tolist(), [seg_ids[r] for r in cand.tolist()], strict=True))


def _scatter(
    rows: np.ndarray, tfp: np.ndarray, terms: list[tuple[int, int, float]], n: int
) -> np.ndarray:
    """Dense scores `sum(w * tf_part)` over the postings [s, e) of each (s, e, w) term."""
    if len(terms) == 1:
        s, e, w = terms[0]
        return np.bincount(rows[s:e], tfp[s:e] * w, minlength=n)
    idx = np.concatenate([rows[s:e] for s, e, _ in terms])
    vals = np.concatenate([tfp[s:e] for s, e, _ in terms])
    vals *= np.repeat([w for _, _, w in terms], [e - s for s, e, _ in terms])
    return np.bincount(idx, vals, minlength=n)


def _lookup(
    rows: np.ndarray, tfp: np.ndarray, terms: list[tuple[int, int, float]], docs: np.ndarray
) -> np.ndarray:
    """Sum of `w * tf_part` over the (s, e, w) terms for each of `docs` (binary search).

    Each term's rows are sorted, so one `searchsorted` per term finds where each document
    would be; the gathers, hit tests and the sum over terms are then one vectorized pass.
    """
    needles = docs.astype(rows.dtype)  # same dtype, else numpy casts each posting list
    nd = len(needles)
    at = np.concatenate([rows[s:e].searchsorted(needles) + s for s, e, _ in terms])
    last = np.repeat([e - 1 for _, e, _ in terms], nd)
    np.minimum(at, last, out=at)
    hit = rows[at] == np.tile(needles, len(terms))
    vals = tfp[at] * np.repeat([w for _, _, w in terms], nd)
    vals[~hit] = 0.0
    return vals.reshape(len(terms), nd).sum(axis=0)


def _top_with_ties(
    cand: np.ndarray, scores: np.ndarray, top_k: int, presliced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates scoring at least the k-th best (every tie kept, so the id tie-break is exact).

    Args:
        cand: Candidate rows.
        scores: Dense scores indexed by row, or (presliced) the candidates' own scores.
        top_k: The cut-off.

    Returns:
        (rows, scores) of the kept candidates.
    """
    cs = scores if presliced else scores[cand]
    if len(cand) > top_k:
        kth = np.partition(cs, len(cs) - top_k)[len(cs) - top_k]
        keep = cs >= kth
        cand = cand[keep]
        cs = cs[keep]
    return cand, cs


def _check_kernel(kernel: str) -> None:
    if kernel not in ("auto", "numpy", "numba"):
        raise ValueError(f"kernel must be 'auto', 'numpy' or 'numba', got {kernel!r}")
    if kernel == "numba" and not bm25_kernel.available():
        raise ValueError("kernel='numba' needs numba: pip install 'ragkit[fast]'")


_PARAM_NAMES = ("k1", "b", "epsilon", "stopwords", "max_segments", "max_deleted_ratio")


def _vocab_file(uid: str, start: int, end: int) -> str:
    return f"vocab-{uid}-{start:09d}-{end:09d}-{uuid.uuid4().hex[:8]}.json"


def _runs(sorted_terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values of a sorted array and the CSC-style pointer to where each run starts."""
    n = len(sorted_terms)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    flag = np.empty(n, dtype=bool)
    flag[0] = True
    np.not_equal(sorted_terms[1:], sorted_terms[:-1], out=flag[1:])
    starts = np.flatnonzero(flag)
    indptr = np.empty(len(starts) + 1, dtype=np.int64)
    indptr[:-1] = starts
    indptr[-1] = n
    return sorted_terms[starts], indptr


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)
    _fsync_dir(path.parent)


def _manifest_sha(manifest: dict[str, Any]) -> str:
    """Checksum of a manifest's content (every key but ``sha256``), canonically serialized."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _segment_bytes(seg: _Segment) -> bytes:
    meta = json.dumps({"ids": seg.ids, "sources": seg.sources}).encode("utf-8")
    buf = io.BytesIO()
    np.savez(
        buf,
        doc_len=seg.doc_len,
        terms=seg.terms,
        indptr=seg.indptr,
        rows=seg.rows,
        tfs=seg.tfs,
        meta=np.frombuffer(meta, dtype=np.uint8),
    )
    return buf.getvalue()


def _load_segment(directory: Path, entry: dict[str, Any], n_terms: int) -> _Segment:
    """Read one segment file and check its arrays against each other and the manifest."""
    fname = entry["file"]
    bad = f"segment {fname} in {directory} is corrupt; delete {directory} and rebuild the index"
    with np.load(directory / fname, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in ("doc_len", "terms", "indptr", "rows", "tfs", "meta")}
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    ids, sources = meta["ids"], meta["sources"]
    n_docs = int(entry["n_docs"])
    doc_len, terms, indptr = arrays["doc_len"], arrays["terms"], arrays["indptr"]
    rows, tfs = arrays["rows"], arrays["tfs"]
    ok = (
        len(ids) == n_docs
        and len(sources) == n_docs
        and len(doc_len) == n_docs
        and len(indptr) == len(terms) + 1
        and int(indptr[0]) == 0
        and int(indptr[-1]) == len(rows) == len(tfs)
        and (len(terms) == 0 or (int(terms.min()) >= 0 and int(terms.max()) < n_terms))
        and (len(rows) == 0 or (int(rows.min()) >= 0 and int(rows.max()) < n_docs))
    )
    if not ok:
        raise BM25IndexError(bad)
    live = np.ones(n_docs, dtype=bool)
    if entry.get("deletes"):
        dead = np.load(directory / entry["deletes"], allow_pickle=False)
        if len(dead) and (int(dead.min()) < 0 or int(dead.max()) >= n_docs):
            raise BM25IndexError(bad)
        live[dead] = False
    name = fname[: -len(".npz")] if fname.endswith(".npz") else fname
    return _Segment(
        name=name,
        ids=list(ids),
        sources=list(sources),
        doc_len=doc_len.astype(np.int32, copy=False),
        terms=terms.astype(np.int32, copy=False),
        indptr=indptr.astype(np.int64, copy=False),
        rows=rows.astype(np.int32, copy=False),
        tfs=tfs.astype(np.int32, copy=False),
        live=live,
        n_live=int(live.sum()),
        del_file=entry.get("deletes"),
    )
