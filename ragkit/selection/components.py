"""Haystack wrapper for CORAG chunk selection: the best ordered chunk combination within a budget.

Costs are counted with the generator's own tokenizer (the one that will read the prompt). The
default scorer is :class:`ragkit.selection.utility.CombinationUtility` over MiniLM embeddings
(cached per chunk text, so a state costs microseconds); ``scorer: llm`` (yes/no logits of a
causal LM) and ``scorer: cross_encoder`` score each concatenated state with a model, batched per
expansion, which pays off on a GPU or with a server.

Bad input, decided here: a budget smaller than every chunk gives the best single chunk trimmed to
the budget (``on_tiny_budget: trim``, with a warning) or no passages (``on_tiny_budget: empty``,
with a warning); zero candidates give zero passages; duplicate chunks (same text) are searched
once; a failing scorer is logged and the selection falls back to filling the budget in retriever
order.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

from haystack import Document, component

from ragkit.errors import InvalidParameter, check_count
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL
from ragkit.selection.agent import rule_config
from ragkit.selection.mcts import Selection, greedy_fill, mcts_select
from ragkit.selection.settings import (
    MCTSSettings,
    ScorerSettings,
    UtilitySettings,
    upgrade_selector,
)
from ragkit.settings import coerce

__all__ = ["ChunkSelector", "MCTSSettings", "ScorerSettings", "UtilitySettings"]

logger = logging.getLogger(__name__)

_EMBED_CACHE_SIZE = 20_000
_SEPARATOR = "\n\n"


class _ModelStateScorer:
    """Scores states by a relevance model on the concatenated chunks (one call per expansion)."""

    order_sensitive = True

    def __init__(self, model: Any, query: str, texts: Sequence[str]) -> None:
        self.model = model
        self.query = query
        self.texts = list(texts)

    def score_states(self, states: Sequence[tuple[int, ...]]) -> list[float]:
        joined = [_SEPARATOR.join(self.texts[i] for i in state) for state in states]
        return self.model.score(self.query, joined)


@component
class ChunkSelector:
    """Picks which retrieved chunks (and in what order) fill a token budget, by CORAG's MCTS.

    Examples:
        Without a tokenizer a token counts as 3 characters; the default state score embeds
        the chunks with the packaged MiniLM. 50 tokens hold two of these three chunks (about
        23 tokens each): the two about Etna.

        >>> from haystack import Document
        >>> from ragkit import ChunkSelector
        >>> docs = [
        ...     Document(content="Etna is an active volcano on the east coast of Sicily."),
        ...     Document(content="Jupiter is the largest planet of the solar system."),
        ...     Document(content="Etna erupts often; lava from it has buried whole villages."),
        ... ]
        >>> selector = ChunkSelector(budget=50, tokenizer=None, search={"iterations": 10})
        >>> question = "Where is the volcano Etna and how often does it erupt?"
        >>> out = selector.run(query=question, documents=docs)
        >>> sorted(out["shaping"]["selected"]), out["shaping"]["tokens"] <= 50
        ([1, 3], True)

        A call's ``budget`` overrides the init one:

        >>> len(selector.run(query=question, documents=docs, budget=25)["documents"])
        1
    """

    def __init__(
        self,
        budget: int = 1024,
        tokenizer: str | None = DEFAULT_CAUSAL_MODEL,
        candidates: int = 30,
        search: MCTSSettings | dict[str, Any] | None = None,
        utility: UtilitySettings | dict[str, Any] | None = None,
        scorer: ScorerSettings | dict[str, Any] | None = None,
        chunk_overhead_tokens: int = 4,
        on_tiny_budget: Literal["trim", "empty"] = "trim",
    ) -> None:
        """Create a selector; models load in :meth:`warm_up`.

        Args:
            budget: Token budget B for the selected passages (prompt overhead included); a
                call's ``budget`` input overrides it.
            tokenizer: The generator's model (name, hub id, directory or GGUF) whose tokens
                count against ``budget``; None estimates 3 characters per token. Default: the
                registry's packaged causal LM.
            candidates: How many of the incoming (best first) documents are searched.
            search: The MCTS search (:class:`~ragkit.selection.settings.MCTSSettings`: ``c``,
                ``lam``, ``iterations``, ``agent``, ``backprop``, ``pick``, ``normalize``).
            utility: Weights of the default state score
                (:class:`~ragkit.selection.settings.UtilitySettings`).
            scorer: What scores a state and with which model
                (:class:`~ragkit.selection.settings.ScorerSettings`: ``kind``, ``model``,
                ``device``, ``reuse_embeddings``).
            chunk_overhead_tokens: Prompt tokens each passage adds besides its text (``[n] ``
                and a newline in the shipped prompt).
            on_tiny_budget: When no chunk fits: ``trim`` the best chunk to the budget, or
                return ``empty``.

        Raises:
            InvalidParameter: Naming the bad parameter or key (``search.lam``).
        """
        check_count("budget", budget)
        check_count("candidates", candidates)
        check_count("chunk_overhead_tokens", chunk_overhead_tokens, minimum=0)
        if on_tiny_budget not in ("trim", "empty"):
            raise InvalidParameter(
                "on_tiny_budget", f"must be 'trim' or 'empty', got {on_tiny_budget!r}"
            )
        self.budget = budget
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.search = coerce(MCTSSettings, search, "search")
        self.utility = coerce(UtilitySettings, utility, "utility")
        self.scorer = coerce(ScorerSettings, scorer, "scorer")
        self.chunk_overhead_tokens = chunk_overhead_tokens
        self.on_tiny_budget = on_tiny_budget
        self._tok: Any = None
        self._model: Any = None
        self._embeddings: OrderedDict[str, Any] = OrderedDict()

    @classmethod
    def upgrade_init_parameters(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Init parameters with the flat ones of the release before moved to their nested keys."""
        return upgrade_selector(params)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkSelector:
        """Deserialize; flat parameters of the release before load with a deprecation warning."""
        from haystack.core.serialization import default_from_dict

        params = cls.upgrade_init_parameters(data.get("init_parameters") or {})
        return default_from_dict(cls, {**data, "init_parameters": params})

    def warm_up(self) -> None:
        """Load the tokenizer and the scorer model."""
        if self._tok is None and self.tokenizer is not None:
            from ragkit.models.hf import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer)
        if self._model is None:
            from ragkit.models import scorers

            spec = self.scorer
            kwargs = {"model": spec.model} if spec.model else {}
            if spec.kind in ("utility", "embedding"):
                self._model = scorers.EmbeddingSimilarityScorer(device=spec.device, **kwargs)
            elif spec.kind == "llm":
                self._model = scorers.LLMRelevanceScorer(device=spec.device, **kwargs)
            else:
                self._model = scorers.CrossEncoderScorer(model=str(spec.model), device=spec.device)
            self._model.warm_up()

    def close(self) -> None:
        """Release the scorer model and the embedding cache."""
        if self._model is not None:
            self._model.close()
            self._model = None
        self._embeddings.clear()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for the generator (3 characters per token without a tokenizer)."""
        if self._tok is None:
            return -(-len(text) // 3)
        return len(self._tok.encode(text, add_special_tokens=False))

    def _trim(self, text: str, n: int) -> str:
        if n <= 0:
            return ""
        if self._tok is None:
            return text[: n * 3]
        return self._tok.decode(self._tok.encode(text, add_special_tokens=False)[:n])

    def _embed(self, texts: list[str]) -> Any:
        """Embeddings with a per-text LRU cache (re-asked questions over one store reuse them)."""
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self._embeddings))
        if missing:
            for text, vec in zip(missing, self._model.embed(missing), strict=True):
                self._embeddings[text] = vec
            while len(self._embeddings) > _EMBED_CACHE_SIZE:
                self._embeddings.popitem(last=False)
        for t in texts:
            self._embeddings.move_to_end(t)
        return np.stack([self._embeddings[t] for t in texts])

    def _state_scorer(
        self,
        query: str,
        texts: list[str],
        given: list[Any] | None = None,
        query_embedding: list[float] | None = None,
        titles: list[str | None] | None = None,
    ) -> Any:
        if self.scorer.kind == "utility":
            import numpy as np

            from ragkit.selection.utility import CombinationUtility

            if not self.scorer.reuse_embeddings or given is None:
                given, query_embedding = [None] * len(texts), None
            # embed only what the pipeline has not embedded already (cached per text)
            todo = [query] if query_embedding is None else []
            todo += [t for t, g in zip(texts, given, strict=True) if g is None]
            fresh = iter(self._embed(todo) if todo else [])
            vecs = [np.asarray(query_embedding if query_embedding is not None else next(fresh))]
            vecs += [np.asarray(g) if g is not None else next(fresh) for g in given]
            vecs = [v / max(float(np.linalg.norm(v)), 1e-12) for v in vecs]
            return CombinationUtility(
                vecs[0],
                np.stack(vecs[1:]),
                query,
                texts,
                redundancy=self.utility.redundancy,
                margin=self.utility.similarity_margin,
                coverage=self.utility.coverage,
                retrieval_weight=self.utility.retrieval_weight,
                titles=titles,
                link=self.utility.link,
            )
        return _ModelStateScorer(self._model, query, texts)

    @component.output_types(documents=list[Document], shaping=dict[str, Any])
    def run(
        self,
        query: str,
        documents: list[Document],
        query_embedding: list[float] | None = None,
        budget: int | None = None,
    ) -> dict[str, Any]:
        """Select and order chunks for ``query`` within the token budget.

        Args:
            query: The question.
            documents: Retrieved documents, best first.
            query_embedding: The query's embedding when the pipeline already computed it (same
                model as the scorer), so the default utility does not embed it again.
            budget: This call's token budget (default: the init ``budget``).

        Returns:
            ``documents``: the selected chunks in the chosen order; ``shaping``: budget, tokens
            used, the retriever ranks chosen, the per-query settings, scorer calls, cache hits,
            search time and any fallback.

        Raises:
            InvalidParameter: ``budget`` is not an integer >= 1.
        """
        budget = self.budget if budget is None else check_count("budget", budget)
        self.warm_up()
        cands: list[tuple[int, Document]] = []
        seen: set[str] = set()
        for rank, doc in enumerate(documents[: self.candidates], start=1):
            key = " ".join((doc.content or "").split())
            if key and key not in seen:
                seen.add(key)
                cands.append((rank, doc))
        base = self.search.config()
        config, label = (
            rule_config(query, base) if self.search.agent == "rule" else (base, "static")
        )
        report: dict[str, Any] = {
            "component": "ChunkSelector",
            "budget": budget,
            "candidates": len(cands),
            "duplicates": min(len(documents), self.candidates) - len(cands),
            "question_type": label,
            "config": {"c": config.c, "lam": config.lam, "iterations": config.iterations},
            "fallback": None,
            "trimmed": False,
        }
        if not cands:
            report.update(selected=[], tokens=0, states_scored=0, seconds=0.0)
            return {"documents": [], "shaping": report}
        texts = [d.content or "" for _, d in cands]
        costs = [self.count_tokens(t) + self.chunk_overhead_tokens for t in texts]
        started = time.perf_counter()
        state_scorer = None
        try:
            given = [d.embedding for _, d in cands]
            titles = [d.meta.get("title") for _, d in cands]
            state_scorer = self._state_scorer(query, texts, given, query_embedding, titles)
            selection = mcts_select(costs, budget, state_scorer, config)
        except Exception as exc:  # noqa: BLE001 - any scorer failure: keep answering, say so
            logger.warning(
                "chunk selection scorer failed (%s: %s); falling back to retriever order",
                type(exc).__name__,
                exc,
            )
            chosen = greedy_fill(costs, budget, range(len(cands)))
            selection = Selection(chosen, math.nan, sum(costs[i] for i in chosen))
            report["fallback"] = f"retriever_scores ({type(exc).__name__}: {exc})"
        seconds = time.perf_counter() - started
        chosen_docs = [cands[i][1] for i in selection.chunks]
        tokens = selection.cost
        if not chosen_docs:
            chosen_docs, tokens = self._tiny_budget(cands, costs, state_scorer, report, budget)
        report.update(
            selected=[cands[i][0] for i in selection.chunks] or report.get("selected", []),
            tokens=tokens,
            score=None if math.isnan(selection.score) else selection.score,
            states_scored=selection.states_scored,
            cache_hits=selection.cache_hits,
            scorer_calls=selection.scorer_calls,
            iterations_run=selection.iterations,
            seconds=seconds,
        )
        return {"documents": chosen_docs, "shaping": report}

    def _tiny_budget(
        self,
        cands: list[tuple[int, Document]],
        costs: list[int],
        state_scorer: Any,
        report: dict[str, Any],
        budget: int,
    ) -> tuple[list[Document], int]:
        """No chunk fits: the best one trimmed to the budget, or nothing (both warned)."""
        smallest = min(costs)
        if self.on_tiny_budget == "empty":
            logger.warning(
                "token budget %d is smaller than every chunk (smallest %d tokens); no passages",
                budget,
                smallest,
            )
            return [], 0
        best = 0  # retriever order when the scorer is unavailable
        if state_scorer is not None and report["fallback"] is None:
            try:
                singles = list(state_scorer.score_states([(i,) for i in range(len(cands))]))
                best = max(range(len(cands)), key=lambda i: (singles[i], -i))
            except Exception as exc:  # noqa: BLE001 - same fallback as the search
                logger.warning("scorer failed on single chunks (%s); using retriever order", exc)
        room = budget - self.chunk_overhead_tokens
        text = self._trim(cands[best][1].content or "", room)
        while text and self.count_tokens(text) > room:  # re-tokenizing a cut can add a token
            room -= 1
            text = self._trim(text, room)
        if not text:
            logger.warning("token budget %d leaves no room for any passage text", budget)
            return [], 0
        logger.warning(
            "token budget %d is smaller than every chunk (smallest %d tokens); passing the best "
            "chunk trimmed to the budget",
            budget,
            smallest,
        )
        doc = cands[best][1]
        trimmed = Document(
            id=doc.id, content=text, meta={**doc.meta, "trimmed": True}, score=doc.score
        )
        report["trimmed"] = True
        report["selected"] = [cands[best][0]]
        return [trimmed], self.count_tokens(text) + self.chunk_overhead_tokens
