"""Deterministic benchmark corpora and queries built from real English text.

Benchmarks of lexical retrieval are only meaningful on realistic term statistics (Zipfian
vocabulary, real stopword rates, ~60-word chunks), so the corpus is made of Wikipedia paragraphs
from the shared QA datasets, with Python's own documentation as an always-available fallback.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["bench_queries", "build_bench_corpus", "shared_data_dir"]

MIN_WORDS = 40
MAX_WORDS = 80

# JSON Lines files with `context: [[title, [sentences]], ...]` and `question`.
_CONTEXT_FILES = (
    "hotpotqa-migres/hotpot.json",
    "hotpotqa-amor/dev.json",
    "hotpotqa-amor/test.json",
    "2wikimultihopqa-migres/wikihop.json",
)
_NQ_FILE = "nq-open-oracle/nq-open-oracle.jsonl.gz"
_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WS_RE = re.compile(r"\s+")


def shared_data_dir() -> Path | None:
    """Find the shared dataset folder, so benchmarks use real QA text when it is available.

    Looks at, in order: the evaluation sets' folder (`$RAGKIT_DATA`, else `../shared/data`
    relative to the current working directory) and `../shared/data` relative to this checkout's root.

    Returns:
        The first existing directory, or None when none exists (callers fall back to pydoc text).
    """
    from ragkit.evaluation.datasets import shared_data_dir as eval_data_dir

    candidates: list[Path] = [eval_data_dir()]
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return None


def _iter_jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def _clean(sentence: str) -> str:
    return _WS_RE.sub(" ", sentence).strip()


def _split_sentences(text: str) -> list[str]:
    return [s for s in (_clean(p) for p in _SENT_RE.split(text)) if s]


@functools.lru_cache(maxsize=4)
def _load_sources(data_dir: Path | None) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """Return (deduplicated paragraphs as sentence tuples, deduplicated questions)."""
    paragraphs: list[tuple[str, ...]] = []
    questions: list[str] = []
    seen_par: set[str] = set()
    seen_q: set[str] = set()

    def add_par(sentences: list[str]) -> None:
        sents = tuple(s for s in (_clean(x) for x in sentences) if s)
        key = " ".join(sents).lower()
        if sents and key not in seen_par:
            seen_par.add(key)
            paragraphs.append(sents)

    def add_q(question: object) -> None:
        if isinstance(question, str):
            q = _clean(question)
            if q and q.lower() not in seen_q:
                seen_q.add(q.lower())
                questions.append(q)

    if data_dir is not None:
        for rel in _CONTEXT_FILES:
            path = data_dir / rel
            if not path.is_file():
                continue
            for row in _iter_jsonl(path):
                add_q(row.get("question"))
                for item in row.get("context") or ():
                    if isinstance(item, list) and len(item) == 2 and isinstance(item[1], list):
                        add_par([s for s in item[1] if isinstance(s, str)])
        nq = data_dir / _NQ_FILE
        if nq.is_file():
            for row in _iter_jsonl(nq):
                add_q(row.get("question"))
                for ctx in (row.get("ctxs") or [])[:1]:
                    if isinstance(ctx, dict) and isinstance(ctx.get("text"), str):
                        add_par(_split_sentences(ctx["text"]))
    if not paragraphs:
        from pydoc_data.topics import topics

        for name in sorted(topics):
            # Drop reST heading underlines, which are not prose.
            text = re.sub(r"^[=\-~*]{3,}$", "", topics[name], flags=re.MULTILINE)
            for block in re.split(r"\n\s*\n", text):
                # Skip code samples and grammar rules: indented or symbol-heavy blocks.
                if block.startswith(" ") or block.count("::=") or not re.search(r"[a-z]{3}", block):
                    continue
                add_par(_split_sentences(block))
    return tuple(paragraphs), tuple(questions)


def _chunk_paragraphs(paragraphs: tuple[tuple[str, ...], ...]) -> list[list[str]]:
    """Greedily pack sentences into MIN_WORDS..MAX_WORDS-word chunks (as sentence lists)."""
    chunks: list[list[str]] = []
    cur: list[str] = []
    cur_words = 0
    for par in paragraphs:
        for sent in par:
            words = sent.split()
            # Over-long sentences are cut into word windows so no chunk exceeds MAX_WORDS.
            pieces = [" ".join(words[i : i + MAX_WORDS]) for i in range(0, len(words), MAX_WORDS)]
            for piece in pieces:
                n = len(piece.split())
                if cur and cur_words + n > MAX_WORDS:
                    if cur_words >= MIN_WORDS:
                        chunks.append(cur)
                    cur, cur_words = [], 0
                cur.append(piece)
                cur_words += n
        # A paragraph boundary ends the chunk if it is long enough; short tails carry over.
        if cur_words >= MIN_WORDS:
            chunks.append(cur)
            cur, cur_words = [], 0
    return chunks


def _variant(base: list[str], rng: random.Random) -> str:
    """A deterministic rewrite of a chunk: shuffled sentences, one dropped or duplicated."""
    sents = list(base)
    rng.shuffle(sents)
    drop = rng.randrange(len(sents))
    kept_words = sum(len(s.split()) for j, s in enumerate(sents) if j != drop)
    if len(sents) >= 3 and kept_words >= MIN_WORDS and rng.random() < 0.5:
        del sents[drop]
    else:
        sents.insert(rng.randrange(len(sents) + 1), sents[rng.randrange(len(sents))])
    words = " ".join(sents).split()
    return " ".join(words[:MAX_WORDS])


def build_bench_corpus(n_chunks: int, seed: int = 0) -> list[tuple[str, str]]:
    """Build `n_chunks` (id, text) chunks of real English text, ~40-80 words each.

    Paragraphs come from the shared QA datasets (HotpotQA, 2WikiMultihopQA, NQ-open; see
    `shared_data_dir`), or from Python's `pydoc_data` topics when those are missing. They are
    deduplicated, packed into 40-80-word chunks at sentence boundaries and shuffled with `seed`.
    The real text yields roughly 15k chunks; when more are requested, the extra chunks are
    deterministic variants of real ones (sentence order shuffled, one sentence dropped or
    duplicated, capped at 80 words, all driven by a rng seeded from `seed` and the chunk number),
    which keeps realistic vocabulary and term-frequency statistics at any size.

    Args:
        n_chunks: How many chunks to return.
        seed: Controls the chunk order and the variants; the same arguments give the same output.

    Returns:
        A list of (id, text) pairs with unique ids `c0000000`, `c0000001`, ...
    """
    if n_chunks <= 0:
        return []
    paragraphs, _ = _load_sources(shared_data_dir())
    base = _chunk_paragraphs(paragraphs)
    if not base:
        raise RuntimeError("no benchmark text found (shared data and pydoc_data are both empty)")
    random.Random(seed).shuffle(base)
    out: list[tuple[str, str]] = []
    for i in range(n_chunks):
        if i < len(base):
            text = " ".join(base[i])
        else:
            rng = random.Random(seed * 1_000_003 + i)
            text = _variant(base[i % len(base)], rng)
        out.append((f"c{i:07d}", text))
    return out


def bench_queries(n: int, seed: int = 0) -> list[str]:
    """Return `n` real questions for retrieval benchmarks, deterministic for a seed.

    Questions come from the same datasets as `build_bench_corpus`; when there are not enough (or
    no shared data), sentences of the benchmark corpus fill the remainder.

    Args:
        n: How many queries to return.
        seed: Controls which questions are picked and their order.

    Returns:
        A list of `n` query strings.
    """
    if n <= 0:
        return []
    paragraphs, questions = _load_sources(shared_data_dir())
    pool = list(questions)
    rng = random.Random(seed)
    rng.shuffle(pool)
    if len(pool) < n:
        sentences = [s for par in paragraphs for s in par if len(s.split()) >= 5]
        rng.shuffle(sentences)
        pool.extend(sentences[: n - len(pool)])
    while len(pool) < n:  # tiny fallback corpora: repeat rather than fail
        pool.extend(pool[: n - len(pool)])
    return pool[:n]
