"""AdaptiveNoteAnswerer wiring: nested generator/fitter follow profile overrides, are validated
like top-level components, and round-trip through plain Haystack serialization."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragkit.config import load_profile
from ragkit.pipeline import PipelineError, load_pipeline, validate_pipeline_file

REPO = Path(__file__).resolve().parent.parent.parent
PIPE = REPO / "pipelines" / "adaptive_note.yaml"


def test_profile_overrides_reach_the_nested_generator_and_fitter() -> None:
    pipe = load_pipeline(PIPE, overrides=load_profile("cpu-quality").component_overrides())
    answerer = pipe.get_component("answerer")
    assert type(answerer.generator).__name__ == "LlamaCppChatGenerator"
    assert answerer.generator.model == "qwen2.5-coder-1.5b-instruct"
    assert answerer.fitter.tokenizer == "qwen2.5-coder-1.5b-instruct"
    assert answerer.fitter.reserve_tokens == 512  # pipeline value kept where the profile is silent
    default = load_pipeline(PIPE).get_component("answerer")
    assert type(default.generator).__name__ == "LocalChatGenerator"


def test_round_trips_through_plain_haystack() -> None:
    from haystack import Pipeline

    pipe = load_pipeline(PIPE, overrides=load_profile("cpu-quality").component_overrides())
    data = pipe.to_dict()
    nested = data["components"]["answerer"]["init_parameters"]["generator"]
    assert nested["type"] == "ragkit.models.llamacpp_components.LlamaCppChatGenerator"
    again = Pipeline.from_dict(data).get_component("answerer")
    assert again.generator.model == "qwen2.5-coder-1.5b-instruct"
    assert (again.loop.max_step, again.loop.max_fail_step, again.loop.top_k) == (3, 1, 5)


def _variant(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(PIPE.read_text())
    data["components"]["answerer"]["init_parameters"].update(changes)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_nested_component_errors_name_their_yaml_path(tmp_path: Path) -> None:
    bad = _variant(tmp_path, generator={"type": "os.system", "init_parameters": {}})
    problems = validate_pipeline_file(bad)
    assert any(
        "components.answerer.init_parameters.generator.type: module 'os' is not allowed" in p
        for p in problems
    )
    typo = _variant(
        tmp_path,
        generator={
            "type": "ragkit.models.components.LocalChatGenerator",
            "init_parameters": {"modle": "x"},
        },
    )
    with pytest.raises(
        PipelineError, match=r"generator\.init_parameters\.modle: unknown parameter"
    ):
        load_pipeline(typo)


def test_bad_prompt_override_and_settings_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"prompts\.answer: unknown field \{passages\}"):
        load_pipeline(_variant(tmp_path, prompts={"answer": "{passages}"}))
    with pytest.raises(
        PipelineError, match=r"init_parameters\.loop\.dedup: must be 'always' or 'near_cap'"
    ):
        load_pipeline(_variant(tmp_path, loop={"dedup": "sometimes"}))


def test_flat_loop_settings_load_with_a_warning_naming_the_new_key(tmp_path: Path) -> None:
    data = yaml.safe_load(PIPE.read_text())
    params = data["components"]["answerer"]["init_parameters"]
    params.update(params.pop("loop"))  # the flat form of the release before
    params["max_step"] = 2
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.warns(DeprecationWarning, match="'max_step' is deprecated.*use 'loop.max_step'"):
        answerer = load_pipeline(path).get_component("answerer")
    assert answerer.loop.max_step == 2 and answerer.loop.top_k == 5
    with pytest.raises(PipelineError, match=r"init_parameters\.loop\.tok_k: unknown key"):
        load_pipeline(_variant(tmp_path, loop={"tok_k": 3}))
