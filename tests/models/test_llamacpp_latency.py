"""llama.cpp latency settings on ``LlamaCppChatGenerator``: checked, serialized, applied.

The settings (``flash_attn``, threads, ``n_batch``/``n_ubatch``, ``reuse_prefix``) are checked
at construction (a profile typo fails when the pipeline loads, naming the YAML path), survive
Haystack's YAML round trip, and reach llama.cpp. The tests that load a model use the packaged
SmolLM2 GGUF and skip without llama-cpp-python, as the other llama.cpp tests do.
"""

from __future__ import annotations

from typing import Any

import pytest
from haystack.core.serialization import component_from_dict, component_to_dict
from haystack.dataclasses import ChatMessage

from ragkit.errors import InvalidParameter
from ragkit.models.llamacpp_components import LlamaCppChatGenerator
from ragkit.pipeline import PipelineError, load_pipeline
from ragkit.resources import resolve_yaml

MODEL = "smollm2-135m-instruct"
TYPE = "ragkit.models.llamacpp_components.LlamaCppChatGenerator"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n_threads": 0}, "n_threads"),
        ({"n_threads": True}, "n_threads"),
        ({"n_threads_batch": -1}, "n_threads_batch"),
        ({"n_batch": 0}, "n_batch"),
        ({"n_batch": None}, "n_batch"),
        ({"n_batch": 64.0}, "n_batch"),
        ({"n_ubatch": 0}, "n_ubatch"),
        ({"n_batch": 128, "n_ubatch": 256}, "n_ubatch"),
        ({"n_ctx": -1}, "n_ctx"),
        ({"flash_attn": "yes"}, "flash_attn"),
        ({"flash_attn": 1}, "flash_attn"),
        ({"reuse_prefix": None}, "reuse_prefix"),
    ],
)
def test_bad_latency_settings_are_refused_by_name(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        LlamaCppChatGenerator(MODEL, **kwargs)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(f"{parameter}: must be")


def test_a_bad_profile_value_names_its_yaml_path() -> None:
    overrides = {"generator": {"type": TYPE, "init_parameters": {"model": MODEL, "n_batch": 0}}}
    with pytest.raises(PipelineError) as info:
        load_pipeline(resolve_yaml("rag", "pipelines", "pipeline"), overrides=overrides,
                      overrides_from="profile bad.yaml")  # fmt: skip
    assert "components.generator.init_parameters.n_batch: must be an integer >= 1" in str(
        info.value
    )


def test_settings_round_trip_through_yaml_serialization() -> None:
    gen = LlamaCppChatGenerator(
        MODEL, n_threads=1, n_threads_batch=2, n_batch=256, n_ubatch=128, flash_attn=True,
        reuse_prefix=False,
    )  # fmt: skip
    data = component_to_dict(gen, "generator")
    params = data["init_parameters"]
    assert params["n_batch"] == 256 and params["n_ubatch"] == 128 and params["flash_attn"] is True
    assert params["reuse_prefix"] is False and params["n_threads_batch"] == 2
    back = component_from_dict(LlamaCppChatGenerator, data, "generator")
    assert component_to_dict(back, "generator") == data
    # the defaults keep llama.cpp's own behaviour: reuse on, no flash attention, 512-token batches
    default = component_to_dict(LlamaCppChatGenerator(MODEL), "generator")["init_parameters"]
    assert default["reuse_prefix"] is True and default["flash_attn"] is False
    assert default["n_batch"] == 512 and default["n_ubatch"] is None


def _ask(gen: LlamaCppChatGenerator, question: str) -> Any:
    text = f"Answer in a few words.\n\nPassage: Paris is the capital of France.\n\nQ: {question}"
    return gen.run([ChatMessage.from_user(text)])["replies"][0]


def test_settings_reach_llama_cpp_and_prefix_reuse_can_be_turned_off() -> None:
    pytest.importorskip("llama_cpp")
    kwargs = {"n_ctx": 1024, "n_threads": 1, "generation_kwargs": {"max_new_tokens": 8}}
    tuned = LlamaCppChatGenerator(MODEL, n_batch=64, n_ubatch=32, flash_attn=True, **kwargs)
    cold = LlamaCppChatGenerator(MODEL, reuse_prefix=False, **kwargs)
    try:
        tuned.warm_up()
        cold.warm_up()
        assert tuned._lm.latency_settings == {
            "n_ctx": 1024,
            "n_threads": 1,
            "n_threads_batch": 1,
            "n_batch": 64,
            "n_ubatch": 32,
            "flash_attn": True,
            "reuse_prefix": True,
        }
        assert cold._lm.latency_settings["reuse_prefix"] is False
        assert cold._lm.latency_settings["flash_attn"] is False
        replies = {}
        for name, gen in (("tuned", tuned), ("cold", cold)):
            first = _ask(gen, "What is the capital of France?")
            second = _ask(gen, "Which country is Paris the capital of?")
            replies[name] = (first, second)
            for reply in (first, second):
                t = reply.meta["timings"]
                assert t["prefill_s"] > 0 and t["decode_s"] >= 0
                assert t["prefill_s"] + t["decode_s"] == pytest.approx(t["seconds"])
        # the instruction and passage the two prompts share are reused only when allowed
        assert replies["tuned"][1].meta["timings"]["prefix_tokens_reused"] > 10
        assert replies["cold"][1].meta["timings"]["prefix_tokens_reused"] == 0
    finally:
        tuned.close()
        cold.close()
