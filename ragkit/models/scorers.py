"""Relevance scorers that behave like Haystack rankers: LLM yes/no, embedding cosine, cross-encoder.

All three share :class:`RelevanceScorerBase`: ``run(query, documents, top_k)`` scores every
document, writes the score to ``Document.score`` (as Haystack rankers do) and to
``meta["relevance"]``, keeps what the retriever said in ``meta["retrieval_rank"]`` (1-based
position in the input) and ``meta["retrieval_score"]``, and returns the documents most relevant
first. Keeping the retriever's view is what lets the :class:`ragkit.ordering.Reorderer` find hard
negatives (ranked high by the retriever, scored low here). ``score(query, texts)`` is the plain
batched call that other algorithms (CORAG chunk selection) use directly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from haystack import Document, component

from ragkit.errors import InvalidParameter, check_count, clip
from ragkit.models.errors import ModelLoadError
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, TORCH_EMBEDDING_MODEL, resolve_model
from ragkit.models.spec import ModelSpec

if TYPE_CHECKING:
    from ragkit.models.causal_lm import CausalLM

__all__ = [
    "RELEVANCE_KEY",
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "CrossEncoderScorer",
    "EmbeddingSimilarityScorer",
    "LLMRelevanceScorer",
    "RelevanceScorerBase",
]

RELEVANCE_KEY = "relevance"
RETRIEVAL_RANK_KEY = "retrieval_rank"
RETRIEVAL_SCORE_KEY = "retrieval_score"


def _check_top_k(top_k: int | None) -> None:
    """A count or None; a string or bool fails here, named, not as a TypeError mid-query."""
    if top_k is None:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidParameter("top_k", f"must be >= 1 or None, got {clip(top_k)}")


def with_relevance(documents: Sequence[Document], scores: Sequence[float]) -> list[Document]:
    """Copies of ``documents`` carrying ``scores`` (input order kept); the retriever's view is kept.

    ``meta["retrieval_rank"]``/``meta["retrieval_score"]`` are set only when absent, so a second
    scorer in a chain keeps the first retriever's ranking.
    """
    out = []
    for rank, (doc, score) in enumerate(zip(documents, scores, strict=True), start=1):
        meta = {**doc.meta, RELEVANCE_KEY: float(score)}
        meta.setdefault(RETRIEVAL_RANK_KEY, rank)
        meta.setdefault(RETRIEVAL_SCORE_KEY, doc.score)
        out.append(dataclasses.replace(doc, meta=meta, score=float(score)))
    return out


class RelevanceScorerBase:
    """Shared warm-up/run for relevance scorers; subclasses implement ``_load`` and ``_score``.

    Not a component by itself: each subclass is decorated with ``@component`` and inherits
    :meth:`run`, so every scorer has the same sockets (``query``, ``documents``, ``top_k``).
    """

    top_k: int | None

    def _set_common(
        self, model: str | dict[str, Any], device: str, batch_size: int, top_k: int | None
    ) -> None:
        """The settings every scorer has, checked once here."""
        _check_top_k(top_k)
        check_count("batch_size", batch_size)
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.top_k = top_k

    def _load(self) -> None:
        """Load the model (called once by :meth:`warm_up`)."""
        raise NotImplementedError

    def _loaded(self) -> bool:
        raise NotImplementedError

    def _unload(self) -> None:
        raise NotImplementedError

    def _score(self, query: str, texts: list[str]) -> list[float]:
        """Scores for non-empty ``texts`` (the model is loaded)."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load the model once."""
        if not self._loaded():
            self._load()

    def close(self) -> None:
        """Release the model's memory."""
        self._unload()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text for ``query`` (higher is more relevant), batched.

        Args:
            query: The question.
            texts: Passages, or concatenations of passages (CORAG states).

        Returns:
            Scores in the order of ``texts``; comparable within one query.
        """
        if not texts:
            return []
        self.warm_up()
        return [float(s) for s in self._score(query, [t or "" for t in texts])]

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Score documents; return them most relevant first with ``score`` = relevance.

        Args:
            query: The question.
            documents: Retrieved documents, best first (their order is kept as
                ``meta["retrieval_rank"]``).
            top_k: Keep only this many (default: the init ``top_k``; None keeps all).

        Returns:
            ``{"documents": [...]}`` sorted by ``score`` (also in ``meta["relevance"]``).
        """
        limit = self.top_k if top_k is None else top_k
        _check_top_k(limit)
        if not documents:
            return {"documents": []}
        scored = with_relevance(documents, self.score(query, [d.content or "" for d in documents]))
        scored.sort(key=lambda d: d.meta[RELEVANCE_KEY], reverse=True)
        return {"documents": scored[:limit] if limit is not None else scored}


