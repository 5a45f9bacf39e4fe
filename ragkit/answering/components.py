"""Components between retrieval and generation: fit passages into the model's context window.

The question is never cut: when question + passages would overflow the reader's context, the
lowest-ranked passages are dropped (the last kept one trimmed) and a warning says so.
"""

from __future__ import annotations

import logging
from typing import Any

from haystack import Document, component

from ragkit.errors import InvalidParameter, check_count
from ragkit.models.base import truncate_passages_to_fit
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

logger = logging.getLogger(__name__)


@component
class ContextFitter:
    """Keeps the best passages that fit the reader's context next to the question.

    Examples:
        Without a tokenizer a token counts as 3 characters. 50 tokens of room hold the
        question (2) and the first two passages (10 and 20); the third is cut to the 18 left
        and a warning says so:

        >>> import warnings
        >>> from haystack import Document
        >>> from ragkit import ContextFitter
        >>> fitter = ContextFitter(tokenizer=None, context_tokens=60, reserve_tokens=10)
        >>> docs = [Document(content=c * n) for c, n in (("a", 30), ("b", 60), ("c", 90))]
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     out = fitter.run(question="Why?", documents=docs)["documents"]
        >>> [len(d.content) for d in out], out[-1].meta["trimmed"]
        ([30, 60, 54], True)
        >>> print(caught[0].message)
        prompt exceeds the 50-token budget: of 3 passages kept 2 whole, trimmed 1, dropped 0
    """

    def __init__(
        self,
        tokenizer: str | None = DEFAULT_CAUSAL_MODEL,
        context_tokens: int = 8192,
        reserve_tokens: int = 512,
        max_passage_tokens: int | None = None,
    ) -> None:
        """Create a fitter.

        Args:
            tokenizer: the reader model (name, hub id, directory or GGUF) whose tokens count;
                None (for remote readers) estimates conservatively at 3 characters per token.
                Default: the registry's packaged causal LM.
            context_tokens: the reader's context window.
            reserve_tokens: room kept for the prompt template and the answer.
            max_passage_tokens: optional cap on passages in total, below the context limit
                (small readers answer better from fewer tokens).

        Raises:
            InvalidParameter: Naming the bad parameter.
        """
        check_count("context_tokens", context_tokens)
        check_count("reserve_tokens", reserve_tokens, minimum=0)
        if max_passage_tokens is not None:
            check_count("max_passage_tokens", max_passage_tokens)
        if context_tokens <= reserve_tokens:
            raise InvalidParameter(
                "reserve_tokens",
                f"must be smaller than context_tokens ({context_tokens}), got {reserve_tokens}",
            )
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.reserve_tokens = reserve_tokens
        self.max_passage_tokens = max_passage_tokens
        self._tok: Any = None

    def warm_up(self) -> None:
        """Load the tokenizer once."""
        if self._tok is None and self.tokenizer is not None:
            from ragkit.models.hf import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer)

    def _count(self, text: str) -> int:
        if self._tok is None:
            return -(-len(text) // 3)
        return len(self._tok.encode(text, add_special_tokens=False))

    def _trim(self, text: str, n: int) -> str:
        if self._tok is None:
            return text[: n * 3]
        ids = self._tok.encode(text, add_special_tokens=False)[:n]
        return self._tok.decode(ids)

    @component.output_types(documents=list[Document])
    def run(self, question: str, documents: list[Document]) -> dict[str, list[Document]]:
        """Return the documents that fit (best first), the last possibly trimmed."""
        self.warm_up()
        budget = self.context_tokens - self.reserve_tokens
        if self.max_passage_tokens is not None:
            budget = min(budget, self.max_passage_tokens + self._count(question))
        texts = truncate_passages_to_fit(
            question,
            [d.content or "" for d in documents],
            budget,
            count_tokens=self._count,
            trim=self._trim,
        )
        out = []
        for doc, text in zip(documents, texts, strict=False):
            if text != doc.content:
                doc = Document(
                    id=doc.id, content=text, meta={**doc.meta, "trimmed": True}, score=doc.score
                )
            out.append(doc)
        return {"documents": out}
