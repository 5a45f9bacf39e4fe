"""Speculative decoding (RAPID): a drafter proposes, the target verifies a block in one call.

Pure numpy over the :class:`~ragkit.models.driver.DecoderLM` token protocol; neither torch nor
llama_cpp is imported here (backends are passed in already loaded).
"""

from ragkit.decoding.drafters import FallbackDrafter, ModelDrafter, NgramDrafter
from ragkit.decoding.policy import AdaptiveGamma
from ragkit.decoding.speculative import (
    Draft,
    Drafter,
    SpeculativeConfig,
    SpeculativeDecoder,
    SpeculativeResult,
    SpeculativeStats,
    check_same_vocabulary,
    knowledge_transfer,
    residual_distribution,
    verify,
)
from ragkit.decoding.tree import (
    NgramTreeDrafter,
    TopKTreeDrafter,
    TreeDraft,
    TreeSpeculativeDecoder,
)

__all__ = [
    "AdaptiveGamma",
    "Draft",
    "Drafter",
    "FallbackDrafter",
    "ModelDrafter",
    "NgramDrafter",
    "NgramTreeDrafter",
    "SpeculativeConfig",
    "SpeculativeDecoder",
    "SpeculativeResult",
    "SpeculativeStats",
    "TopKTreeDrafter",
    "TreeDraft",
    "TreeSpeculativeDecoder",
    "check_same_vocabulary",
    "knowledge_transfer",
    "residual_distribution",
    "verify",
]
