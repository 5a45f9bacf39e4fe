"""Prompt set: shared prefix across roles, YAML overrides with precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.notes.prompts import PromptSet, load_prompt_set


def test_every_role_shares_the_system_prefix_with_the_question() -> None:
    prompts = PromptSet()
    values = {
        "init_note": {"passages": "p"},
        "queries": {"note": "n", "past_queries": "q"},
        "refine": {"note": "n", "passages": "p"},
        "compare": {"note_1": "a", "note_2": "b"},
        "answer": {"note": "n"},
    }
    systems = set()
    for role, extra in values.items():
        messages = prompts.messages(role, question="Who?", **extra)
        assert [m["role"] for m in messages] == ["system", "user"]
        systems.add(messages[0]["content"])
        assert "{" not in messages[1]["content"].replace('{"status"', "")
    assert len(systems) == 1 and "Who?" in systems.pop()
    compare = prompts.messages("compare", question="q", note_1="a", note_2="b")[1]["content"]
    assert '{"status": "True"}' in compare


def test_override_from_mapping_and_yaml_file(tmp_path: Path) -> None:
    custom = load_prompt_set({"answer": "Say it short. Notes: {note}"})
    assert custom.messages("answer", question="q", note="N")[1]["content"] == (
        "Say it short. Notes: N"
    )
    assert custom.refine == PromptSet().refine  # other roles keep the defaults
    path = tmp_path / "prompts.yaml"
    path.write_text("queries: 'Search for: {question} given {note} and {past_queries}'\n")
    assert load_prompt_set(str(path)).queries.startswith("Search for:")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"anwser": "x"}, "prompts.anwser: unknown prompt role"),
        ({"answer": "use {passages}"}, "prompts.answer: unknown field {passages}"),
        ({"answer": "bad {"}, "prompts.answer: malformed template"),
        ({"answer": ""}, "prompts.answer: expected a non-empty template"),
    ],
)
def test_bad_overrides_name_the_role(spec: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_prompt_set(spec)
