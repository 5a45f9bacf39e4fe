"""Runner and report: scoring, resume after interruption, truncated last line, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit.evaluation.datasets import Dataset, Passage, QAExample
from ragkit.evaluation.report import (
    ResultsWriter,
    format_summary_table,
    read_records,
    summarize,
)
from ragkit.evaluation.runner import AnswerResult, run_eval


def _dataset(n: int = 5) -> Dataset:
    examples = []
    for i in range(n):
        passages = [Passage(id=f"p{i}", title=f"T{i}", text=f"answer{i}")]
        examples.append(
            QAExample(
                id=f"q{i}",
                question=f"question {i}?",
                answers=[f"answer{i}"],
                passages=passages,
                gold_passage_ids=[f"p{i}"],
            )
        )
    return Dataset(name="toy", examples=examples)


class FakePipeline:
    """Answers right on even questions, wrong on odd ones; can die after N calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_after = fail_after

    def __call__(self, ex: QAExample) -> AnswerResult:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append(ex.id)
        i = int(ex.id[1:])
        answer = ex.answers[0] if i % 2 == 0 else "wrong"
        return AnswerResult(answer=answer, retrieved_ids=["zz", f"p{i}"], seconds=0.5)


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_records(path)]


def test_run_eval_scores_and_summarizes(tmp_path: Path) -> None:
    summary = run_eval(
        _dataset(4), FakePipeline(), tmp_path, limit=None, resume=False, progress=False
    )
    assert summary["count"] == 4 and summary["dataset"] == "toy"
    m = summary["metrics"]
    assert m["em"] == 0.5 and m["accuracy"] == 0.5
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1.0 and m["recall@10"] == 1.0
    assert summary["mean_seconds"] == 0.5
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    record = read_records(tmp_path / "results.jsonl")[0]
    assert record["prediction"] == "answer0" and record["metrics"]["f1"] == 1.0
    table = format_summary_table(summary)
    assert "recall@5" in table and "1.0000" in table


def test_resume_after_interruption_with_truncated_line(tmp_path: Path) -> None:
    ds = _dataset(5)
    first = FakePipeline(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_eval(ds, first, tmp_path, limit=None, resume=False, progress=False)
    results = tmp_path / "results.jsonl"
    assert _ids(results) == ["q0", "q1", "q2"]
    # Simulate a kill in the middle of writing q2: cut its line in half.
    text = results.read_text()
    last_start = text.rstrip("\n").rfind("\n") + 1
    results.write_text(text[: last_start + 20])
    assert _ids(results) == ["q0", "q1"]  # the partial line is tolerated

    second = FakePipeline()
    summary = run_eval(ds, second, tmp_path, limit=None, resume=True, progress=True)
    assert second.calls == ["q2", "q3", "q4"]  # nothing redone except the lost one
    assert _ids(results) == ["q0", "q1", "q2", "q3", "q4"]  # no duplicates, no glued lines
    assert summary["count"] == 5

    third = FakePipeline()
    run_eval(ds, third, tmp_path, limit=None, resume=True, progress=False)
    assert third.calls == []


def test_limit_and_fresh_run_overwrites(tmp_path: Path) -> None:
    ds = _dataset(5)
    run_eval(ds, FakePipeline(), tmp_path, limit=None, resume=False, progress=False)
    summary = run_eval(ds, FakePipeline(), tmp_path, limit=2, resume=False, progress=False)
    assert summary["count"] == 2 and summary["limit"] == 2
    assert _ids(tmp_path / "results.jsonl") == ["q0", "q1"]


def test_no_answers_or_gold_skips_those_metrics(tmp_path: Path) -> None:
    ds = Dataset(
        name="mixed",
        examples=[
            QAExample(id="r", question="q", answers=[], passages=[], gold_passage_ids=["g"]),
            QAExample(id="a", question="q", answers=["x"], passages=[], gold_passage_ids=[]),
        ],
    )

    def answer(ex: QAExample) -> AnswerResult:
        return AnswerResult(answer="x", retrieved_ids=["g"])

    summary = run_eval(
        ds, answer, tmp_path, limit=None, resume=False, progress=False, k_values=(2,)
    )
    assert summary["metrics"] == {
        "em": 1.0,
        "f1": 1.0,
        "accuracy": 1.0,
        "rouge_l": 1.0,
        "recall@2": 1.0,
        "recall@all": 1.0,
    }
    assert summary["metric_counts"]["em"] == 1 and summary["metric_counts"]["recall@2"] == 1
    assert summary["mean_seconds"] >= 0.0


def test_read_records_rejects_corruption_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{broken\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2"):
        read_records(path)


def test_writer_appends_after_partial_tail(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "metr')
    with ResultsWriter(path, append=True) as writer:
        writer.write({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "c"}\n'


def test_summarize_empty() -> None:
    summary = summarize([])
    assert summary["count"] == 0 and summary["metrics"] == {}
    assert "questions" in format_summary_table(summary)


def test_recall_over_all_read_passages_and_mean_usage(tmp_path: Path) -> None:
    # an iterative pipeline reads 12 passages; the second gold one comes 12th, past every k
    ds = Dataset(
        name="iter",
        examples=[
            QAExample(
                id="q", question="q", answers=["x"], passages=[], gold_passage_ids=["g1", "g2"]
            )
        ],
    )
    read = ["g1", *[f"n{i}" for i in range(10)], "g2"]

    def answer(ex: QAExample) -> AnswerResult:
        return AnswerResult(
            answer="x", retrieved_ids=read, extra={"usage": {"llm_calls": 8, "prompt_tokens": 900}}
        )

    summary = run_eval(ds, answer, tmp_path, progress=False, k_values=(1, 10))
    assert summary["metrics"]["recall@10"] == 0.5
    assert summary["metrics"]["recall@all"] == 1.0
    assert summary["mean_usage"] == {"llm_calls": 8.0, "prompt_tokens": 900.0}
