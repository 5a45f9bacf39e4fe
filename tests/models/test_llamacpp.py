"""llama.cpp backend on the packaged SmolLM2 GGUF: generation, streaming, prefix states, logits."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from ragkit.models.base import LanguageModel  # noqa: E402
from ragkit.models.errors import ContextLengthError, PrefixCacheError  # noqa: E402
from ragkit.models.llamacpp import (  # noqa: E402
    LlamaCppLM,
    LlamaCppNotInstalledError,
    LlamaPrefixState,
    import_llama_cpp,
)

MODEL = "smollm2-135m-instruct"
N_NEW = 24


@pytest.fixture(scope="module")
def llm() -> LlamaCppLM:
    """SmolLM2 on llama.cpp with one thread (2 threads on 2 busy cores are ~10x slower)."""
    lm = LlamaCppLM.load(MODEL, n_ctx=2048, n_threads=1)
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def ids(llm: LlamaCppLM) -> list[int]:
    return llm.apply_chat_template(
        [{"role": "user", "content": "List three colors of the rainbow."}]
    )


@pytest.fixture(scope="module")
def reference(llm: LlamaCppLM, ids: list[int]):
    llm.reset()
    return llm.generate(ids, max_new_tokens=N_NEW)


def test_protocol_and_chat_template(llm: LlamaCppLM, ids: list[int]) -> None:
    assert isinstance(llm, LanguageModel)
    assert llm.supports_logits and llm.supports_prefix_cache
    assert llm.context_length == 2048
    text = llm.chat_template_text([{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")  # the GGUF's own template
    assert llm.decode(ids).endswith("assistant\n")
    assert llm.count_tokens("hello world") == len(llm.encode("hello world")) > 0


def test_greedy_is_deterministic(llm: LlamaCppLM, ids: list[int], reference) -> None:
    assert reference.completion_tokens > 5
    assert reference.text.strip()
    # Same prompt again (the KV cache is reused implicitly) and after an unrelated prompt.
    again = llm.generate(ids, max_new_tokens=N_NEW)
    llm.generate("The capital of France is", max_new_tokens=4)
    third = llm.generate(ids, max_new_tokens=N_NEW)
    assert again.token_ids == reference.token_ids == third.token_ids
    assert again.text == reference.text


def test_sampling_with_seed_is_reproducible(llm: LlamaCppLM, ids: list[int]) -> None:
    a = llm.generate(ids, max_new_tokens=12, temperature=0.9, seed=7)
    b = llm.generate(ids, max_new_tokens=12, temperature=0.9, seed=7)
    assert a.token_ids == b.token_ids


def test_streaming_deltas_concatenate(llm: LlamaCppLM, ids: list[int], reference) -> None:
    deltas: list[str] = []
    result = llm.generate(ids, max_new_tokens=N_NEW, on_token=deltas.append)
    assert len(deltas) > 1
    assert "".join(deltas) == result.text == reference.text


def test_stop_strings(llm: LlamaCppLM, ids: list[int], reference) -> None:
    text = reference.text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip()
    cut = text.index(stop)
    deltas: list[str] = []
    result = llm.generate(ids, max_new_tokens=N_NEW, stop=[stop], on_token=deltas.append)
    assert result.stop_reason == "stop"
    assert result.text == text[:cut]
    assert "".join(deltas) == result.text


def test_prefix_state_matches_cold_and_round_trips(
    llm: LlamaCppLM, ids: list[int], reference, tmp_path: Path
) -> None:
    prefix = ids[:-4]
    state = llm.prefill(prefix)
    assert len(state) == len(prefix) and state.nbytes > 0
    llm.reset()
    warm = llm.generate(ids, max_new_tokens=N_NEW, prefix_cache=state)
    assert warm.prefix_tokens_reused == len(prefix)
    assert warm.token_ids == reference.token_ids
    saved = state.save(tmp_path / "prefix", llm)
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["model_sha256"] == llm.model_sha256
    assert manifest["num_tokens"] == len(prefix)
    loaded = LlamaPrefixState.load(saved, llm)
    assert loaded.token_ids == prefix
    llm.reset()
    again = llm.generate(ids, max_new_tokens=N_NEW, prefix_cache=loaded)
    assert again.token_ids == reference.token_ids


def test_prefix_state_mismatch_is_refused(llm: LlamaCppLM, ids: list[int], tmp_path: Path) -> None:
    saved = llm.prefill(ids[:-4]).save(tmp_path / "prefix", llm)
    manifest_path = saved / "manifest.json"
    original = manifest_path.read_text()

    def load_with(**changes: object) -> None:
        data = json.loads(original)
        data.update(changes)
        manifest_path.write_text(json.dumps(data))
        LlamaPrefixState.load(saved, llm)

    with pytest.raises(PrefixCacheError, match="was built for model"):
        load_with(model_sha256="0" * 64, model_id="other-model")
    with pytest.raises(PrefixCacheError, match="format"):
        load_with(format_version=99)
    with pytest.raises(PrefixCacheError, match="llama-cpp-python"):
        load_with(llama_cpp_python_version="0.0.1")
    with pytest.raises(PrefixCacheError, match="token ids"):
        load_with(token_ids=[1, 2, 3])
    manifest_path.write_text(original)
    (saved / "state.bin").write_bytes(b"corrupt")
    with pytest.raises(PrefixCacheError, match="checksum"):
        LlamaPrefixState.load(saved, llm)
    with pytest.raises(PrefixCacheError, match="missing or corrupt"):
        LlamaPrefixState.load(tmp_path / "nowhere", llm)


def test_prefix_state_of_other_prompt_is_ignored_with_warning(
    llm: LlamaCppLM, ids: list[int], reference
) -> None:
    state = llm.prefill(llm.encode("Something else entirely."))
    with pytest.warns(RuntimeWarning, match="does not start with the prefix"):
        result = llm.generate(ids, max_new_tokens=N_NEW, prefix_cache=state)
    assert result.token_ids == reference.token_ids


def test_logits_and_logprobs(llm: LlamaCppLM, ids: list[int], reference) -> None:
    logits = llm.next_token_logits(ids)
    assert logits.shape == (llm._n_vocab,)
    assert int(logits.argmax()) == reference.token_ids[0]
    cont = reference.token_ids[:4]
    lps = llm.logprobs(ids, cont)
    assert len(lps) == 4 and all(math.isfinite(x) and x <= 0 for x in lps)
    # Greedy tokens are the argmax, so each is the most likely: log-prob above log(1/vocab).
    assert all(x > -math.log(llm._n_vocab) for x in lps)
    (row,) = llm.next_token_logprobs([ids], [cont[0], llm.encode("zebra")[0]])
    assert row[0] == pytest.approx(lps[0], abs=1e-3)
    assert row[0] > row[1]


def test_logits_all_batched_logprobs_match_stepwise(llm: LlamaCppLM, ids: list[int], reference):
    batched = LlamaCppLM.load(MODEL, n_ctx=512, n_threads=1, logits_all=True)
    try:
        cont = reference.token_ids[:4]
        assert batched.logprobs(ids, cont) == pytest.approx(llm.logprobs(ids, cont), abs=2e-2)
    finally:
        batched.close()


def test_prompt_beyond_context(llm: LlamaCppLM) -> None:
    with pytest.raises(ContextLengthError, match="n_ctx"):
        llm.generate(list(range(100, 100 + 2100)), max_new_tokens=4)


def test_truncation_keeps_the_question(llm: LlamaCppLM) -> None:
    question = "Which passage mentions the lighthouse keeper's name?"
    passage = "The lighthouse stood on the rocks above the harbor for a century. " * 60
    passages = [passage, passage, passage]
    with pytest.warns(RuntimeWarning, match="kept"):
        kept = llm.truncate_passages_to_fit(question, passages, reserve_new_tokens=128)
    assert 0 < len(kept) < len(passages) or kept[-1] != passage
    total = sum(llm.count_tokens(p) for p in kept) + llm.count_tokens(question)
    assert total <= llm.context_length - 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert llm.truncate_passages_to_fit(question, ["short passage"]) == ["short passage"]


def test_chat_generator_in_haystack_pipeline(llm: LlamaCppLM, reference) -> None:
    from haystack import Pipeline
    from haystack.components.builders import ChatPromptBuilder
    from haystack.core.serialization import component_from_dict, component_to_dict
    from haystack.dataclasses import ChatMessage

    from ragkit.models.llamacpp_components import LlamaCppChatGenerator

    gen = LlamaCppChatGenerator.from_model(llm, generation_kwargs={"max_new_tokens": N_NEW})
    pipe = Pipeline()
    pipe.add_component(
        "prompt",
        ChatPromptBuilder(template=[ChatMessage.from_user("{{ q }}")], required_variables="*"),
    )
    pipe.add_component("llm", gen)
    pipe.connect("prompt.prompt", "llm.messages")
    chunks = []
    out = pipe.run(
        {
            "prompt": {"q": "List three colors of the rainbow."},
            "llm": {"streaming_callback": chunks.append},
        }
    )
    reply = out["llm"]["replies"][0]
    assert reply.text == reference.text
    assert reply.meta["finish_reason"] in {"stop", "length"}
    assert reply.meta["usage"]["completion_tokens"] == reference.completion_tokens
    assert "".join(c.content for c in chunks) == reply.text
    assert chunks[-1].finish_reason is not None
    # The component serializes like any Haystack component (YAML pipelines).
    data = component_to_dict(
        LlamaCppChatGenerator(n_ctx=1024, generation_kwargs={"max_tokens": 8}), "llm"
    )
    assert data["init_parameters"] == {
        "model": MODEL,
        "n_ctx": 1024,
        "n_threads": None,
        "generation_kwargs": {"max_tokens": 8},
        # latency settings (tests/models/test_llamacpp_latency.py): llama.cpp's own defaults
        "n_threads_batch": None,
        "n_batch": 512,
        "n_ubatch": None,
        "flash_attn": False,
        "reuse_prefix": True,
    }
    restored = component_from_dict(LlamaCppChatGenerator, data, "llm")
    assert restored.n_ctx == 1024
    with pytest.raises(ValueError, match="unknown generation kwarg"):
        LlamaCppChatGenerator(generation_kwargs={"beam_width": 4})


def test_missing_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(LlamaCppNotInstalledError, match=r"pip install 'ragkit\[llamacpp\]'"):
        import_llama_cpp()
    with pytest.raises(ImportError):
        LlamaCppLM.load(MODEL)


def test_non_gguf_model_is_refused(tmp_path: Path) -> None:
    from ragkit.models.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="not a .gguf"):
        LlamaCppLM.load(str(tmp_path))
