"""Haystack components over ragkit's model layer: a local chat generator and relevance scorers.

All init arguments are JSON-basic and stored as same-named attributes, so Haystack's default
``to_dict``/``from_dict`` (and pipeline YAML) work unchanged; models load in ``warm_up()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from haystack import Document, component

from ragkit.models.chat import ChatGeneratorBase
from ragkit.models.errors import ModelLoadError
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, DEFAULT_EMBEDDING_MODEL, resolve_model

if TYPE_CHECKING:
    from ragkit.models.causal_lm import CausalLM

__all__ = [
    "CrossEncoderScorer",
    "EmbeddingSimilarityScorer",
    "LLMRelevanceScorer",
    "LocalChatGenerator",
]


@component
class LocalChatGenerator(ChatGeneratorBase):
    """Chat generation with a local causal LM (packaged SmolLM2 by default), with streaming.

    ### Usage example
    ```python
    gen = LocalChatGenerator(generation_kwargs={"max_new_tokens": 64})
    gen.warm_up()
    reply = gen.run([ChatMessage.from_user("What is BM25?")])["replies"][0].text
    ```
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        generation_kwargs: dict[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """Store settings only; the model loads in :meth:`warm_up`.

        Args:
            model: Packaged name, hub id, local directory or ``.gguf`` file.
            device: ``auto``, ``cpu`` or ``cuda``.
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
            generation_kwargs: Defaults for ``max_new_tokens``, ``temperature``, ``top_p``,
                ``seed``, ``stop``.
            cache_dir: Where converted GGUF models are cached (default ``$RAGKIT_CACHE``).
        """
        self._init_generation(model, generation_kwargs)
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir

    def _load(self) -> CausalLM:
        """Load the model (converted GGUFs load in about a second after the first time)."""
        from ragkit.models.causal_lm import CausalLM

        return CausalLM.load(self.model, self.device, self.dtype, self.cache_dir)


def _with_scores(documents: list[Document], scores: Sequence[float]) -> list[Document]:
    """Copies of ``documents`` with ``meta["relevance"]``, most relevant first."""
    scored = [
        dataclasses.replace(doc, meta={**doc.meta, "relevance": float(score)})
        for doc, score in zip(documents, scores, strict=True)
    ]
    return sorted(scored, key=lambda d: d.meta["relevance"], reverse=True)


_JUDGE_SYSTEM = "You judge whether a passage answers a question. Reply with one word: yes or no."
_JUDGE_USER = (
    "Question: {question}\n\nPassage: {passage}\n\n"
    "Does the passage answer the question? Reply yes or no."
)


@component
class LLMRelevanceScorer:
    """Relevance = P("yes") from a causal LM's next-token logits over yes/no tokens.

    Works offline with the packaged SmolLM2; scores are comparable within one query.
    """

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL_MODEL,
        batch_size: int = 8,
        max_passage_tokens: int = 384,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | None = None,
    ) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Causal model name (must expose logits).
            batch_size: Prompts per forward pass.
            max_passage_tokens: Passages are cut to this many tokens to bound prompt length.
            device: ``auto``, ``cpu`` or ``cuda``.
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
            cache_dir: Converted GGUF cache root.
        """
        self.model = model
        self.batch_size = batch_size
        self.max_passage_tokens = max_passage_tokens
        self.device = device
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

    def warm_up(self) -> None:
        """Load the model and find the single-token spellings of yes/no."""
        from ragkit.models.base import require_capability

        if self._lm is None:
            from ragkit.models.causal_lm import CausalLM

            self._lm = CausalLM.load(self.model, self.device, self.dtype, self.cache_dir)
        require_capability(self._lm, "supports_logits", "LLM relevance scoring")
        if not self._yes:
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

    def close(self) -> None:
        """Release the model."""
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """P(yes) in [0, 1] for each text being relevant to ``query``."""
        self.warm_up()
        lm = self._lm
        assert lm is not None
        prompts = []
        for text in texts:
            ids = lm.encode(text or "")
            passage = lm.decode(ids[: self.max_passage_tokens])
            messages = [
                {"role": "system", "content": _JUDGE_SYSTEM},
                {"role": "user", "content": _JUDGE_USER.format(question=query, passage=passage)},
            ]
            prompts.append(lm.apply_chat_template(messages))
        candidates = self._yes + self._no
        rows = lm.next_token_logprobs(prompts, candidates, batch_size=self.batch_size)
        scores = []
        for row in rows:
            yes = math.fsum(math.exp(x) for x in row[: len(self._yes)])
            no = math.fsum(math.exp(x) for x in row[len(self._yes) :])
            scores.append(yes / (yes + no) if yes + no > 0 else 0.5)
        return scores

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document]) -> dict[str, list[Document]]:
        """Score and sort documents by ``meta["relevance"]`` (P("yes"))."""
        if not documents:
            return {"documents": []}
        return {
            "documents": _with_scores(
                documents, self.score(query, [d.content or "" for d in documents])
            )
        }


@component
class EmbeddingSimilarityScorer:
    """Relevance = cosine similarity of sentence embeddings (packaged MiniLM by default)."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDING_MODEL, device: str = "auto", batch_size: int = 32
    ) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Sentence-transformers model name, hub id or directory.
            device: ``auto``, ``cpu`` or ``cuda``.
            batch_size: Texts per encode batch.
        """
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._st: Any = None

    def warm_up(self) -> None:
        """Load the sentence-transformers model."""
        if self._st is not None:
            return
        from ragkit.models.device import resolve_device

        spec = resolve_model(self.model, kind="embedding")
        dev, _ = resolve_device(self.device)
        try:
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(spec.location, device=dev)
        except Exception as exc:
            raise ModelLoadError(f"cannot load embedding model {self.model!r}: {exc}") from exc

    def close(self) -> None:
        """Release the model."""
        self._st = None

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cosine similarity in [-1, 1] between ``query`` and each text."""
        self.warm_up()
        if not texts:
            return []
        q = self._st.encode([query], normalize_embeddings=True, convert_to_tensor=True)
        d = self._st.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_tensor=True,
        )
        return (d @ q[0]).tolist()

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document]) -> dict[str, list[Document]]:
        """Score and sort documents by ``meta["relevance"]`` (cosine similarity)."""
        if not documents:
            return {"documents": []}
        return {
            "documents": _with_scores(
                documents, self.score(query, [d.content or "" for d in documents])
            )
        }