_JUDGE_SYSTEM = "You judge whether a passage answers a question. Reply with one word: yes or no."
_JUDGE_USER = (
    "Question: {question}\n\nPassage: {passage}\n\n"
    "Does the passage answer the question? Reply yes or no."
)


@component
class LLMRelevanceScorer(RelevanceScorerBase):
    """Relevance = P("yes") in [0, 1] from a causal LM's next-token logits over yes/no tokens.

    Works offline with the packaged SmolLM2; scores are comparable within one query.
    """

    def __init__(
        self,
        model: str | ModelSpec | dict[str, Any] = DEFAULT_CAUSAL_MODEL,
        batch_size: int = 8,
        max_passage_tokens: int = 384,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | None = None,
        top_k: int | None = None,
    ) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Causal model name (must expose logits), loaded with transformers on
                ``device``/``dtype``; or a :class:`~ragkit.models.spec.ModelSpec` (mapping in
                YAML) that picks its backend. On llama.cpp the passages of one question share
                the prompt up to the passage, so that prefix is computed once per question.
            batch_size: Prompts per forward pass.
            max_passage_tokens: Passages are cut to this many tokens to bound prompt length.
            device: ``auto``, ``cpu`` or ``cuda``.
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
            cache_dir: Converted GGUF cache root.
            top_k: Documents returned by :meth:`run` (None: all).
        """
        if not isinstance(model, str):
            from ragkit.models.spec import resolve_spec

            model = resolve_spec(model, ModelSpec(), "model").model_dump()
        self._set_common(model, device, batch_size, top_k)
        self.max_passage_tokens = check_count("max_passage_tokens", max_passage_tokens)
        self.dtype = dtype
        self.cache_dir = cache_dir
        self._lm: CausalLM | None = None
        self._yes: list[int] = []
        self._no: list[int] = []

    @classmethod
    def from_model(cls, lm: CausalLM, **kwargs: Any) -> LLMRelevanceScorer:
        """Wrap an already-loaded model (shares weights with a generator)."""
        instance = cls(model=lm.name, **kwargs)
        instance._lm = lm
        return instance

    def _loaded(self) -> bool:
        return self._lm is not None and bool(self._yes)

    def _load(self) -> None:
        """Load the model and find the single-token spellings of yes/no."""
        from ragkit.models.base import require_capability

        if self._lm is None and isinstance(self.model, dict):
            self._lm = ModelSpec.model_validate(self.model).load()
        if self._lm is None:
            from ragkit.models.causal_lm import CausalLM

            self._lm = CausalLM.load(self.model, self.device, self.dtype, self.cache_dir)
        require_capability(self._lm, "supports_logits", "LLM relevance scoring")
        self._yes = self._single_tokens(["yes", "Yes", " yes", " Yes", "YES"])
        self._no = self._single_tokens(["no", "No", " no", " No", "NO"])
        if not self._yes or not self._no:
            raise ModelLoadError(
                f"model {self.model!r} has no single-token 'yes'/'no'; use another scorer"
            )

    def _single_tokens(self, words: list[str]) -> list[int]:
        assert self._lm is not None
        ids = {tuple(self._lm.encode(w)) for w in words}
        return sorted({t[0] for t in ids if len(t) == 1})

    def _unload(self) -> None:
        if self._lm is not None:
            self._lm.close()
            self._lm = None
        self._yes, self._no = [], []

    def _score(self, query: str, texts: list[str]) -> list[float]:
        lm = self._lm
        assert lm is not None
        prompts = []
        for text in texts:
            passage = lm.decode(lm.encode(text)[: self.max_passage_tokens])
            messages = [
                {"role": "system", "content": _JUDGE_SYSTEM},
                {"role": "user", "content": _JUDGE_USER.format(question=query, passage=passage)},
            ]
            prompts.append(lm.apply_chat_template(messages))
        rows = lm.next_token_logprobs(prompts, self._yes + self._no, batch_size=self.batch_size)
        scores = []
        for row in rows:
            yes = math.fsum(math.exp(x) for x in row[: len(self._yes)])
            no = math.fsum(math.exp(x) for x in row[len(self._yes) :])
            scores.append(yes / (yes + no) if yes + no > 0 else 0.5)
        return scores


class _SentenceTransformersScorer(RelevanceScorerBase):
    """Shared settings and model lifecycle of the two sentence-transformers scorers.

    Subclasses name the registry kind and build the model object from a resolved location; the
    loaded model lives in ``self._model``.
    """

    _kind: str = "embedding"

    def __init__(
        self, model: str, device: str = "auto", batch_size: int = 32, top_k: int | None = None
    ) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Model name known to the registry, hub id or local directory.
            device: ``auto``, ``cpu`` or ``cuda``.
            batch_size: Texts (or pairs) per forward pass.
            top_k: Documents returned by :meth:`run` (None: all).
        """
        self._set_common(model, device, batch_size, top_k)
        self._model: Any = None

    def _loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> None:
        from ragkit.models.device import resolve_device

        spec = resolve_model(self.model, kind=self._kind)
        dev, _ = resolve_device(self.device)
        try:
            self._model = self._build(spec.location, dev)
        except Exception as exc:
            raise ModelLoadError(self._load_error(spec, exc)) from exc

    def _build(self, location: str, device: str) -> Any:
        raise NotImplementedError

    def _load_error(self, spec: Any, exc: Exception) -> str:
        raise NotImplementedError

    def _unload(self) -> None:
        self._model = None


