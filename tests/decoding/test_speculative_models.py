"""Speculative decoding on the real packaged SmolLM2, through transformers and llama.cpp.

Greedy speculative output must be token-identical to target-only greedy with the n-gram drafter
and with a self-drafter (a second instance of the same model reading a shorter context), and a
rolled-back target cache must give the same next-token logits as a fresh prefill. The
transformers backend runs each test twice: with the growable cache (the CPU default) and with
the pre-allocated static cache (the CUDA default), whose rollback only moves a write position.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ragkit.decoding import ModelDrafter, NgramDrafter, SpeculativeDecoder
from ragkit.decoding.speculative import to_numpy
from ragkit.errors import InvalidParameter
from ragkit.models.driver import DecoderLM

MODEL = "smollm2-135m-instruct"
N_NEW = 24
DOCUMENT = (
    "The Lumen River rises in the Gray Hills and flows east for 212 kilometres to the port "
    "of Saltmere. The old stone bridge at Harwick was built in 1843 by the engineer Ada "
    "Quill, and it is still the only crossing between the hills and the sea."
)
QUESTION = "Who built the old stone bridge at Harwick, and when? Answer in one sentence."
FULL = [{"role": "user", "content": f"{DOCUMENT}\n\n{QUESTION}"}]
SHORT = [
    {
        "role": "user",
        "content": "The old stone bridge at Harwick was built in 1843 by the engineer Ada "
        f"Quill.\n\n{QUESTION}",
    }
]


def _load(backend: str) -> DecoderLM:
    if backend.startswith("transformers"):
        from ragkit.models.causal_lm import CausalLM

        static = backend.endswith("static")
        return CausalLM.load(
            MODEL,
            device="cpu",
            cache_dir=os.environ["RAGKIT_CACHE"],
            kv_cache="static" if static else "dynamic",
            max_cache_tokens=512 if static else None,
        )
    pytest.importorskip("llama_cpp")
    from ragkit.models.llamacpp import LlamaCppLM

    return LlamaCppLM.load(MODEL, n_ctx=1024, n_threads=1)


@pytest.fixture(scope="module", params=["transformers", "transformers-static", "llama.cpp"])
def pair(request: pytest.FixtureRequest):
    """(target, self-drafter): two instances of SmolLM2 on one backend."""
    if (os.cpu_count() or 1) <= 2 and request.param.startswith("transformers"):
        import torch

        torch.set_num_threads(1)
    target, drafter = _load(request.param), _load(request.param)
    yield target, drafter
    for lm in (target, drafter):
        lm.close()


def test_ngram_drafter_greedy_is_token_identical(pair) -> None:
    target, _ = pair
    ids = target.apply_chat_template(FULL)
    plain = target.generate(ids, max_new_tokens=N_NEW)
    out = SpeculativeDecoder(target, NgramDrafter()).generate(ids, max_new_tokens=N_NEW)
    assert len(plain.token_ids) > 10
    assert out.result.token_ids == plain.token_ids
    assert out.result.text == plain.text
    stats = out.stats
    # the answer quotes the document, so prompt lookup drafts and some drafts are accepted
    assert stats.drafted > 0 and stats.accepted > 0
    assert stats.target_calls < len(plain.token_ids)
    assert stats.emitted == len(plain.token_ids) + (plain.stop_reason == "eos")


def test_self_drafter_over_a_short_context_is_token_identical(pair) -> None:
    target, draft_lm = pair
    ids = target.apply_chat_template(FULL)
    plain = target.generate(ids, max_new_tokens=N_NEW)
    drafter = ModelDrafter(draft_lm, SHORT, target=target, confidence=0.1)
    out = SpeculativeDecoder(target, drafter).generate(ids, max_new_tokens=N_NEW)
    assert out.result.token_ids == plain.token_ids
    stats = out.stats
    assert stats.accepted > 0  # the short context answers the same way most of the time
    assert stats.tokens_per_target_call > 1.0
    assert draft_lm.kv_length == 0 or draft_lm.implicit_prefix_reuse


def test_rolled_back_target_cache_equals_a_fresh_prefill(pair) -> None:
    target, _ = pair
    ids = target.apply_chat_template(FULL)
    probe = target.encode(" the")[0]
    snapshots: list[tuple[list[int], np.ndarray]] = []
    original = target.truncate

    def spy(n: int) -> None:
        before = target.kv_length
        original(n)
        if len(ids) <= n < before and len(snapshots) < 2:  # a rejected draft rolled back
            kept = target.kv_tokens
            snapshots.append((kept, to_numpy(target.eval_last([probe]))))
            original(len(kept))  # undo the probe: the loop continues unaffected

    target.truncate = spy  # type: ignore[method-assign]
    try:
        # a deliberately poor drafter: n-grams of an unrelated passage force rejections
        drafter = NgramDrafter([target.encode("the the the bridge was the the river of the")])
        out = SpeculativeDecoder(target, drafter).generate(ids, max_new_tokens=12)
    finally:
        del target.truncate
    assert out.result.token_ids == target.generate(ids, max_new_tokens=12).token_ids
    assert snapshots, "the drafter never had a draft rejected"
    # transformers (fp32) is batch-shape stable: a rolled-back cache IS a fresh prefill. The
    # packaged GGUF is Q4_1, whose llama.cpp matmul kernels depend on the batch shape: even
    # without any rollback, prefilling 111 tokens in one batch vs 110 + 1 moves logits by up to
    # ~0.66 (measured), so there the bound is loose and the exact check is the one below.
    atol = 2e-3 if type(target).__name__ == "CausalLM" else 1.0
    for kept, logits in snapshots:
        assert kept[: len(ids)] == ids
        target.reset()  # a cold cache: llama.cpp would otherwise reuse its common prefix
        fresh = to_numpy(target.next_token_logits([*kept, probe]))
        np.testing.assert_allclose(logits, fresh, atol=atol, rtol=1e-3)
        assert int(np.argmax(logits)) == int(np.argmax(fresh))


def test_rejected_tokens_leave_no_trace_in_the_cache(pair) -> None:
    """Same batch shapes, different rejected drafts: the state after rollback is identical."""
    target, _ = pair
    ids = target.apply_chat_template(FULL)
    probe = target.encode(" the")[0]
    drafts_a = target.encode(" the the the bridge was the the river of")[:6]
    drafts_b = target.encode(" Paris is a city in France and")[:6]
    assert len(drafts_a) == len(drafts_b) == 6 and drafts_a != drafts_b
    rows = []
    with target.inference():
        for drafts in (drafts_a, drafts_b):
            target.reset()
            target.eval_last(ids[:-1])
            target.eval_tokens([ids[-1], *drafts])
            target.truncate(len(ids))
            assert target.kv_tokens == ids
            rows.append(to_numpy(target.eval_last([probe])))
        target.reset()
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-5, rtol=0)


def test_vocabulary_check_passes_for_the_same_model_and_names_a_mismatch(pair) -> None:
    target, draft_lm = pair
    ModelDrafter(draft_lm, target=target)  # same model: accepted

    class Renamed:
        name = "other-model"
        vocab_size = target.vocab_size + 1

    with pytest.raises(InvalidParameter, match=f"'other-model'.*{MODEL}"):
        ModelDrafter(Renamed(), target=target)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_cuda_static_cache_and_compiled_drafter_keep_greedy_identical() -> None:
    """On CUDA: static caches, the drafter's step through CUDA graphs, chain and tree drafts.

    fp32, so that a block verification and one-token steps compute the same argmax (bf16 moves
    near-ties with the batch shape, as llama.cpp's quantized kernels do on a CPU).
    """
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from ragkit.decoding.tree import TopKTreeDrafter, TreeSpeculativeDecoder
    from ragkit.models.causal_lm import CausalLM

    cache = os.environ["RAGKIT_CACHE"]
    target = CausalLM.load(MODEL, device="cuda", dtype="float32", cache_dir=cache)
    draft_lm = CausalLM.load(
        MODEL, device="cuda", dtype="float32", cache_dir=cache, compile_step=True
    )
    assert target.kv_cache == draft_lm.kv_cache == "static"
    try:
        ids = target.apply_chat_template(FULL)
        plain = target.generate(ids, max_new_tokens=N_NEW)
        drafters = [NgramDrafter(), ModelDrafter(draft_lm, SHORT, target=target)]
        for drafter in drafters:
            out = SpeculativeDecoder(target, drafter).generate(ids, max_new_tokens=N_NEW)
            assert out.result.token_ids == plain.token_ids
        tree = TopKTreeDrafter(ModelDrafter(draft_lm, SHORT, target=target))
        out = TreeSpeculativeDecoder(target, tree, depth=6, width=3).generate(
            ids, max_new_tokens=N_NEW
        )
        assert out.result.token_ids == plain.token_ids and out.stats.accepted > 0
    finally:
        target.close()
        draft_lm.close()
