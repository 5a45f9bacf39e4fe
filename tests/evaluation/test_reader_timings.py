"""Reader latency in ``ragkit eval``: prefill and decode per question and their means.

A generator reply splits its time into ``prefill_s`` (until the first token) and ``decode_s``
(the rest); eval sums them over every reply of a question (loops call the reader several times)
into ``seconds_prefill`` / ``seconds_decode``. One eval runs for real on the packaged SmolLM2
(profile cpu-small), so a broken split shows up as a missing or zero number there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from haystack import component
from haystack.dataclasses import ChatMessage

from ragkit.evaluation.evaluate import _reader_split, evaluate
from ragkit.evaluation.report import format_summary_table, summarize
from ragkit.models.base import GenerationResult
from ragkit.models.chat import ChatGeneratorBase, ReaderTimings, reader_timings, split_timings

REPO = Path(__file__).resolve().parents[2]


class _TimedLM:
    """A backend whose every generation took ``seconds``, ``first`` of them until token one."""

    name = "fake"

    def __init__(self, seconds: float, first: float) -> None:
        self.seconds, self.first = seconds, first

    def generate(self, chat: list[dict[str, str]], on_token: Any = None, **_: Any) -> Any:
        return GenerationResult(
            text="ok",
            token_ids=[1, 2],
            prompt_tokens=10,
            completion_tokens=2,
            seconds=self.seconds,
            first_token_seconds=self.first,
            stop_reason="eos",
        )

    def close(self) -> None:
        pass


@component
class _TimedGenerator(ChatGeneratorBase):
    """A ragkit chat generator over :class:`_TimedLM` (the shared ``run`` and reply meta)."""

    def __init__(self, seconds: float = 1.0, first: float = 0.25) -> None:
        self._init_generation("fake", None)
        self.seconds, self.first = seconds, first

    def _load(self) -> _TimedLM:
        return _TimedLM(self.seconds, self.first)


def _ask(gen: _TimedGenerator) -> dict[str, Any]:
    return gen.run([ChatMessage.from_user("q?")])["replies"][0].meta["timings"]


def test_reply_meta_splits_the_call_into_prefill_and_decode() -> None:
    timings = _ask(_TimedGenerator(seconds=1.0, first=0.25))
    assert timings["prefill_s"] == 0.25 and timings["decode_s"] == 0.75
    assert timings["prefill_s"] + timings["decode_s"] == timings["seconds"]
    # a first-token time past the end (clock skew) cannot make decode negative
    assert split_timings(1.0, 1.5) == (1.0, 0.0)
    assert split_timings(1.0, -0.1) == (0.0, 1.0)


def test_ledger_sums_every_reply_in_the_block_only() -> None:
    gen = _TimedGenerator(seconds=1.0, first=0.25)
    _ask(gen)  # outside any block: recorded nowhere
    with reader_timings() as ledger:
        for _ in range(3):  # a loop calling its reader several times (Adaptive-Note)
            _ask(gen)
        with reader_timings() as inner:  # a nested block takes its replies; the outer resumes
            _ask(gen)
        _ask(gen)
    assert inner.calls == 1 and inner.prefill_s == 0.25
    assert ledger.calls == 4
    assert ledger.prefill_s == pytest.approx(1.0) and ledger.decode_s == pytest.approx(3.0)
    _ask(gen)
    assert ledger.calls == 4  # closed


def test_questions_without_a_reader_get_zero_and_unmeasured_readers_none() -> None:
    measured = ReaderTimings()
    measured.add(0.5, 0.25)
    measured.add(1.5, 0.75)
    assert _reader_split(measured, ran=True) == (2.0, 1.0)
    assert _reader_split(ReaderTimings(), ran=False) == (0.0, 0.0)  # skipped / retrieval only
    assert _reader_split(ReaderTimings(), ran=True) == (None, None)  # e.g. an OpenAI server


def test_summary_means_skip_unmeasured_records_and_the_table_shows_them() -> None:
    records = [
        {"seconds": 3.0, "seconds_prefill": 2.0, "seconds_decode": 1.0},
        {"seconds": 1.0, "seconds_prefill": 0.0, "seconds_decode": 0.0},  # reader skipped
        {"seconds": 2.0, "seconds_prefill": None, "seconds_decode": None},  # not measured
        {"seconds": 2.0},  # a record from before the split existed
    ]
    summary = summarize(records)
    assert summary["mean_seconds_prefill"] == 1.0 and summary["mean_seconds_decode"] == 0.5
    table = format_summary_table(summary)
    assert "mean_seconds_prefill  1.000" in table and "mean_seconds_decode   0.500" in table
    empty = summarize([{"seconds": 1.0}])
    assert empty["mean_seconds_prefill"] is None and empty["mean_seconds_decode"] is None
    assert "mean_seconds_prefill" not in format_summary_table(empty)


def _small_profile(tmp_path: Path) -> Path:
    """cpu-small with short answers: each token costs tens of ms on 2 busy cores."""
    data = yaml.safe_load((REPO / "configs" / "cpu-small.yaml").read_text())
    data["components"]["generator"]["init_parameters"]["generation_kwargs"] = {"max_new_tokens": 8}
    path = tmp_path / "cpu-small-short.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_eval_writes_prefill_and_decode_per_question_and_their_means(
    tmp_path: Path, mini_qa_file: Path
) -> None:
    out = tmp_path / "run"
    summary = evaluate(mini_qa_file, "rag", _small_profile(tmp_path), out_dir=out, progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        prefill, decode = record["seconds_prefill"], record["seconds_decode"]
        assert prefill > 0 and decode > 0, record
        assert prefill + decode <= record["seconds"]
        # the reply's own split is the one eval summed (one reader call per question here)
        assert record["prediction"] is not None
    stored = json.loads((out / "summary.json").read_text())
    for key in ("mean_seconds_prefill", "mean_seconds_decode"):
        mean = sum(r[key.removeprefix("mean_")] for r in records) / len(records)
        assert stored[key] == pytest.approx(mean) and summary[key] == stored[key]
    assert stored["mean_seconds_prefill"] + stored["mean_seconds_decode"] <= stored["mean_seconds"]


def test_eval_without_a_reader_records_zero_reader_time(tmp_path: Path, mini_qa_file: Path) -> None:
    out = tmp_path / "run"
    summary = evaluate(mini_qa_file, "retrieve", out_dir=out, progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["seconds_prefill"], r["seconds_decode"]) for r in records] == [(0.0, 0.0)] * 2
    assert summary["mean_seconds_prefill"] == 0.0 and summary["mean_seconds_decode"] == 0.0