@component
class EmbeddingSimilarityScorer(_SentenceTransformersScorer):
    """Relevance = cosine similarity in [-1, 1] of sentence embeddings (packaged MiniLM)."""

    _kind = "embedding"

    def __init__(
        self,
        model: str = TORCH_EMBEDDING_MODEL,
        device: str = "auto",
        batch_size: int = 32,
        top_k: int | None = None,
    ) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Sentence-transformers model name, hub id or directory.
            device: ``auto``, ``cpu`` or ``cuda``.
            batch_size: Texts per encode batch.
            top_k: Documents returned by :meth:`run` (None: all).
        """
        # explicit base call: @component rebuilds the class, which breaks zero-argument super()
        _SentenceTransformersScorer.__init__(
            self, model, device=device, batch_size=batch_size, top_k=top_k
        )

    def _build(self, location: str, device: str) -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(location, device=device)

    def _load_error(self, spec: Any, exc: Exception) -> str:
        return f"cannot load embedding model {self.model!r}: {exc}"

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit-length embeddings as a float32 numpy array (rows follow ``texts``).

        Used by CORAG's default utility, which caches chunk embeddings and then scores
        thousands of combinations without touching the model.
        """
        self.warm_up()
        return self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def _score(self, query: str, texts: list[str]) -> list[float]:
        q = self._model.encode([query], normalize_embeddings=True, convert_to_tensor=True)
        d = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_tensor=True
        )
        return (d @ q[0]).tolist()


@component
class CrossEncoderScorer(_SentenceTransformersScorer):
    """Relevance from a sentence-transformers cross-encoder (when the user has one locally)."""

    _kind = "cross_encoder"

    # __init__ is the base's (model, device, batch_size, top_k): a model is required, as no
    # cross-encoder ships offline.

    def _build(self, location: str, device: str) -> Any:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(location, device=device)

    def _load_error(self, spec: Any, exc: Exception) -> str:
        return (
            f"cannot load cross-encoder {self.model!r} ({spec.source}): {exc}; no cross-encoder "
            "ships offline: pass a local directory, or use LLMRelevanceScorer / "
            "EmbeddingSimilarityScorer"
        )

    def _score(self, query: str, texts: list[str]) -> list[float]:
        scores = self._model.predict(
            [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]
