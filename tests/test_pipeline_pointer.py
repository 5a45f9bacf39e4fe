"""A pipeline variant is ``same_as: BASE`` plus the settings it changes (issue 28, item 5).

``memorag_lite.yaml`` and ``rag_short.yaml`` were full copies of ``memorag.yaml`` and
``rag.yaml`` that differed in one or two settings; now they state only those, so a fix to the
base reaches the variant. These tests pin what the variant resolves to, that a base change
reaches it (and its eval key), and the one-line errors for a bad pointer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_run import ragkit as run_cli

from ragkit.config import read_yaml
from ragkit.pipeline import PipelineError, pipeline_chain, pipeline_sha256, read_pipeline_yaml

REPO = Path(__file__).resolve().parent.parent
PIPES = REPO / "pipelines"


def test_memorag_lite_is_memorag_with_a_gist_memory_and_score_order() -> None:
    lite, _ = read_pipeline_yaml(PIPES / "memorag_lite.yaml")
    base = read_yaml(PIPES / "memorag.yaml")
    assert pipeline_chain(PIPES / "memorag_lite.yaml") == [
        PIPES / "memorag_lite.yaml",
        PIPES / "memorag.yaml",
    ]
    recall = lite["components"]["memory_recall"]["init_parameters"]
    assert recall["memory"]["kind"] == "gist"
    assert base["components"]["memory_recall"]["init_parameters"]["memory"]["kind"] == "kv"
    assert lite["components"]["clue_retriever"]["init_parameters"]["order"] == "score"
    # everything else is the base's: the other memory settings, components and connections
    assert recall["model"] == base["components"]["memory_recall"]["init_parameters"]["model"]
    assert recall["answer_hint"] is False
    assert lite["connections"] == base["connections"]
    assert set(lite["components"]) == set(base["components"])
    for name in set(base["components"]) - {"memory_recall", "clue_retriever"}:
        assert lite["components"][name] == base["components"][name], name


def test_rag_short_differs_from_rag_only_in_its_prompt() -> None:
    short, _ = read_pipeline_yaml(PIPES / "rag_short.yaml")
    base = read_yaml(PIPES / "rag.yaml")
    differ = {n for n in base["components"] if short["components"][n] != base["components"][n]}
    assert differ == {"prompt_builder"}
    assert 'role="system"' in short["components"]["prompt_builder"]["init_parameters"]["template"]


def _pair(tmp_path: Path, top_k: int = 4) -> tuple[Path, Path]:
    base = read_yaml(PIPES / "retrieve.yaml")
    retriever = next(n for n, c in base["components"].items() if "top_k" in c["init_parameters"])
    base["components"][retriever]["init_parameters"]["top_k"] = top_k
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        f"same_as: base\ncomponents:\n  {retriever}:\n    init_parameters:\n      top_k: 9\n"
    )
    return tmp_path / "base.yaml", variant


def test_a_change_to_the_base_reaches_the_variant_and_its_eval_key(tmp_path: Path) -> None:
    base, variant = _pair(tmp_path)
    data, _ = read_pipeline_yaml(variant)
    key = pipeline_sha256(variant)
    assert key != pipeline_sha256(base)
    assert 9 in [c["init_parameters"].get("top_k") for c in data["components"].values()]
    text = yaml.safe_load(base.read_text())
    text["connections"] = list(reversed(text["connections"]))
    base.write_text(yaml.safe_dump(text))
    assert read_pipeline_yaml(variant)[0]["connections"] == text["connections"]
    assert pipeline_sha256(variant) != key  # a --resume of the variant sees the base change


def test_plain_file_keeps_its_byte_hash(tmp_path: Path) -> None:
    import hashlib

    base, _ = _pair(tmp_path)
    assert pipeline_sha256(base) == hashlib.sha256(base.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("same_as: nowhere\n", "unknown pipeline 'nowhere'"),
        ("same_as: loop\n", "points back at"),
        ("same_as: ''\n", "must name a pipeline"),
        ("same_as: base\nconnections: []\n", "holds only same_as and components"),
        ("same_as: base\ncomponents:\n  retriver: {init_parameters: {top_k: 2}}\n", "no component"),
        ("same_as: base\ncomponents:\n  x: [1]\n", "no component"),
    ],
)
def test_bad_pointer_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    _pair(tmp_path)
    bad = tmp_path / "loop.yaml"
    bad.write_text(text)
    with pytest.raises(PipelineError) as info:
        read_pipeline_yaml(bad)
    line = str(info.value)
    assert message in line and str(bad) in line and "\n" not in line


def test_bad_change_shape_names_the_component(tmp_path: Path) -> None:
    base, _ = _pair(tmp_path)
    name = next(iter(read_yaml(base)["components"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"same_as: base\ncomponents:\n  {name}: {{init_parameters: [1, 2]}}\n")
    with pytest.raises(PipelineError, match=f"components.{name}: expected init_parameters"):
        read_pipeline_yaml(bad)


def test_cli_show_prints_plain_haystack_yaml_of_the_variant() -> None:
    from haystack import Pipeline

    import ragkit  # noqa: F401  (puts ragkit on Haystack's allowlist)

    code, out, err = run_cli("pipelines", "show", "memorag_lite")
    assert code == 0, err
    assert out.startswith("# ") and "memorag.yaml" in out.splitlines()[0]
    pipe = Pipeline.loads(out)
    assert pipe.to_dict()["components"]["clue_retriever"]["init_parameters"]["order"] == "score"
    code, out, err = run_cli("pipelines", "validate", str(PIPES / "memorag_lite.yaml"))
    assert code == 0 and out.strip().endswith(": ok"), err
