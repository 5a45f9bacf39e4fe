"""CausalLM on the real packaged SmolLM2: exactness against transformers, streaming, caches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragkit.models.causal_lm import CausalLM, PrefixCache
from ragkit.models.errors import ContextLengthError, PrefixCacheError

N = 16  # new tokens per call: enough to compare, short enough for 2 CPU cores


def _hf_greedy(lm: CausalLM, ids: list[int], n: int) -> list[int]:
    import torch

    tensor = torch.tensor([ids])
    with torch.inference_mode():
        out = lm.model.generate(
            tensor,
            attention_mask=torch.ones_like(tensor),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=lm.pad_token_id,
        )
    return [t for t in out[0, len(ids) :].tolist() if t not in lm.eos_token_ids]


def test_greedy_matches_transformers_generate(lm: CausalLM, chat_ids: list[int]) -> None:
    first = lm.generate(chat_ids, max_new_tokens=N)
    second = lm.generate(chat_ids, max_new_tokens=N)
    assert first.token_ids == second.token_ids and first.text == second.text
    assert first.token_ids == _hf_greedy(lm, chat_ids, N)
    assert first.completion_tokens == len(first.token_ids) > 0
    assert first.prompt_tokens == len(chat_ids)
    assert first.stop_reason in {"length", "eos"}
    assert 0 < first.first_token_seconds <= first.seconds
    assert first.text == lm.decode(first.token_ids)


def test_messages_and_ids_are_equivalent(lm: CausalLM, chat_ids: list[int]) -> None:
    messages = [{"role": "user", "content": "List three colors of the rainbow."}]
    reference = lm.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert chat_ids == list(reference)
    assert (
        lm.generate(messages, max_new_tokens=4).token_ids
        == lm.generate(chat_ids, max_new_tokens=4).token_ids
    )


def test_stop_string_cuts_text(lm: CausalLM, chat_ids: list[int]) -> None:
    full = lm.generate(chat_ids, max_new_tokens=N)
    # stop at the second word of the unconstrained answer
    words = full.text.split()
    assert len(words) >= 3
    stop = words[1]
    result = lm.generate(chat_ids, max_new_tokens=N, stop=[stop])
    assert result.stop_reason == "stop"
    assert result.text == full.text[: full.text.index(stop)]
    assert stop not in result.text


def test_streaming_deltas_concatenate_to_text(lm: CausalLM, chat_ids: list[int]) -> None:
    deltas: list[str] = []
    result = lm.generate(chat_ids, max_new_tokens=N, on_token=deltas.append)
    assert len(deltas) > 1
    assert "".join(deltas) == result.text
    stopped: list[str] = []
    stop = result.text.split()[2]
    cut = lm.generate(chat_ids, max_new_tokens=N, stop=[stop], on_token=stopped.append)
    assert "".join(stopped) == cut.text


def test_sampling_is_reproducible_with_seed(lm: CausalLM, chat_ids: list[int]) -> None:
    a = lm.generate(chat_ids, max_new_tokens=8, temperature=0.9, top_p=0.9, seed=7)
    b = lm.generate(chat_ids, max_new_tokens=8, temperature=0.9, top_p=0.9, seed=7)
    assert a.token_ids == b.token_ids


def test_prefix_cache_reuse_is_identical_to_cold(lm: CausalLM, doc_prompt) -> None:
    prefix, q1, q2 = doc_prompt
    cache = lm.prefill(prefix)
    assert len(cache) == len(prefix) > 100
    for suffix in (q1, q2, q1):  # reused several times: the cache must not be mutated
        cold = lm.generate(prefix + suffix, max_new_tokens=8)
        warm = lm.generate(prefix + suffix, max_new_tokens=8, prefix_cache=cache)
        assert warm.token_ids == cold.token_ids
        assert warm.prefix_tokens_reused == len(prefix)
    # a prompt equal to the prefix still works (last token is recomputed)
    assert lm.generate(prefix, max_new_tokens=4, prefix_cache=cache).token_ids == (
        lm.generate(prefix, max_new_tokens=4).token_ids
    )


def test_prefix_cache_not_matching_prompt_falls_back_with_warning(lm: CausalLM, doc_prompt) -> None:
    prefix, q1, _ = doc_prompt
    cache = lm.prefill(prefix[:50])
    other = q1 + prefix
    with pytest.warns(RuntimeWarning, match="does not start with the prefix"):
        result = lm.generate(other, max_new_tokens=4, prefix_cache=cache)
    assert result.prefix_tokens_reused == 0
    assert result.token_ids == lm.generate(other, max_new_tokens=4).token_ids


def test_prefix_cache_save_load_roundtrip_and_errors(
    lm: CausalLM, doc_prompt, tmp_path: Path
) -> None:
    prefix, q1, _ = doc_prompt
    cache = lm.prefill(prefix)
    saved = cache.save(tmp_path / "pc")
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["num_tokens"] == len(prefix) and manifest["dtype"] == "float32"
    loaded = PrefixCache.load(saved, lm)
    assert loaded.token_ids == prefix
    cold = lm.generate(prefix + q1, max_new_tokens=8)
    assert lm.generate(prefix + q1, max_new_tokens=8, prefix_cache=loaded).token_ids == (
        cold.token_ids
    )
    cache.save(saved)  # overwriting an existing cache is atomic too
    assert PrefixCache.load(saved, lm).token_ids == prefix

    manifest["model_fingerprint"] = "another-model"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PrefixCacheError, match="built for model"):
        PrefixCache.load(saved, lm)

    cache.save(saved)
    tensors = saved / "kv.safetensors"
    with open(tensors, "r+b") as fh:
        fh.seek(tensors.stat().st_size - 64)
        fh.write(b"\xff" * 16)
    with pytest.raises(PrefixCacheError, match="corrupt"):
        PrefixCache.load(saved, lm)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(PrefixCacheError, match="corrupt"):
        PrefixCache.load(saved, lm)

    foreign = PrefixCache(prefix, cache.keys, cache.values, "other", "other-fp", "float32")
    with pytest.raises(PrefixCacheError, match="built by model"):
        lm.generate(prefix + q1, max_new_tokens=2, prefix_cache=foreign)


def test_logprobs_and_next_token_logits(lm: CausalLM, chat_ids: list[int]) -> None:
    greedy = lm.generate(chat_ids, max_new_tokens=4).token_ids
    scores = lm.logprobs(chat_ids, greedy)
    assert len(scores) == len(greedy)
    assert all(s <= 0 for s in scores)
    logits = lm.next_token_logits(chat_ids)
    assert logits.shape == (lm.model.config.vocab_size,)
    assert int(logits.argmax()) == greedy[0]
    full = logits.log_softmax(-1)
    assert math.isclose(float(full.max()), scores[0], rel_tol=1e-4, abs_tol=1e-4)
    # the live cache is extended in place and can be cropped back (speculative decoding)
    with lm.inference():
        lm.reset()
        lm.eval_last(chat_ids)
        assert lm.kv_length == len(chat_ids)
        step = lm.eval_last([greedy[0]])
        assert int(step.argmax()) == greedy[1]
        lm.truncate(len(chat_ids))
        assert lm.kv_length == len(chat_ids) == lm._cache.get_seq_length()
        lm.reset()
    batched = lm.next_token_logprobs([chat_ids, chat_ids[:-3]], [greedy[0]])
    assert math.isclose(batched[0][0], scores[0], abs_tol=1e-3)


def test_batch_generate_equals_single(lm: CausalLM, chat_ids: list[int]) -> None:
    other = lm.apply_chat_template(
        [{"role": "user", "content": "Name a fruit that is yellow and sweet, please."}]
    )
    assert len(other) != len(chat_ids)  # exercises left padding
    batch = lm.generate_batch([chat_ids, other], max_new_tokens=N)
    assert [r.token_ids for r in batch] == [
        lm.generate(chat_ids, max_new_tokens=N).token_ids,
        lm.generate(other, max_new_tokens=N).token_ids,
    ]


def test_context_length_and_truncation(lm: CausalLM) -> None:
    assert lm.context_length == 8192
    assert lm.count_tokens("hello world") == 2
    with pytest.raises(ContextLengthError, match="8192-token context"):
        lm.generate([1] * 8192, max_new_tokens=1)
    passages = ["word " * 300, "word " * 300]
    with pytest.warns(RuntimeWarning, match="kept 1 whole, trimmed 1, dropped 0"):
        kept = lm.truncate_passages_to_fit("What?", passages, budget=400, overhead=0)
    assert kept[0] == passages[0] and lm.count_tokens(kept[-1]) <= 100
