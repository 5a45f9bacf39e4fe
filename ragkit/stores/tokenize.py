"""Fast, dependency-free word tokenizer shared by the BM25 index, its benchmark and its tests.

Keeping one tokenizer in one place is what makes BM25 scores reproducible: the index, the oracle
comparison against rank-bm25 and the benchmark all see exactly the same terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["STOPWORDS", "tokenize", "tokenize_many"]

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
