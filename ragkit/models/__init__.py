"""The model layer: the one place ragkit touches torch/transformers/sentence-transformers.

Names are imported lazily so ``import ragkit.models`` (and ``ragkit --help``) stays fast; torch,
transformers and haystack load only when a class that needs them is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragkit._lazy import lazy_exports

if TYPE_CHECKING:
    from ragkit.models.base import (
        GenerationResult,
        LanguageModel,
        require_capability,
        truncate_passages_to_fit,
    )
    from ragkit.models.causal_lm import CausalLM, PrefixCache
    from ragkit.models.chat import ChatGeneratorBase
    from ragkit.models.components import (
        CrossEncoderScorer,
        EmbeddingSimilarityScorer,
        LLMRelevanceScorer,
        LocalChatGenerator,
    )
    from ragkit.models.device import resolve_device
    from ragkit.models.driver import DecoderLM, Decoding, TextStream
    from ragkit.models.errors import (
        CapabilityError,
        ContextLengthError,
        ModelLoadError,
        PrefixCacheError,
        UnknownModelError,
    )
    from ragkit.models.gguf_cache import default_cache_dir, ensure_converted
    from ragkit.models.hf import load_tokenizer
    from ragkit.models.llamacpp import LlamaCppLM, LlamaPrefixState
    from ragkit.models.llamacpp_components import LlamaCppChatGenerator
    from ragkit.models.registry import (
        PACKAGED_MODELS,
        PackagedModel,
        ResolvedModel,
        known_model_names,
        register_packaged_model,
        resolve_model,
    )
    from ragkit.models.spec import ModelSpec

_EXPORTS = {
    "ChatGeneratorBase": "chat",
    "DecoderLM": "driver",
    "Decoding": "driver",
    "TextStream": "driver",
    "load_tokenizer": "hf",
    "LlamaCppLM": "llamacpp",
    "LlamaPrefixState": "llamacpp",
    "LlamaCppChatGenerator": "llamacpp_components",
    "GenerationResult": "base",
    "LanguageModel": "base",
    "require_capability": "base",
    "truncate_passages_to_fit": "base",
    "CausalLM": "causal_lm",
    "PrefixCache": "causal_lm",
    "CrossEncoderScorer": "components",
    "EmbeddingSimilarityScorer": "components",
    "LLMRelevanceScorer": "components",
    "LocalChatGenerator": "components",
    "resolve_device": "device",
    "CapabilityError": "errors",
    "ContextLengthError": "errors",
    "ModelLoadError": "errors",
    "PrefixCacheError": "errors",
    "UnknownModelError": "errors",
    "default_cache_dir": "gguf_cache",
    "ensure_converted": "gguf_cache",
    "PACKAGED_MODELS": "registry",
    "ModelSpec": "spec",
    "PackagedModel": "registry",
    "ResolvedModel": "registry",
    "known_model_names": "registry",
    "register_packaged_model": "registry",
    "resolve_model": "registry",
}

__all__ = [
    "CapabilityError",
    "CausalLM",
    "ChatGeneratorBase",
    "ContextLengthError",
    "CrossEncoderScorer",
    "DecoderLM",
    "Decoding",
    "EmbeddingSimilarityScorer",
    "GenerationResult",
    "LLMRelevanceScorer",
    "LanguageModel",
    "LlamaCppChatGenerator",
    "LlamaCppLM",
    "LlamaPrefixState",
    "LocalChatGenerator",
    "ModelLoadError",
    "ModelSpec",
    "PACKAGED_MODELS",
    "PackagedModel",
    "PrefixCache",
    "PrefixCacheError",
    "ResolvedModel",
    "TextStream",
    "UnknownModelError",
    "default_cache_dir",
    "ensure_converted",
    "known_model_names",
    "load_tokenizer",
    "register_packaged_model",
    "require_capability",
    "resolve_device",
    "resolve_model",
    "truncate_passages_to_fit",
]
"""Exactly the names of ``_EXPORTS`` (tests/models/test_public_api.py checks both)."""


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
