"""Text helpers every layer may use: the word tokenizer and a small in-memory BM25 ranking.

The tokenizer is the one the store's BM25 index uses (:mod:`ragkit.stores.bm25`, which keeps
its own module name as a re-export), so terms are the same everywhere: in the index, in CORAG's
coverage term and in RAPID's chunk retrieval. :func:`bm25_rank` scores a handful of texts in
memory with the index's formula (rank-bm25's ``BM25Okapi``) for algorithms that rank a
document's own chunks and have no store; it imports nothing but the standard library.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = [
    "STOPWORDS",
    "bm25_rank",
    "match_text",
    "title_key",
    "tokenize",
    "tokenize_many",
]

# Unicode-aware: `\w` matches letters and digits of any script, so non-English text still indexes.
_WORD_RE = re.compile(r"\w+")

#: Common English function words. They carry almost no retrieval signal, inflate posting lists
#: (the dominant query cost) and would mostly get the rank-bm25 epsilon idf floor anyway.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can cannot could couldn did didn do does doesn doing don
    down during each few for from further had hadn has hasn have haven having he her here
    hers herself him himself his how i if in into is isn it its itself just ll me more most
    mustn my myself no nor not now of off on once only or other ought our ours ourselves out
    over own re s same shan she should shouldn so some such t than that the their theirs
    them themselves then there these they this those through to too under until up ve very
    was wasn we were weren what when where which while who whom why will with won would
    wouldn you your yours yourself yourselves d m o y also however may might must shall upon
    via yet
    """.split()  # noqa: SIM905 - a word block is easier to review than 160 literals
)


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Split text into lowercase word tokens, optionally dropping English stopwords.

    Args:
        text: Any unicode text.
        stopwords: Drop the words in `STOPWORDS` (default). Pass False to keep every word.

    Returns:
        The tokens in text order, duplicates kept (term frequency matters for BM25).
    """
    words = _WORD_RE.findall(text.lower())
    if not stopwords:
        return words
    stop = STOPWORDS
    return [w for w in words if w not in stop]


_PARENTHETICAL = re.compile(r"\s*\([^)]*\)\s*$")
MIN_TITLE_CHARS = 4
"""Shorter titles are too ambiguous to count as a mention ("US", "Io")."""


def match_text(text: str) -> str:
    """The text's words (stopwords kept), accents dropped, space-padded.

    ``" key " in match_text(text)`` is then a whole-word, case- and accent-insensitive match:
    how a passage's title is found in another passage or in a question.
    """
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " " + " ".join(tokenize(text, stopwords=False)) + " "


def title_key(title: str | None) -> str | None:
    """A title as matched in text (:func:`match_text`), the suffix ``(2013 film)`` dropped.

    None for no title, or one under :data:`MIN_TITLE_CHARS` characters.
    """
    if not title:
        return None
    key = match_text(_PARENTHETICAL.sub("", title))
    return key if len(key.strip()) >= MIN_TITLE_CHARS else None


def tokenize_many(texts: Iterable[str], stopwords: bool = True) -> list[list[str]]:
    """Tokenize many texts with the same rules as `tokenize`.

    Args:
        texts: The texts to tokenize.
        stopwords: Drop the words in `STOPWORDS` (default).

    Returns:
        One token list per text, in input order.
    """
    findall = _WORD_RE.findall
    if not stopwords:
        return [findall(t.lower()) for t in texts]
    stop = STOPWORDS
    return [[w for w in findall(t.lower()) if w not in stop] for t in texts]


def bm25_rank(
    texts: Sequence[str],
    query: str,
    top_k: int,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    epsilon: float = 0.25,
) -> list[tuple[int, float]]:
    """The ``top_k`` texts that share a term with ``query``, best BM25 score first.

    Scores are those of :class:`ragkit.stores.bm25.BM25Index` over the same texts (rank-bm25's
    ``BM25Okapi`` with its idf floor ``epsilon * average_idf``); ties go to the lower index.

    Args:
        texts: The candidates (a document's chunks).
        query: Free text, tokenized like the texts.
        top_k: Most results.
        k1: Term-frequency saturation.
        b: Length normalisation.
        epsilon: Floor factor for negative idf.

    Returns:
        ``(index into texts, score)`` pairs; texts sharing no query term are left out.
    """
    docs = tokenize_many(texts)
    if top_k <= 0 or not docs:
        return []
    n = len(docs)
    avgdl = sum(map(len, docs)) / n or 1.0
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    idf = {t: math.log(n - c + 0.5) - math.log(c + 0.5) for t, c in df.items()}
    floor = epsilon * sum(idf.values()) / len(idf) if idf else 0.0
    idf = {t: (v if v >= 0 else floor) for t, v in idf.items()}
    terms = Counter(t for t in tokenize(query) if t in idf)
    scored: list[tuple[int, float]] = []
    for i, doc in enumerate(docs):
        tf = Counter(doc)
        norm = k1 * (1 - b + b * len(doc) / avgdl)
        score = sum(
            count * idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm)
            for t, count in terms.items()
            if tf[t]
        )
        if any(tf[t] for t in terms):
            scored.append((i, score))
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored[:top_k]
