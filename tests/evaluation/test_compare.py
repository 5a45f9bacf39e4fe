"""`ragkit compare`: two eval runs paired by question id, read recall from shaping reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import runner

from ragkit.cli import app
from ragkit.errors import InvalidInputError
from ragkit.evaluation.compare import compare_runs, paired_bootstrap, read_ids


def _record(qid: str, em: float, f1: float, retrieved: list[str], **extra: object) -> dict:
    return {
        "id": qid,
        "question": f"q{qid}",
        "answers": ["a"],
        "prediction": "a" if em else "b",
        "retrieved_ids": retrieved,
        "gold_passage_ids": ["g1", "g2"],
        "metrics": {"em": em, "f1": f1},
        "seconds": 2.0,
        "extra": {"usage": {"prompt_tokens": 100}, **extra},
    }


def _run(tmp_path: Path, name: str, records: list[dict]) -> Path:
    out = tmp_path / name
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def test_read_ids_follow_the_selector_and_reorderer_reports() -> None:
    ranked = ["x", "g1", "y", "g2", "z"]
    selected = {"shaping": {"selector": {"selected": [4, 2]}}}
    assert read_ids(_record("1", 1, 1, ranked, **selected)) == ["g2", "g1"]
    reordered = {"shaping": {"reorderer": {"order": [1, 3, 2]}}}  # 4 and 5 dropped
    assert read_ids(_record("1", 1, 1, ranked, **reordered)) == ["x", "y", "g1"]
    assert read_ids(_record("1", 1, 1, ranked)) == ranked


def test_compare_pairs_by_id_and_reports_flips(tmp_path: Path) -> None:
    base = _run(
        tmp_path,
        "base",
        [_record("1", 1, 1.0, ["g1", "g2"]), _record("2", 0, 0.0, ["x"]), _record("9", 1, 1, [])],
    )
    other = _run(
        tmp_path,
        "other",
        [
            _record("2", 1, 1.0, ["x", "g1"], shaping={"selector": {"selected": [2]}}),
            _record("1", 0, 0.5, ["g1", "g2"], shaping={"selector": {"selected": [1]}}),
        ],
    )
    cmp = compare_runs(base, other)
    assert cmp.questions == 2  # question 9 is in one run only
    assert cmp.only_first == ["1"] and cmp.only_second == ["2"]
    assert cmp.diffs["f1"][0] == pytest.approx(0.25)
    assert cmp.means[0]["read_recall"] == pytest.approx(0.5)  # g1+g2, then nothing
    assert cmp.means[1]["read_recall"] == pytest.approx(0.5)  # g1 alone, twice


def test_bootstrap_interval_is_zero_width_without_differences() -> None:
    assert paired_bootstrap([1.0, 0.0], [1.0, 0.0]) == (0.0, 0.0, 0.0)
    mean, lo, hi = paired_bootstrap([0.0] * 10, [1.0] * 5 + [0.0] * 5)
    assert mean == 0.5 and 0.0 <= lo < 0.5 < hi <= 1.0


def test_cli_prints_table_and_json(tmp_path: Path) -> None:
    base = _run(tmp_path, "base", [_record("1", 0, 0.0, ["g1"])])
    other = _run(tmp_path, "other", [_record("1", 1, 1.0, ["g1", "g2"])])
    res = runner.invoke(app, ["compare", str(base), str(other)])
    assert res.exit_code == 0, res.output
    assert "| other | 100.0 | 100.0 | 100.0 | 100 | 2.0 |" in res.output
    assert "F1 other - base: +100.0" in res.output
    res = runner.invoke(app, ["compare", str(base), str(other), "--json"])
    assert json.loads(res.output)["differences"]["em"][0] == 1.0


def test_missing_or_disjoint_runs_are_one_line_errors(tmp_path: Path) -> None:
    base = _run(tmp_path, "base", [_record("1", 0, 0.0, [])])
    res = runner.invoke(app, ["compare", str(base), str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no results.jsonl here" in res.output
    other = _run(tmp_path, "other", [_record("2", 0, 0.0, [])])
    with pytest.raises(InvalidInputError, match="share no question id"):
        compare_runs(base, other)
