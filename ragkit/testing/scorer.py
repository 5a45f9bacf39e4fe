"""A fixed relevance scorer for tests: scores passages by table or rule, records every call.

It derives from the project's scorer base (:class:`ragkit.models.scorers.RelevanceScorerBase`),
so it has exactly the behaviour of ``LLMRelevanceScorer`` / ``EmbeddingSimilarityScorer``:
``run(query, documents, top_k)`` returns copies most relevant first with ``score`` and
``meta["relevance"]`` set and the retriever's view kept in ``meta["retrieval_rank"]`` /
``meta["retrieval_score"]``; ``score(query, texts)`` is the batched call CORAG uses. No model is
loaded, so reorderers, selectors and pipelines can be tested in milliseconds, from YAML too
(its init parameters are JSON-basic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from haystack import component

from ragkit.errors import InvalidParameter
from ragkit.models.scorers import RelevanceScorerBase

__all__ = ["FixedRelevanceScorer", "FixedScorerError"]

_RULE_KEYS = {"contains", "query_contains", "score"}


class FixedScorerError(LookupError):
    """No table entry, rule or default gives a passage a score (a test must not guess)."""


def _check_rules(rules: list[dict[str, Any]]) -> None:
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise InvalidParameter(where, "expected a mapping with 'contains' and 'score'")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise InvalidParameter(
                f"{where}.{sorted(unknown)[0]}", f"unknown key; expected {_RULE_KEYS}"
            )
        if not isinstance(rule.get("contains", ""), str) or not isinstance(
            rule.get("query_contains", ""), str
        ):
            raise InvalidParameter(where, "'contains' and 'query_contains' must be strings")
        if "contains" not in rule and "query_contains" not in rule:
            raise InvalidParameter(where, "give 'contains' and/or 'query_contains'")
        score = rule.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidParameter(f"{where}.score", f"expected a number, got {score!r}")


@component
class FixedRelevanceScorer(RelevanceScorerBase):
    """Relevance from a table (exact passage text), then rules (substrings), then a default.

    A rule is ``{"contains": TEXT, "score": NUMBER}`` (the passage contains TEXT),
    ``{"query_contains": TEXT, "score": NUMBER}`` (the query does), or both (both must hold);
    the first matching rule wins. Without a table entry or a matching rule ``default_score`` is
    used; with none of these the call fails, naming the passage, so a test never passes on a
    silent fallback. ``calls`` holds each ``(query, texts)`` scored.

    ### Usage example
    ```python
    scorer = FixedRelevanceScorer(rules=[{"contains": "Paris", "score": 0.9}], default_score=0.1)
    scorer.run("capital of France?", docs)["documents"]  # Paris passages first
    ```
    """

    def __init__(
        self,
        table: dict[str, float] | None = None,
        rules: list[dict[str, Any]] | None = None,
        default_score: float | None = None,
        top_k: int | None = None,
    ) -> None:
        """Create the scorer.

        Args:
            table: Passage text -> score (exact match, checked first).
            rules: Ordered rules (see the class docstring).
            default_score: Score of a passage nothing else scores (None: such a passage fails).
            top_k: Documents returned by ``run`` (None: all), as on the project's scorers.
        """
        if top_k is not None and top_k < 1:
            raise InvalidParameter("top_k", f"must be >= 1 or None, got {top_k}")
        _check_rules(list(rules or []))
        self.table = {str(k): float(v) for k, v in (table or {}).items()}
        self.rules = [dict(r) for r in rules or []]
        self.default_score = default_score
        self.top_k = top_k
        self._fn: Callable[[str, str], float] | None = None
        self._warm = False
        self.warm_ups = 0
        self.calls: list[tuple[str, list[str]]] = []

    @classmethod
    def from_function(
        cls, fn: Callable[[str, str], float], top_k: int | None = None
    ) -> FixedRelevanceScorer:
        """A scorer whose score is ``fn(query, passage)`` (raise inside it to simulate errors)."""
        instance = cls(top_k=top_k)
        instance._fn = fn
        return instance

    def _loaded(self) -> bool:
        return self._warm

    def _load(self) -> None:
        self._warm = True
        self.warm_ups += 1

    def _unload(self) -> None:
        self._warm = False

    def _score_one(self, query: str, text: str) -> float:
        if self._fn is not None:
            return float(self._fn(query, text))
        if text in self.table:
            return self.table[text]
        for rule in self.rules:
            if rule.get("contains", "") in text and rule.get("query_contains", "") in query:
                return float(rule["score"])
        if self.default_score is not None:
            return float(self.default_score)
        snippet = " ".join(text.split())[:120]
        raise FixedScorerError(f"no fixed score for passage {snippet!r} (query {query!r})")

    def _score(self, query: str, texts: list[str]) -> list[float]:
        self.calls.append((query, list(texts)))
        return [self._score_one(query, t) for t in texts]