@component
class CrossEncoderScorer:
    """Relevance from a sentence-transformers cross-encoder (when the user has one locally)."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 32) -> None:
        """Store settings; the model loads in :meth:`warm_up`.

        Args:
            model: Cross-encoder hub id or local directory (none ships offline).
            device: ``auto``, ``cpu`` or ``cuda``.
            batch_size: Pairs per forward pass.
        """
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._ce: Any = None

    def warm_up(self) -> None:
        """Load the cross-encoder; a missing model raises :class:`ModelLoadError`."""
        if self._ce is not None:
            return
        from ragkit.models.device import resolve_device

        spec = resolve_model(self.model, kind="cross_encoder")
        dev, _ = resolve_device(self.device)
        try:
            from sentence_transformers import CrossEncoder

            self._ce = CrossEncoder(spec.location, device=dev)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load cross-encoder {self.model!r} ({spec.source}): {exc}; no cross-encoder "
                "ships offline: pass a local directory, or use LLMRelevanceScorer / "
                "EmbeddingSimilarityScorer"
            ) from exc

    def close(self) -> None:
        """Release the model."""
        self._ce = None

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cross-encoder score for each (query, text) pair."""
        self.warm_up()
        if not texts:
            return []
        scores = self._ce.predict(
            [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document]) -> dict[str, list[Document]]:
        """Score and sort documents by ``meta["relevance"]``."""
        if not documents:
            return {"documents": []}
        return {
            "documents": _with_scores(
                documents, self.score(query, [d.content or "" for d in documents])
            )
        }
