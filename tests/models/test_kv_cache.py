"""The pre-allocated static KV cache (the CUDA default) against the growable one, on SmolLM2.

The static cache is what CUDA graphs and ``torch.compile`` need; on a CPU it is exercised here
so that the GPU path's logic (in-place slot writes, rollback by moving the write position,
saved prefixes copied into slots) is proved where CI runs. The ``gpu`` tests at the end repeat
the exactness checks on CUDA in bf16 with the compiled step.
"""

from __future__ import annotations

import pytest

from ragkit.models.causal_lm import CausalLM
from ragkit.models.errors import ModelLoadError
from ragkit.models.kv_cache import resolve_kv_cache

SLOTS = 512
N = 12


def _twin(lm: CausalLM, **kwargs) -> CausalLM:
    """Another CausalLM over the same loaded weights with other cache settings."""
    return CausalLM(
        lm.model,
        lm.tokenizer,
        name=lm.name,
        device=lm.device,
        fingerprint=lm.fingerprint,
        spec=lm.spec,
        **kwargs,
    )


@pytest.fixture(scope="module")
def static_lm(lm: CausalLM) -> CausalLM:
    return _twin(lm, kv_cache="static", max_cache_tokens=SLOTS)


def test_auto_is_static_on_cuda_only_and_bad_settings_are_refused(lm: CausalLM) -> None:
    assert resolve_kv_cache("auto", "cpu") == "dynamic"
    assert resolve_kv_cache("auto", "cuda:0") == "static"
    assert resolve_kv_cache("Static", "cpu") == "static"
    assert lm.kv_cache == "dynamic" and lm.cache_capacity is None
    with pytest.raises(ModelLoadError, match="unknown kv_cache 'paged'"):
        _twin(lm, kv_cache="paged")
    with pytest.raises(ModelLoadError, match="compile_step needs .*kv_cache: static"):
        _twin(lm, kv_cache="dynamic", compile_step=True)
    with pytest.raises(ModelLoadError, match="max_cache_tokens must be >= 1"):
        _twin(lm, kv_cache="static", max_cache_tokens=0)


def test_attention_runs_through_sdpa(lm: CausalLM) -> None:
    assert lm.model.config._attn_implementation == "sdpa"


def test_static_cache_greedy_equals_the_dynamic_cache(
    lm: CausalLM, static_lm: CausalLM, chat_ids: list[int]
) -> None:
    from transformers import StaticCache

    plain = lm.generate(chat_ids, max_new_tokens=N)
    with static_lm.inference():
        static_lm.eval_last(chat_ids)
        assert isinstance(static_lm._cache, StaticCache)
        slots = static_lm._cache.layers[0].keys
        assert slots.shape[-2] == SLOTS
    static_lm.reset()
    for _ in range(2):  # the second call reuses the same slots (same tensor, rewound)
        out = static_lm.generate(chat_ids, max_new_tokens=N)
        assert out.token_ids == plain.token_ids and len(plain.token_ids) > 3
    assert static_lm._cache.layers[0].keys is slots


def test_static_rollback_equals_a_fresh_prefill(static_lm: CausalLM, chat_ids: list[int]) -> None:
    import torch

    junk = static_lm.encode(" Paris is a city in France and the")
    with static_lm.inference():
        static_lm.reset()
        static_lm.eval_last(chat_ids)
        static_lm.eval_tokens(junk)  # drafts that get rejected
        static_lm.truncate(len(chat_ids))
        assert static_lm.kv_tokens == chat_ids
        rolled = static_lm.eval_last(junk[:1]).clone()
        static_lm.reset()
        fresh = static_lm.eval_last([*chat_ids, junk[0]])
    torch.testing.assert_close(rolled, fresh, atol=2e-3, rtol=1e-3)
    static_lm.reset()


def test_prefix_made_with_a_static_cache_is_owned_and_reloads(
    lm: CausalLM, static_lm: CausalLM, doc_prompt
) -> None:
    import torch

    prefix, q1, q2 = doc_prompt
    from_static = static_lm.prefill(prefix)
    from_dynamic = lm.prefill(prefix)
    assert from_static.keys[0].shape == from_dynamic.keys[0].shape
    torch.testing.assert_close(from_static.keys[3], from_dynamic.keys[3], atol=1e-4, rtol=1e-4)
    before = from_static.keys[0].clone()
    for suffix in (q1, q2):  # answering overwrites the slots, never the saved prefix
        warm = static_lm.generate(prefix + suffix, max_new_tokens=6, prefix_cache=from_static)
        assert warm.prefix_tokens_reused == len(prefix)
        assert warm.token_ids == lm.generate(prefix + suffix, max_new_tokens=6).token_ids
    assert torch.equal(from_static.keys[0], before)


def test_a_sequence_longer_than_the_slots_is_refused_by_name(lm: CausalLM) -> None:
    small = _twin(lm, kv_cache="static", max_cache_tokens=8)
    refused = pytest.raises(ValueError, match="static KV cache of 8 slots; raise max_cache_tokens")
    with refused, small.inference():
        small.eval_last(list(range(100, 110)))
    assert small.kv_length == 0  # nothing was half-written


@pytest.mark.slow
def test_compiled_step_on_cpu_equals_eager(lm: CausalLM, chat_ids: list[int]) -> None:
    """``torch.compile`` (inductor on CPU) of the one-token step; minutes to compile."""
    compiled = _twin(lm, kv_cache="static", max_cache_tokens=SLOTS, compile_step=True)
    plain = lm.generate(chat_ids, max_new_tokens=N)
    assert compiled.generate(chat_ids, max_new_tokens=N).token_ids == plain.token_ids
    assert compiled._compiled is not None


@pytest.mark.gpu
def test_cuda_bf16_static_compiled_greedy_equals_eager_static() -> None:
    """On CUDA: bf16, static cache, CUDA-graph step; identical greedy to the eager step."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    import os

    fast = CausalLM.load(
        "smollm2-135m-instruct", device="cuda", cache_dir=os.environ["RAGKIT_CACHE"]
    )
    assert fast.kv_cache == "static" and fast.dtype_name == "bfloat16"
    eager_ids = fast.generate(
        fast.apply_chat_template([{"role": "user", "content": "Name three rivers."}]),
        max_new_tokens=24,
    ).token_ids
    compiled = _twin(fast, kv_cache="static", compile_step=True)
    prompt = compiled.apply_chat_template([{"role": "user", "content": "Name three rivers."}])
    for _ in range(2):  # the second run replays the captured graphs
        assert compiled.generate(prompt, max_new_tokens=24).token_ids == eager_ids
