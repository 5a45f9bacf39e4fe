"""The one generation driver: unit tests on a scripted backend, then both real backends.

The scripted backend is a deterministic "model" over a tiny vocabulary whose next token is a
function of the previous one, so every expectation below is computed by hand; the real-model
tests check that the driver is token-for-token the libraries' own greedy generate on both the
transformers and the llama.cpp backends, and that rollback (truncate + re-eval) is exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ragkit.models.driver import DecoderLM, Decoding, NumpySampler, TextStream
from ragkit.models.errors import ContextLengthError, PrefixCacheError

VOCAB = ["<eos>", "a", "b", "c", " ", "é"]
EOS = 0


@dataclass
class _Prefix:
    token_ids: list[int]
    model_fingerprint: str = "scripted"
    model_id: str = "scripted"

    def __len__(self) -> int:
        return len(self.token_ids)


class ScriptedLM(DecoderLM):
    """Next token = ``script[previous token]``; counts the tokens it evaluates."""

    name = "scripted"
    eos_token_ids = frozenset({EOS})

    def __init__(self, script: dict[int, int], *, implicit: bool = False, ctx: int = 64) -> None:
        self.script = script
        self.implicit_prefix_reuse = implicit
        self.ctx = ctx
        self.cache: list[int] = []
        self.evaluated = 0

    @property
    def context_length(self) -> int:
        return self.ctx

    def encode(self, text: str) -> list[int]:
        return [VOCAB.index(ch) for ch in text]

    def _encode_text(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(VOCAB[t] for t in token_ids if t != EOS)

    def _render_chat(self, messages: list[dict[str, str]]) -> str | None:
        return None

    @property
    def kv_tokens(self) -> list[int]:
        return list(self.cache)

    def truncate(self, n: int) -> None:
        del self.cache[max(0, n) :]

    def _logits(self, token: int) -> np.ndarray:
        row = np.zeros(len(VOCAB), dtype=np.float32)
        row[self.script[token]] = 5.0
        return row

    def eval_tokens(self, ids: Sequence[int]) -> np.ndarray:
        self.cache.extend(ids)
        self.evaluated += len(ids)
        return np.stack([self._logits(t) for t in ids])

    def eval_last(self, ids: Sequence[int]) -> np.ndarray:
        return self.eval_tokens(ids)[-1]

    def make_sampler(self, temperature: float, top_p: float, seed: int | None) -> Any:
        return NumpySampler(temperature, top_p, seed)

    def check_prefix_owner(self, prefix: Any) -> None:
        if prefix.model_fingerprint != "scripted":
            raise PrefixCacheError("prefix cache was built by model 'other'")

    def _load_prefix(self, prefix: Any, n: int) -> None:
        self.cache = list(prefix.token_ids[:n])


# a -> b -> c -> " " -> a ... (never EOS); "é" -> EOS
CYCLE = {1: 2, 2: 3, 3: 4, 4: 1, 5: EOS, EOS: EOS}


def test_greedy_length_limit_and_counts() -> None:
    lm = ScriptedLM(CYCLE)
    result = lm.generate("a", max_new_tokens=6)
    assert result.text == "bc abc"
    assert result.token_ids == [2, 3, 4, 1, 2, 3]
    assert result.stop_reason == "length"
    assert result.prompt_tokens == 1 and result.completion_tokens == 6
    assert 0 < result.first_token_seconds <= result.seconds
    assert lm.evaluated == 1 + 5  # prompt, then one step per token but the last


def test_eos_ends_without_emitting_it() -> None:
    result = ScriptedLM(CYCLE).generate("é", max_new_tokens=5)
    assert result.stop_reason == "eos" and result.token_ids == [] and result.text == ""


def test_stop_strings_cut_text_and_streaming_never_emits_past_them() -> None:
    deltas: list[str] = []
    result = ScriptedLM(CYCLE).generate(
        "a", max_new_tokens=20, stop=[" ab"], on_token=deltas.append
    )
    assert result.stop_reason == "stop"
    assert result.text == "bc"
    assert "".join(deltas) == "bc"


def test_streaming_deltas_concatenate_to_the_text() -> None:
    deltas: list[str] = []
    result = ScriptedLM(CYCLE).generate("a", max_new_tokens=9, on_token=deltas.append)
    assert len(deltas) == 9
    assert "".join(deltas) == result.text == "bc abc ab"


def test_text_stream_waits_for_complete_utf8() -> None:
    pieces = {1: b"\xc3", 2: b"\xa9"}  # "é" split over two tokens

    def decode(ids: Sequence[int]) -> str:
        return b"".join(pieces[t] for t in ids).decode("utf-8", errors="replace")

    out: list[str] = []
    stream = TextStream(decode, None, out.append)
    assert not stream.push([1]) and out == []
    assert not stream.push([1, 2]) and out == ["é"]


def test_decoding_is_reusable_by_other_strategies() -> None:
    # speculative decoding accepts several tokens per step through the same bookkeeping
    decoding = Decoding(ScriptedLM(CYCLE).decode, frozenset({EOS}), limit=3)
    assert decoding.add(1) is False and decoding.add(2) is False
    assert decoding.add(3) is True and decoding.reason == "length"
    assert decoding.result(prompt_tokens=4).text == "abc"


def test_argument_checks_happen_before_any_work() -> None:
    lm = ScriptedLM(CYCLE)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate("a", temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        lm.generate("a", top_p=0)
    with pytest.raises(ValueError, match="empty prompt"):
        lm.generate("")
    with pytest.raises(ContextLengthError, match="64-token context"):
        lm.generate([1] * 64)
    assert lm.evaluated == 0


def test_chat_template_fallback_when_the_model_has_none() -> None:
    lm = ScriptedLM(CYCLE)
    text = lm.chat_template_text([{"role": "user", "content": "hi"}])
    assert text == "user: hi\nassistant:"


def test_sampling_is_seeded_and_respects_top_p() -> None:
    logits = np.log(np.array([0.05, 0.6, 0.3, 0.05], dtype=np.float64))
    a = NumpySampler(1.0, 1.0, seed=3)
    b = NumpySampler(1.0, 1.0, seed=3)
    draws = [a(logits) for _ in range(50)]
    assert draws == [b(logits) for _ in range(50)]
    assert len(set(draws)) > 1
    nucleus = NumpySampler(1.0, 0.5, seed=0)  # only the 0.6 token is inside the nucleus
    assert {nucleus(logits) for _ in range(50)} == {1}


def test_prefix_cache_reuse_and_mismatch_warning() -> None:
    lm = ScriptedLM(CYCLE)
    cold = lm.generate("abc", max_new_tokens=4)
    lm.evaluated = 0
    warm = lm.generate("abc", max_new_tokens=4, prefix_cache=_Prefix([1, 2]))
    assert warm.token_ids == cold.token_ids
    assert warm.prefix_tokens_reused == 2
    assert lm.evaluated == 1 + 3  # only "c" of the prompt was computed
    whole = lm.generate("ab", max_new_tokens=2, prefix_cache=_Prefix([1, 2]))
    assert whole.prefix_tokens_reused == 1  # the last prompt token is re-fed for its logits
    with pytest.warns(RuntimeWarning, match="does not start with the prefix"):
        other = lm.generate("cab", max_new_tokens=4, prefix_cache=_Prefix([1, 2]))
    assert other.prefix_tokens_reused == 0
    with pytest.raises(PrefixCacheError, match="built by model"):
        lm.generate("abc", prefix_cache=_Prefix([1, 2], model_fingerprint="x"))


def test_implicit_reuse_keeps_the_common_prefix_only_when_the_backend_does() -> None:
    keeps = ScriptedLM(CYCLE, implicit=True)
    keeps.generate("abca", max_new_tokens=2)
    keeps.evaluated = 0
    again = keeps.generate("abcc", max_new_tokens=2)
    assert again.prefix_tokens_reused == 3 and keeps.evaluated == 1 + 1
    fresh = ScriptedLM(CYCLE)
    fresh.generate("abca", max_new_tokens=2)
    assert fresh.generate("abcc", max_new_tokens=2).prefix_tokens_reused == 0


# ---------------------------------------------------------------------- real backends

N_NEW = 16
PROMPT = [{"role": "user", "content": "List three colors of the rainbow."}]


@pytest.fixture(scope="module")
def llama_lm():
    pytest.importorskip("llama_cpp")
    from ragkit.models.llamacpp import LlamaCppLM

    lm = LlamaCppLM.load("smollm2-135m-instruct", n_ctx=1024, n_threads=1)
    yield lm
    lm.close()


@pytest.fixture(params=["transformers", "llama.cpp"])
def backend(request: pytest.FixtureRequest) -> DecoderLM:
    if request.param == "transformers":
        return request.getfixturevalue("lm")
    return request.getfixturevalue("llama_lm")


def test_greedy_equals_the_librarys_own_generate(backend: DecoderLM) -> None:
    ids = backend.apply_chat_template(PROMPT)
    backend.reset()
    ours = backend.generate(ids, max_new_tokens=N_NEW)
    theirs = backend.library_generate(ids, N_NEW)  # model.generate / Llama.generate
    assert len(ours.token_ids) > 5
    assert ours.token_ids == theirs
    deltas: list[str] = []
    streamed = backend.generate(ids, max_new_tokens=N_NEW, on_token=deltas.append)
    assert "".join(deltas) == streamed.text == ours.text
    stop = ours.text[len(ours.text) // 2 : len(ours.text) // 2 + 3]
    cut = backend.generate(ids, max_new_tokens=N_NEW, stop=[stop])
    assert cut.stop_reason == "stop" and cut.text == ours.text[: ours.text.index(stop)]


def test_truncate_then_reeval_equals_a_fresh_prefill(backend: DecoderLM) -> None:
    ids = backend.apply_chat_template(PROMPT)
    with backend.inference():
        backend.reset()
        fresh = np.asarray(backend._as_float32(backend.eval_tokens(ids)))
        assert backend.kv_length == len(ids) and backend.kv_tokens == ids
        # draft three wrong tokens, reject them, and continue from the accepted prefix
        backend.eval_tokens([11, 12, 13])
        backend.truncate(len(ids))
        assert backend.kv_tokens == ids
        cut = len(ids) - 4
        backend.truncate(cut)
        assert backend.kv_length == cut
        again = np.asarray(backend._as_float32(backend.eval_tokens(ids[cut:])))
        backend.reset()
    np.testing.assert_allclose(again, fresh[cut:], atol=1e-3, rtol=1e-4)
    # all-positions logits agree with the last-position step
    with backend.inference():
        backend.reset()
        step = np.asarray(backend._as_float32(backend.eval_last(ids)))
        backend.reset()
    np.testing.assert_allclose(step, fresh[-1], atol=1e-3, rtol=1e-4)


def test_next_token_logits_continue_a_rolled_back_sequence(backend: DecoderLM) -> None:
    ids = backend.apply_chat_template(PROMPT)
    greedy = backend.generate(ids, max_new_tokens=3).token_ids
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = backend.next_token_logits([*ids, greedy[0]])
    assert int(np.asarray(logits).argmax()) == greedy[1]
