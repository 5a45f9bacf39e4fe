"""``skip``: a held-out slice (tune on questions 101-200, report 1-100) without copying data."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import ragkit

from ragkit.evaluation.datasets import Dataset, Passage, QAExample
from ragkit.evaluation.report import read_records
from ragkit.evaluation.runner import AnswerResult, run_eval


def _dataset(n: int) -> Dataset:
    return Dataset(
        name="toy",
        examples=[
            QAExample(
                id=f"q{i}",
                question=f"question {i}?",
                answers=[f"answer{i}"],
                passages=[Passage(id=f"p{i}", title=f"T{i}", text=f"answer{i}")],
                gold_passage_ids=[f"p{i}"],
            )
            for i in range(n)
        ],
    )


class FakePipeline:
    """Answers every question right and records which it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, ex: QAExample) -> AnswerResult:
        self.calls.append(ex.id)
        return AnswerResult(answer=ex.answers[0], retrieved_ids=[ex.gold_passage_ids[0]])


def test_skip_takes_the_slice_after_the_first_questions(tmp_path: Path) -> None:
    pipe = FakePipeline()
    summary = run_eval(_dataset(6), pipe, tmp_path, skip=2, limit=3, progress=False)
    assert pipe.calls == ["q2", "q3", "q4"]
    assert summary["count"] == 3 and summary["skip"] == 2 and summary["limit"] == 3
    assert [r["id"] for r in read_records(tmp_path / "results.jsonl")] == ["q2", "q3", "q4"]


def test_resume_extends_a_slice_and_summarizes_only_it(tmp_path: Path) -> None:
    run_eval(_dataset(6), FakePipeline(), tmp_path, skip=1, limit=2, progress=False)
    pipe = FakePipeline()
    summary = run_eval(_dataset(6), pipe, tmp_path, skip=1, limit=4, resume=True, progress=False)
    assert pipe.calls == ["q3", "q4"]  # q1, q2 were done; q0 and q5 are outside the slice
    assert summary["count"] == 4


def test_skip_past_the_end_answers_nothing(tmp_path: Path) -> None:
    pipe = FakePipeline()
    summary = run_eval(_dataset(3), pipe, tmp_path, skip=5, progress=False)
    assert pipe.calls == [] and summary["count"] == 0


def test_negative_skip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="skip"):
        run_eval(_dataset(3), FakePipeline(), tmp_path, skip=-1, progress=False)


def test_cli_skip_must_not_be_negative(mini_qa_file: Path, tmp_path: Path) -> None:
    code, _, err = ragkit("eval", str(mini_qa_file), "--skip", "-1", "--out", str(tmp_path / "run"))
    assert code == 2  # typer's usage error, as for --limit 0
    assert "Invalid value for '--skip'" in err
    assert not (tmp_path / "run").exists()
