"""The natural CPU pair (slow; needs the Qwen2.5-Coder chunk wheels): Qwen2.5-Coder-1.5B target,
0.5B drafter through llama.cpp. Their vocabularies must be accepted as one, and greedy
speculative output must equal the target's own greedy output."""

from __future__ import annotations

import pytest

from ragkit.decoding import ModelDrafter, NgramDrafter, SpeculativeDecoder
from ragkit.models.errors import ModelLoadError

pytestmark = pytest.mark.slow

PROMPT = [
    {
        "role": "user",
        "content": "The bridge at Harwick was built in 1843 by the engineer Ada Quill. "
        "Who built the bridge at Harwick? Answer in one sentence.",
    }
]


@pytest.fixture(scope="module")
def qwen_pair():
    pytest.importorskip("llama_cpp")
    from ragkit.models.llamacpp import LlamaCppLM

    try:
        target = LlamaCppLM.load("qwen2.5-coder-1.5b-instruct", n_ctx=2048, n_threads=2)
        draft = LlamaCppLM.load("qwen2.5-coder-0.5b-instruct", n_ctx=2048, n_threads=2)
    except ModelLoadError as err:
        pytest.skip(f"Qwen2.5-Coder GGUFs not installed: {err}")
    yield target, draft
    target.close()
    draft.close()


@pytest.mark.parametrize("kind", ["model", "ngram"])
def test_qwen_pair_greedy_is_token_identical(qwen_pair, kind: str) -> None:
    target, draft = qwen_pair
    ids = target.apply_chat_template(PROMPT)
    plain = target.generate(ids, max_new_tokens=24)
    drafter = ModelDrafter(draft, target=target) if kind == "model" else NgramDrafter()
    out = SpeculativeDecoder(target, drafter).generate(ids, max_new_tokens=24)
    assert out.result.token_ids == plain.token_ids
    assert out.stats.accepted > 0
