"""SpeculativeGenerator: config errors name the parameter, YAML round trip, and a real reply
that equals the plain generator's greedy reply while reporting speculative stats."""

from __future__ import annotations

import pytest
from haystack import Document
from haystack.core.serialization import component_from_dict, component_to_dict
from haystack.dataclasses import ChatMessage

from ragkit.decoding.components import NgramSpec, SpeculativeGenerator
from ragkit.errors import InvalidParameter

DOCUMENT = (
    "The Lumen River rises in the Gray Hills and flows east for 212 kilometres to the port "
    "of Saltmere. The old stone bridge at Harwick was built in 1843 by the engineer Ada "
    "Quill, and it is still the only crossing between the hills and the sea."
)
QUESTION = "Who built the old stone bridge at Harwick, and when? Answer in one sentence."


LLAMA = {"backend": "llama.cpp"}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"speculation": {"gamma": 0}}, "speculation.gamma"),
        ({"speculation": {"eta": -1.0}}, "speculation.eta"),
        ({"speculation": {"alpha": 0.0}}, "speculation.alpha"),
        ({"speculation": {"alpha": 1.01}}, "speculation.alpha"),
        ({"speculation": {"gama": 3}}, "speculation.gama"),
        ({"drafter": {"kind": "oracle"}}, "drafter.kind"),
        ({"drafter": {"name": "x", "backend": "llama.cpp"}}, "drafter.backend"),
        ({"target": {"backend": "onnx"}}, "target.backend"),
        ({"target": {"n_ctx": "big"}}, "target.n_ctx"),
        ({"drafter": {"kind": "ngram", "max_ngram": 0}}, "drafter.max_ngram"),
        (
            {"target": LLAMA, "speculation": {"compile_draft_step": True}},
            "speculation.compile_draft_step",
        ),
        ({"speculation": {"tree_width": -1}}, "speculation.tree_width"),
        ({"target": LLAMA, "speculation": {"tree_width": 3}}, "speculation.tree_width"),
        ({"speculation": {"fallback": {"kind": "ngram"}}}, "speculation.fallback"),
        ({"speculation": [1]}, "speculation"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        SpeculativeGenerator(**kwargs)
    assert err.value.parameter == parameter
    assert str(err.value).startswith(f"{parameter}: ")


def test_compile_draft_step_compiles_the_drafter_only(monkeypatch) -> None:
    """The drafter gets the static cache and the compiled step; the target stays eager."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = SpeculativeGenerator(
        target={"device": "cpu"}, drafter={}, speculation={"compile_draft_step": True}
    )
    gen.warm_up()
    try:
        assert (gen._draft_lm.kv_cache, gen._draft_lm.compile_step) == ("static", True)
        assert (gen._target.kv_cache, gen._target.compile_step) == ("dynamic", False)
        assert gen._draft_lm._compiled is None  # compiled on the first step, not at load
    finally:
        gen.close()


def test_yaml_round_trip_keeps_the_settings() -> None:
    gen = SpeculativeGenerator(
        drafter={"name": "qwen2.5-coder-0.5b-instruct"},
        speculation={"gamma": 6, "eta": 2.0, "alpha": 0.2, "fallback": {"kind": "ngram"}},
    )
    data = component_to_dict(gen, "generator")
    params = data["init_parameters"]
    assert params["speculation"]["gamma"] == 6 and params["target"]["backend"] == "transformers"
    assert params["drafter"]["name"] == "qwen2.5-coder-0.5b-instruct"
    again = component_from_dict(SpeculativeGenerator, data, "generator")
    assert again.speculation == gen.speculation and again.drafter == gen.drafter
    assert component_to_dict(again, "generator") == data
    assert again.drafter_label() == "model+ngram"


def test_the_drafter_takes_the_keys_it_leaves_out_from_the_target() -> None:
    gen = SpeculativeGenerator(target={"name": "t", "device": "cpu", "n_ctx": 4096}, drafter={})
    assert gen.drafter == gen.target and gen.drafter_label() == "self"
    assert SpeculativeGenerator(drafter="ngram").drafter == NgramSpec()
    assert SpeculativeGenerator(target="t").target.name == "t"  # a name alone is a spec


def test_the_flat_form_loads_with_a_warning_naming_the_new_key() -> None:
    old = {
        "type": "ragkit.decoding.components.SpeculativeGenerator",
        "init_parameters": {
            "model": "t",
            "drafter": "self+ngram",
            "gamma": 6,
            "max_ngram": 4,
            "device": "cpu",
        },
    }
    with pytest.warns(DeprecationWarning) as caught:
        gen = component_from_dict(SpeculativeGenerator, old, "generator")
    said = " | ".join(str(w.message) for w in caught)
    assert "'gamma' is deprecated" in said and "use 'speculation.gamma'" in said
    assert "use 'target.name'" in said and "speculation.fallback.max_ngram" in said
    assert gen.target.name == "t" and gen.target.device == "cpu"
    assert gen.drafter_label() == "self+ngram" and gen.speculation.gamma == 6
    assert gen.speculation.fallback == NgramSpec(max_ngram=4)


@pytest.mark.parametrize("tree_width", [0, 3])
def test_reply_equals_the_plain_greedy_reply_and_reports_stats(lm, tree_width: int) -> None:
    messages = [ChatMessage.from_user(f"{DOCUMENT}\n\n{QUESTION}")]
    chat = [{"role": "user", "content": messages[0].text}]
    plain = lm.generate(chat, max_new_tokens=24)
    chunks = [
        Document(content=DOCUMENT[90:], meta={"source": "d.txt", "start": 90}),
        Document(content=DOCUMENT[:90], meta={"source": "d.txt", "start": 0}),
    ]
    gen = SpeculativeGenerator.from_models(
        lm, speculation={"tree_width": tree_width}, generation_kwargs={"max_new_tokens": 24}
    )
    deltas: list[str] = []
    out = gen.run(messages, documents=chunks, streaming_callback=lambda c: deltas.append(c.content))
    reply = out["replies"][0]
    assert reply.text == plain.text
    assert "".join(deltas) == plain.text
    assert reply.meta["usage"]["completion_tokens"] == plain.completion_tokens
    spec = reply.meta["speculative"]
    assert spec["drafter"] == "ngram"
    assert spec["accepted"] > 0 and spec["tokens_per_target_call"] > 1.0
    assert 0 < spec["acceptance_rate"] <= 1
    assert ("policy" in spec) == (tree_width == 0)  # trees run at a fixed size


def test_the_adaptive_policy_carries_what_it_learned_into_the_next_call(lm) -> None:
    messages = [ChatMessage.from_user(f"{DOCUMENT}\n\n{QUESTION}")]
    chat = [{"role": "user", "content": messages[0].text}]
    plain = lm.generate(chat, max_new_tokens=16)
    chunks = [Document(content=DOCUMENT, meta={"source": "d.txt", "start": 0})]
    settings = {"generation_kwargs": {"max_new_tokens": 16}}
    gen = SpeculativeGenerator.from_models(lm, speculation={"learn_across_calls": True}, **settings)
    first = gen.run(messages, documents=chunks)["replies"][0].meta["speculative"]
    assert first["drafted"] > 0
    policy = gen.gamma_policy()
    policy.off = 1000  # as after measuring that drafting does not pay on this machine
    second = gen.run(messages, documents=chunks)["replies"][0]
    assert second.text == plain.text
    assert second.meta["speculative"]["drafted"] == 0  # stayed off: no probe at the start
    learned = second.meta["speculative"]["policy"]
    used = second.meta["usage"]["completion_tokens"]
    assert learned["next_gamma"] == 0 and learned["plain_steps_left"] == 1000 - used
    assert gen.gamma_policy() is policy  # one policy for all calls
    default = SpeculativeGenerator.from_models(lm, **settings)  # a fresh policy per answer
    default.run(messages, documents=chunks)
    default.gamma_policy().off = 1000
    again = default.run(messages, documents=chunks)["replies"][0].meta["speculative"]
    assert again["drafted"] > 0 and again["policy"]["steps_seen"] > 0
    fixed = SpeculativeGenerator.from_models(lm, speculation={"adaptive": False})
    assert fixed.answer_policy() is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "speculation: {gamma: 0}",
            "init_parameters.speculation.gamma: must be a positive integer, got 0",
        ),
        ("speculation: {eta: -1.0}", "init_parameters.speculation.eta: must be >= 0, got -1.0"),
        (
            "speculation: {alpha: 2.0}",
            "init_parameters.speculation.alpha: must be in (0, 1], got 2.0",
        ),
        ("target: {n_ctx: 16}", "init_parameters.target.n_ctx: must be >= 256, got 16"),
        ("gamma: 0", "init_parameters.speculation.gamma: must be a positive integer, got 0"),
    ],
)
def test_pipeline_yaml_errors_name_the_yaml_path(tmp_path, line: str, message: str) -> None:
    from ragkit.pipeline import PipelineError, load_pipeline

    path = tmp_path / "rapid.yaml"
    path.write_text(
        "components:\n  generator:\n    type: ragkit.decoding.components.SpeculativeGenerator\n"
        f"    init_parameters:\n      {line}\nconnections: []\n"
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path)
    assert str(err.value) == f"{path}: components.generator.{message}"
