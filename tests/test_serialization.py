"""Every shipped pipeline and every ragkit component round-trips through plain Haystack.

A Haystack user holds ragkit's pipelines without ``ragkit.load_pipeline``: ``import ragkit``
(which puts ragkit on Haystack's deserialization allowlist), ``Pipeline.loads``, ``dumps`` and
``loads`` again must give the same pipeline, with nothing the YAML said dropped on the way.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from haystack import Pipeline
from haystack.core.component import Component
from haystack.core.serialization import component_from_dict, component_to_dict

import ragkit
from ragkit.errors import InvalidParameter

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*REPO.glob("pipelines/*.yaml"), *REPO.glob("indexers/*.yaml")])


def _normalized(data: dict[str, Any]) -> dict[str, Any]:
    """A pipeline dict whose connection order does not matter (Haystack lists them by graph
    walk, which follows the order components were added: YAML order first, sorted keys after
    ``dumps``)."""
    conns = sorted(data["connections"], key=lambda c: (c["sender"], c["receiver"]))
    return {**data, "connections": conns}


def _given_in(given: Any, dumped: Any) -> bool:
    """Whether every key the YAML gave is in the dump with the same value (nested included)."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        return all(k in dumped and _given_in(v, dumped[k]) for k, v in given.items())
    if isinstance(given, float | int) and isinstance(dumped, float | int):
        return float(given) == float(dumped)
    return given == dumped


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_pipeline_round_trips_through_plain_haystack(path: Path) -> None:
    import yaml

    from ragkit.pipeline import pipeline_chain, read_pipeline_yaml

    text = path.read_text()
    if len(pipeline_chain(path)) > 1:  # a same_as variant: plain Haystack reads what it resolves to
        text = yaml.safe_dump(read_pipeline_yaml(path)[0], sort_keys=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # shipped YAML uses the current form
        first = Pipeline.loads(text)
        second = Pipeline.loads(first.dumps())
    assert _normalized(second.to_dict()) == _normalized(first.to_dict())
    assert set(second.to_dict()["components"]) == set(first.to_dict()["components"])
    source = yaml.safe_load(text)["components"]
    dumped = first.to_dict()["components"]
    for name, body in source.items():
        assert dumped[name]["type"] == body["type"]
        assert _given_in(body.get("init_parameters") or {}, dumped[name]["init_parameters"]), name


def _components() -> list[type]:
    from ragkit.testing.scorer import FixedRelevanceScorer
    from ragkit.testing.scripted import ScriptedChatGenerator

    found = {getattr(ragkit, name) for name in ragkit.__all__}
    found |= {FixedRelevanceScorer, ScriptedChatGenerator}
    return sorted(
        (c for c in found if isinstance(c, type) and issubclass(c, Component)),
        key=lambda c: c.__name__,
    )


_REQUIRED = {"CrossEncoderScorer": {"model": "some/cross-encoder"}}


@pytest.mark.parametrize("cls", _components(), ids=lambda c: c.__name__)
def test_every_component_round_trips_with_its_defaults(cls: type) -> None:
    instance = cls(**_REQUIRED.get(cls.__name__, {}))
    data = component_to_dict(instance, "c")
    again = component_from_dict(cls, data, "c")
    assert component_to_dict(again, "c") == data


def test_nested_settings_and_a_nested_generator_round_trip_when_built_in_python() -> None:
    from ragkit import AdaptiveNoteAnswerer, ChunkSelector, RapidReader
    from ragkit.testing.scripted import ScriptedChatGenerator

    answerer = AdaptiveNoteAnswerer(
        generator=ScriptedChatGenerator(replies=["Nile"], default_reply="?"),
        fitter={"type": "ragkit.answering.components.ContextFitter", "init_parameters": {}},
        loop={"max_step": 2},
    )
    selector = ChunkSelector(budget=300, search={"iterations": 5}, utility={"link": 0.2})
    reader = RapidReader(
        target={"name": "qwen2.5-coder-1.5b-instruct", "n_ctx": 4096},
        drafter={"name": "qwen2.5-coder-0.5b-instruct"},
        speculation={"gamma": 4, "fallback": {"kind": "ngram", "max_ngram": 2}},
        context={"ratio": 16},
    )
    for component in (answerer, selector, reader):
        data = component_to_dict(component, "c")
        again = component_from_dict(type(component), data, "c")
        assert component_to_dict(again, "c") == data
    data = component_to_dict(answerer, "answerer")
    nested = data["init_parameters"]["generator"]
    assert nested["type"] == "ragkit.testing.scripted.ScriptedChatGenerator"
    again = component_from_dict(AdaptiveNoteAnswerer, data, "answerer")
    assert isinstance(again.generator, ScriptedChatGenerator)
    assert again.generator.replies == ["Nile"] and again.loop.max_step == 2


def test_a_nested_generator_error_names_its_key(tmp_path: Path) -> None:
    from ragkit import AdaptiveNoteAnswerer
    from ragkit.pipeline import PipelineError, load_pipeline

    data = {
        "type": "ragkit.notes.components.AdaptiveNoteAnswerer",
        "init_parameters": {
            "generator": {
                "type": "ragkit.models.components.LocalChatGenerator",
                "init_parameters": {"generation_kwargs": {"beams": 3}},
            }
        },
    }
    with pytest.raises(InvalidParameter) as err:
        component_from_dict(AdaptiveNoteAnswerer, data, "answerer")
    assert err.value.parameter == "generator.init_parameters.generation_kwargs"
    path = tmp_path / "p.yaml"
    path.write_text(
        "components:\n  answerer:\n    type: ragkit.notes.components.AdaptiveNoteAnswerer\n"
        "    init_parameters:\n      generator:\n"
        "        type: ragkit.models.components.LocalChatGenerator\n"
        "        init_parameters: {generation_kwargs: {beams: 3}}\nconnections: []\n"
    )
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    assert str(info.value).startswith(
        f"{path}: components.answerer.init_parameters.generator.init_parameters."
        "generation_kwargs: unknown generation kwarg 'beams'"
    )
