"""Answer and retrieval metrics for RAG evaluation (SQuAD-style, FlashRAG-compatible).

Every answer metric takes several gold answers and returns the best score over them, because QA
datasets list aliases ("USA", "United States") and a prediction matching any one is correct.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = [
    "accuracy",
    "answer_metrics",
    "exact_match",
    "f1",
    "normalize_answer",
    "recall_at_k",
    "rouge_l",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
# FlashRAG's rule: token overlap with a yes/no answer is meaningless ("no" vs "no idea"), so a
# mismatch on these special answers scores 0 instead of partial credit.
_SPECIAL = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """Normalize like the official SQuAD script so scores are comparable with published numbers.

    Lowercases, drops ASCII punctuation, removes the articles a/an/the and collapses whitespace.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    """Accept a single gold string as a one-element list, a common slip that would iterate chars."""
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0.

    Args:
        prediction: The model's answer.
        golds: One or more reference answers.

    Returns:
        1.0 or 0.0 (0.0 when there are no golds).
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(golds)))


def _f1_single(prediction: str, gold: str) -> float:
    """Token-overlap F1 against one gold, with FlashRAG's yes/no/noanswer rule."""
    pred = normalize_answer(prediction)
    ref = normalize_answer(gold)
    if (pred in _SPECIAL or ref in _SPECIAL) and pred != ref:
        return 0.0
    pred_tokens = pred.split()
    ref_tokens = ref.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: str | Iterable[str]) -> float:
    """Best token-level F1 over golds; partial credit for long or partly right answers.

    If the normalized prediction or gold is yes/no/noanswer and they differ, F1 is 0 (FlashRAG),
    so "no, it is not" does not earn credit against "yes" through shared tokens.

    Args:
        prediction: The model's answer.
        golds: One or more reference answers.

    Returns:
        F1 in [0, 1] (0.0 when there are no golds).
    """
    return max((_f1_single(prediction, g) for g in _golds(golds)), default=0.0)


def accuracy(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 if any normalized gold is a substring of the normalized prediction (answer containment).

    Generative models answer in sentences; containment credits "It was Paris." for "Paris", as
    FlashRAG's `acc` does. Golds that normalize to the empty string are ignored, since the empty
    string is contained in everything.

    Args:
        prediction: The model's answer.
        golds: One or more reference answers.

    Returns:
        1.0 or 0.0.
    """
    pred = normalize_answer(prediction)
    for gold in _golds(golds):
        ref = normalize_answer(gold)
        if ref and ref in pred:
            return 1.0
    return 0.0


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, O(len(a)*len(b)) time and O(len(b)) memory."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def _rouge_l_single(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure (beta=1) between normalized token sequences."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision = lcs / len(pred)
    recall = lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, golds: str | Iterable[str]) -> float:
    """Best ROUGE-L F-measure over golds; rewards in-order overlap for free-form answers.

    Tokens are SQuAD-normalized words (no stemming), and the F-measure uses beta=1.

    Args:
        prediction: The model's answer.
        golds: One or more reference answers.

    Returns:
        ROUGE-L F1 in [0, 1] (0.0 when there are no golds).
    """
    return max((_rouge_l_single(prediction, g) for g in _golds(golds)), default=0.0)


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    """Fraction of gold passages among the first k retrieved ids; the retriever's share of the job.

    Duplicated retrieved ids count once. Recall is undefined without gold passages, so that case
    raises instead of returning a number that would silently skew an average.

    Args:
        retrieved_ids: Passage ids in rank order.
        gold_ids: Ids of the passages that support the answer.
        k: Cut-off rank, at least 1.

    Returns:
        Recall in [0, 1].

    Raises:
        ValueError: If k < 1 or gold_ids is empty.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gold = set(gold_ids)
    if not gold:
        raise ValueError("recall@k is undefined without gold passage ids")
    return len(gold.intersection(retrieved_ids[:k])) / len(gold)


def answer_metrics(prediction: str, golds: str | Iterable[str]) -> dict[str, float]:
    """All answer metrics at once, keyed as they appear in result records and summaries."""
    golds = _golds(golds)
    return {
        "em": exact_match(prediction, golds),
        "f1": f1(prediction, golds),
        "accuracy": accuracy(prediction, golds),
        "rouge_l": rouge_l(prediction, golds),
    }
