"""The shipped context-shaping pipelines through the real CLI: --trace and --json reports."""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import ragkit

from ragkit.answering.run import shaping_lines

QUESTION = "Which planet has the strongest winds?"


def test_reorder_pipeline_reports_order_in_json(sample_store: Path) -> None:
    code, out, err = ragkit(
        "query", QUESTION, "--store", str(sample_store), "--pipeline", "reorder_rag", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    report = data["shaping"]["reorderer"]
    order = report["order"]
    assert sorted(order) == list(range(1, len(order) + 1)) and order[0] == 1
    assert report["reordered"] is (len(order) >= 5)
    assert all(h["action"] == "demoted" for h in report["hard_negatives"])
    if not report["hard_negatives"]:
        assert order[-1] == 2
    assert data["answer"]


def test_corag_pipeline_selects_within_budget_and_traces(sample_store: Path) -> None:
    code, out, err = ragkit(
        "query", QUESTION, "--store", str(sample_store), "--pipeline", "corag", "--trace"
    )
    assert code == 0, err
    assert out.startswith("answer: ")
    line = out.split("\ntrace:\n", 1)[1].strip()
    assert line.startswith("selector: ranks ")
    used, budget = line.split(" tokens, ")[0].rsplit(" ", 1)[1].split("/")
    assert 0 < int(used) <= int(budget) == 432


def test_shaping_lines_render_both_reports() -> None:
    lines = shaping_lines(
        {
            "reorderer": {
                "component": "Reorderer",
                "reordered": True,
                "order": [1, 3, 2],
                "hard_negatives": [
                    {"retrieval_rank": 2, "action": "demoted", "relevance": 0.1234, "id": "x"}
                ],
            },
            "selector": {
                "component": "ChunkSelector",
                "selected": [4, 1],
                "candidates": 30,
                "tokens": 700,
                "budget": 1024,
                "states_scored": 321,
                "seconds": 0.0042,
                "question_type": "multi",
                "config": {"c": 2.0, "lam": 0.05, "iterations": 30},
                "fallback": None,
                "trimmed": False,
            },
        }
    )
    assert lines == [
        "reorderer: order 1 3 2 (retrieval ranks); hard negatives: rank 2 (demoted, "
        "relevance 0.123)",
        "selector: ranks 4 1 of 30 candidates, 700/1024 tokens, 321 states scored in 4.2 ms "
        "(multi: C=2.0 lambda=0.05 iterations=30)",
    ]


def test_plain_pipeline_trace_says_nothing_was_shaped(sample_store: Path) -> None:
    code, out, err = ragkit(
        "query", QUESTION, "--store", str(sample_store), "--pipeline", "retrieve", "--trace"
    )
    assert code == 0, err
    assert "nothing to trace in this pipeline" in out


def test_negative_lambda_in_yaml_is_a_path_error(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "pipelines" / "corag.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("lam: 0.1", "lam: -0.5"))
    code, _, err = ragkit("pipelines", "validate", str(bad))
    assert code == 2
    assert (
        f"{bad}: components.selector.init_parameters.search.lam: must be a finite number >= 0"
        in err
    )
