"""The llama-cpp-python adapter's contract: fails loudly when a release changes what it relies on."""

from __future__ import annotations

import types
from importlib.metadata import version

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from ragkit.models.errors import ModelLoadError  # noqa: E402
from ragkit.models.llamacpp import LlamaCppLM  # noqa: E402
from ragkit.models.llamacpp_adapter import (  # noqa: E402
    PINNED_VERSION,
    LlamaAdapter,
    check_contract,
)


@pytest.fixture(scope="module")
def lm() -> LlamaCppLM:
    model = LlamaCppLM.load("smollm2-135m-instruct", n_ctx=512, n_threads=1)
    yield model
    model.close()


def test_installed_llama_cpp_python_is_the_pinned_release() -> None:
    # A new release may change Llama's bookkeeping (n_tokens, input_ids, _requires_eval):
    # re-run this file against it, then move PINNED_VERSION and the pyproject pin together.
    assert llama_cpp.__version__ == PINNED_VERSION == version("llama-cpp-python")
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads(
        (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    )
    extra = pyproject["project"]["optional-dependencies"]["llamacpp"]
    assert f"llama-cpp-python=={PINNED_VERSION}" in extra


def test_missing_api_is_refused_by_name(lm: LlamaCppLM) -> None:
    stripped = types.SimpleNamespace(
        **{k: getattr(llama_cpp, k) for k in dir(llama_cpp) if k != "llama_memory_seq_rm"}
    )
    with pytest.raises(ModelLoadError, match=r"lacks llama_cpp\.llama_memory_seq_rm"):
        check_contract(stripped, lm.llm)
    no_bookkeeping = types.SimpleNamespace(model=lm.llm.model, ctx=lm.llm.ctx)
    with pytest.raises(ModelLoadError, match=r"Llama\.n_tokens.*pinned llama-cpp-python"):
        check_contract(llama_cpp, no_bookkeeping)


def test_other_version_warns(lm: LlamaCppLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_cpp, "__version__", "9.9.9")
    with pytest.warns(RuntimeWarning, match="not the pinned"):
        LlamaAdapter(llama_cpp, lm.llm)


def test_truncate_keeps_llamas_own_bookkeeping_consistent(lm: LlamaCppLM) -> None:
    ids = lm.apply_chat_template([{"role": "user", "content": "Name a planet."}])
    reference = lm.library_generate(ids, 8)
    # leave llama.cpp holding the prompt plus rejected drafts, roll back, and let
    # Llama.generate itself continue: its prefix reuse must see exactly what we kept
    lm.reset()
    lm.eval_tokens([*ids, 5, 6, 7])
    lm.truncate(len(ids) - 2)
    assert lm.llm.n_tokens == len(ids) - 2
    assert lm.kv_tokens == ids[:-2]
    out = []
    tokens = lm.llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
    for tok in tokens:
        if tok in lm.eos_token_ids or len(out) == 8:
            break
        out.append(int(tok))
    tokens.close()
    assert out == reference


def test_batched_logits_equal_llamas_own_logits_all_eval(lm: LlamaCppLM) -> None:
    ids = lm.encode("The quick brown fox jumps over the lazy dog")
    lm.reset()
    batched = lm.eval_tokens(ids)
    assert batched.shape == (len(ids), lm.llm.n_vocab()) and lm.kv_tokens == ids
    reference = LlamaCppLM.load("smollm2-135m-instruct", n_ctx=512, n_threads=1, logits_all=True)
    try:
        reference.llm.reset()
        reference.llm.eval(ids)  # llama-cpp-python's own all-positions path
        np.testing.assert_allclose(batched, reference.llm.scores[: len(ids)], atol=1e-4)
    finally:
        reference.close()
    # one token at a time, llama.cpp's kernels round differently (measured up to ~1.7 in a
    # logit with llama-cpp-python alone), but the ranking of the best token agrees
    lm.reset()
    steps = [lm.eval_last([t]) for t in ids]
    assert [int(r.argmax()) for r in steps] == [int(r.argmax()) for r in batched]


def test_state_round_trip_restores_the_sequence(lm: LlamaCppLM) -> None:
    ids = lm.encode("Rivers carry sediment to the sea and build deltas.")
    state = lm.prefill(ids[:-1])
    expected = lm.eval_last(ids[-1:])
    lm.reset()
    lm._load_prefix(state, len(state))
    assert lm.kv_tokens == ids[:-1]
    np.testing.assert_allclose(lm.eval_last(ids[-1:]), expected, atol=1e-4)
