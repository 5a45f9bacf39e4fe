"""ScriptedChatGenerator: rules, queue, default, errors, usage meta, and use from YAML."""

from __future__ import annotations

import pytest
from haystack.dataclasses import ChatMessage

from ragkit.testing import ScriptedChatGenerator
from ragkit.testing.scripted import ScriptedGeneratorError


def ask(gen: ScriptedChatGenerator, text: str, **kwargs: object) -> ChatMessage:
    return gen.run([ChatMessage.from_user(text)], **kwargs)["replies"][0]  # type: ignore[arg-type]


def test_rules_then_queue_then_default_and_records_prompts() -> None:
    gen = ScriptedChatGenerator(
        replies=["q1", "q2"],
        rules=[
            {"contains": "judge", "replies": ["yes", "no"]},
            {"contains": "always", "reply": "fixed"},
        ],
        default_reply="dflt",
    )
    assert [ask(gen, "judge this").text for _ in range(3)] == ["yes", "no", "q1"]
    assert ask(gen, "always here").text == "fixed"
    assert ask(gen, "other").text == "q2"
    assert ask(gen, "other").text == "dflt"
    assert len(gen.prompts) == 6 and gen.prompts[3][0].text == "always here"


def test_no_reply_left_and_error_rules_raise() -> None:
    gen = ScriptedChatGenerator(rules=[{"contains": "boom", "error": "backend down"}])
    with pytest.raises(ScriptedGeneratorError, match="backend down"):
        ask(gen, "boom")
    with pytest.raises(ScriptedGeneratorError, match="no scripted reply left"):
        ask(gen, "hello")


def test_token_cap_usage_and_streaming() -> None:
    chunks: list[str] = []
    gen = ScriptedChatGenerator(replies=["one two three four"])
    reply = ask(
        gen,
        "a b c",
        generation_kwargs={"max_tokens": 2},
        streaming_callback=lambda c: chunks.append(c.content),
    )
    assert reply.text == "one two" and reply.meta["finish_reason"] == "length"
    assert reply.meta["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert chunks == ["one two"] and gen.calls == [{"max_tokens": 2}]


def test_bad_rules_fail_at_construction() -> None:
    with pytest.raises(ValueError, match=r"rules\[0\]: give exactly one of"):
        ScriptedChatGenerator(rules=[{"contains": "x"}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.answer: unknown key"):
        ScriptedChatGenerator(rules=[{"contains": "x", "reply": "y", "answer": "z"}])


def test_from_function_and_yaml_round_trip() -> None:
    from haystack.core.serialization import component_from_dict, component_to_dict

    gen = ScriptedChatGenerator.from_function(lambda msgs: msgs[-1].text.upper())
    assert ask(gen, "hi").text == "HI"
    plain = ScriptedChatGenerator(rules=[{"contains": "a", "reply": "b"}])
    again = component_from_dict(ScriptedChatGenerator, component_to_dict(plain, "g"), "g")
    assert ask(again, "a").text == "b"
