"""Haystack components over ragkit's model layer: a local chat generator (scorers: ``scorers.py``).

All init arguments are JSON-basic and stored as same-named attributes, so Haystack's default
``to_dict``/``from_dict`` (and pipeline YAML) work unchanged; models load in ``warm_up()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haystack import component

from ragkit.models.chat import ChatGeneratorBase
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

# the relevance scorers live in ragkit.models.scorers; this import keeps the old path working
from ragkit.models.scorers import (  # noqa: F401
    CrossEncoderScorer,
    EmbeddingSimilarityScorer,
    LLMRelevanceScorer,
)

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
