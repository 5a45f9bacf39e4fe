"""`ragkit report`: eval run folders -> the Markdown results table and the F1 chart.

Hand-made runs are written in exactly the shape `ragkit eval` writes (`run.json`, `summary.json`,
`results.jsonl`, as in a real cpu-small run); one run is made for real with `ragkit.evaluate` and
a scripted reader, so a change in what eval writes shows up here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from cli_run import runner

from ragkit.cli import app
from ragkit.errors import InvalidInputError, RagkitError
from ragkit.evaluation.report import (
    bootstrap_interval,
    format_results_table,
    load_run_row,
    load_run_rows,
    parse_reference,
    plot_f1,
    report_header,
    write_report,
)

REPO = Path(__file__).resolve().parents[2]
PEER_LINE = (
    "plain RAG (BM25 top-5 pooled, qwen2.5-coder-1.5b-instruct-q4_k_m.gguf), 4 questions: "
    "EM 50.0 F1 62.5 recall@5 75.0; 13.1 s/question\n"
)


def make_run(
    folder: Path,
    pipeline: str,
    dataset: str,
    f1s: list[float],
    *,
    ids: list[str] | None = None,
    top_k: int | None = None,
    profile: str = "cpu-quality",
    limit: int | None = None,
) -> Path:
    """A run folder shaped like `ragkit eval --out folder` leaves it."""
    ids = ids or [f"{dataset}-{i}" for i in range(1, len(f1s) + 1)]
    folder.mkdir(parents=True)
    settings = {
        "dataset": dataset,
        "dataset_sha256": "d" * 64,
        "mode": "pooled",
        "pipeline": f"/repo/pipelines/{pipeline}.yaml",
        "pipeline_sha256": "p" * 64,
        "profile": profile,
        "profile_sha256": "f" * 64,
        "top_k": top_k,
    }
    (folder / "run.json").write_text(
        json.dumps({"format": 1, "key": "0123456789ab", "settings": settings}, indent=1)
    )
    records = []
    for i, (rid, f1) in enumerate(zip(ids, f1s, strict=True)):
        metrics = {
            "em": float(f1 == 1.0),
            "f1": f1,
            "accuracy": float(f1 > 0),
            "rouge_l": f1,
            "recall@1": 0.5,
            "recall@2": 1.0,
            "recall@5": 1.0 if i % 2 == 0 else 0.5,
            "recall@10": 1.0,
            "recall@all": 1.0,
        }
        records.append(
            {
                "id": rid,
                "question": f"question {rid}?",
                "answers": ["x"],
                "prediction": "x",
                "retrieved_ids": ["a", "b"],
                "gold_passage_ids": ["a"],
                "metrics": metrics,
                "seconds": 2.0 + i,
                "extra": {
                    "raw_answer": "x",
                    "usage": {"prompt_tokens": 600 + 10 * i, "completion_tokens": 4},
                    "sources": ["A"],
                },
            }
        )
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "count": len(records),
        "dataset": dataset,
        "limit": limit,
        "mean_seconds": 0.0,
        "metrics": {},
        "mode": "pooled",
        "out_dir": str(folder),
        "pipeline": pipeline,
        "profile": profile,
        "run_key": "0123456789ab",
        "top_k": top_k,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return folder


def test_row_means_interval_and_command(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", "corag", "hotpotqa", [1.0, 0.5, 0.0, 0.5], limit=4)
    row = load_run_row(run)
    assert (row.pipeline, row.dataset, row.questions) == ("corag", "hotpotqa", 4)
    assert row.em == 0.25 and row.f1 == 0.5 and row.recall5 == 0.75
    assert row.prompt_tokens == 615 and row.seconds == 3.5
    low, high = row.f1_interval
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert load_run_row(run).f1_interval == row.f1_interval  # seeded: reproducible
    assert row.command == (
        f"ragkit eval hotpotqa --pipeline corag --profile cpu-quality --limit 4 --out {run}"
    )
    assert row.pattern == "ragkit eval DATASET --pipeline PIPELINE --profile cpu-quality --limit 4"
    # a run killed mid-write leaves a partial last line: it is ignored
    with (run / "results.jsonl").open("a") as fh:
        fh.write('{"id": "hotpotqa-5", "metr')
    assert load_run_row(run).questions == 4


def test_bootstrap_interval_brackets_the_mean() -> None:
    assert bootstrap_interval([0.4] * 10) == pytest.approx((0.4, 0.4))
    low, high = bootstrap_interval([0.0, 1.0] * 50)
    assert low < 0.5 < high and high - low < 0.3
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_table_groups_datasets_and_keeps_the_reference_last(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path / "h-rag", "rag", "hotpotqa", [1.0, 0.0]),
        make_run(tmp_path / "w-rag", "rag", "2wiki", [0.5, 0.5]),
        make_run(tmp_path / "h-corag", "corag", "hotpotqa", [1.0, 1.0]),
    ]
    peer = parse_reference(PEER_LINE, "hotpotqa", source="peer.txt")
    rows, warnings = load_run_rows(runs, [peer])
    assert warnings == []
    assert [(r.pipeline, r.dataset) for r in rows] == [
        ("rag", "hotpotqa"),
        ("corag", "hotpotqa"),
        ("peer-rag", "hotpotqa"),
        ("rag", "2wiki"),
    ]
    table = format_results_table(rows).splitlines()
    assert table[0] == (
        "| pipeline | dataset | questions | EM | F1 | recall@5 | prompt tokens | s/question |"
    )
    assert table[2] == "| `rag` | HotpotQA | 2 | 50.0 | 50.0 | 75.0 | 605 | 2.5 |"
    assert table[4] == "| peer-rag (reference) | HotpotQA | 4 | 50.0 | 62.5 | 75.0 | - | 13.1 |"
    assert table[5].startswith("| `rag` | 2WikiMultihopQA | 2 | 0.0 | 50.0 |")
    header = report_header(rows, machine="2 idle cores", commit="abc1234")
    assert "at commit abc1234 on 2 idle cores" in header
    assert "`ragkit eval DATASET --pipeline PIPELINE --profile cpu-quality --out RUN`" in header
    assert "reference rows: peer-rag" in header


def test_different_questions_warn_or_are_restricted(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "rag", "2wiki", [1.0, 0.0, 0.0], ids=["q1", "q2", "q3"])
    b = make_run(tmp_path / "b", "corag", "2wiki", [1.0, 1.0], ids=["q1", "q2"])
    rows, warnings = load_run_rows([a, b])
    assert [r.questions for r in rows] == [3, 2]
    assert len(warnings) == 1 and "answered different questions" in warnings[0]
    assert "2 shared" in warnings[0] and "--shared" in warnings[0]
    rows, warnings = load_run_rows([a, b], shared=True)
    assert warnings == [] and [r.questions for r in rows] == [2, 2]
    assert rows[0].f1 == 0.5
    c = make_run(tmp_path / "c", "corag", "2wiki", [1.0], ids=["q9"])
    with pytest.raises(InvalidInputError, match="share no question"):
        load_run_rows([a, c], shared=True)


def test_rows_of_one_pipeline_are_told_apart(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "rag", "hotpotqa", [1.0])
    b = make_run(tmp_path / "b", "rag", "hotpotqa", [0.0], top_k=8)
    rows, _ = load_run_rows([a, b])
    assert [r.pipeline for r in rows] == ["rag", "rag (--top-k 8)"]


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no results.jsonl here"):
        load_run_row(tmp_path)
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(InvalidInputError, match="no answered question"):
        load_run_row(tmp_path)
    with pytest.raises(InvalidInputError, match="no eval runs given"):
        load_run_rows([])
    with pytest.raises(InvalidInputError, match="peer.txt: no 'N questions"):
        parse_reference("nothing here", "hotpotqa", source="peer.txt")


def test_chart_and_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows, _ = load_run_rows(
        [make_run(tmp_path / "a", "rag", "hotpotqa", [1.0, 0.0, 0.5])],
        [parse_reference(PEER_LINE, "hotpotqa")],
    )
    written = write_report(rows, tmp_path / "report", header="HEADER")
    assert list(written) == ["table", "chart"]
    assert written["chart"].read_bytes().startswith(b"\x89PNG")
    text = written["table"].read_text()
    assert text.startswith("HEADER\n\n| pipeline |")
    assert "![F1 with its 95% bootstrap interval per pipeline](f1.png)" in text
    assert (
        f"ragkit eval hotpotqa --pipeline rag --profile cpu-quality --out {tmp_path / 'a'}" in text
    )


def test_missing_matplotlib_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "a", "rag", "hotpotqa", [1.0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rows, _ = load_run_rows([run])
    with pytest.raises(RagkitError, match=r"pip install 'ragkit\[bench\]'.*--no-chart"):
        plot_f1(rows, tmp_path / "f1.png")
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 1 and result.stderr.startswith(
        "error: the F1 chart needs matplotlib"
    )
    assert not (tmp_path / "rep").exists()  # nothing written before the failure
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep"), "--no-chart"])
    assert result.exit_code == 0 and (tmp_path / "rep" / "results.md").is_file()


def test_cli_report(tmp_path: Path) -> None:
    runs = [make_run(tmp_path / n, n, "2wiki", [1.0, 0.5]) for n in ("rag", "reorder_rag")]
    (tmp_path / "peer.txt").write_text(PEER_LINE)
    args = ["report", *map(str, runs), "--reference", f"2wiki={tmp_path / 'peer.txt'}"]
    args += ["--out", str(tmp_path / "rep"), "--no-chart", "--machine", "test box"]
    args += ["--commit", "abc1234"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Measured ") and "at commit abc1234 on test box;" in lines[0]
    assert lines[2].startswith("| pipeline |") and len(lines) == 7
    assert lines[-1].startswith("| peer-rag (reference) | 2WikiMultihopQA | 4 |")
    assert result.stderr == f"wrote {tmp_path / 'rep' / 'results.md'}\n"
    as_json = runner.invoke(app, [*args, "--json"])
    data = json.loads(as_json.stdout)
    assert [r["pipeline"] for r in data["rows"]] == ["rag", "reorder_rag", "peer-rag"]
    assert data["rows"][0]["f1"] == 0.75 and data["warnings"] == []

    bad = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2
    assert (
        bad.stderr
        == f"error: {tmp_path / 'nope'}: no results.jsonl here; give a `ragkit eval --out` folder\n"
    )
    bad = runner.invoke(app, ["report", str(runs[0]), "--reference", "2wiki"])
    assert (
        bad.exit_code == 2 and bad.stderr == "error: --reference '2wiki': expected DATASET=FILE\n"
    )


def test_report_on_a_real_eval_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_qa_file: Path
) -> None:
    """`ragkit.evaluate` with a scripted reader writes the folder `ragkit report` reads."""
    from ragkit.evaluation.evaluate import evaluate

    spec = yaml.safe_load((REPO / "pipelines" / "rag.yaml").read_text())
    spec["components"].pop("fitter")
    spec["components"]["generator"] = {
        "type": "ragkit.testing.scripted.ScriptedChatGenerator",
        "init_parameters": {
            "rules": [
                {"contains": "Question: Which planet", "reply": "Neptune"},
                {"contains": "Question: Where is Etna", "reply": "in Sicily"},
            ]
        },
    }
    for edge in spec["connections"]:
        if edge["receiver"] == "fitter.documents":
            edge["receiver"] = "prompt_builder.documents"
        if edge["sender"] == "fitter.documents":
            edge["sender"] = "joiner.documents"
    spec["connections"] = [dict(t) for t in {tuple(sorted(e.items())) for e in spec["connections"]}]
    pipe = tmp_path / "scripted_rag.yaml"
    pipe.write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    evaluate(mini_qa_file, str(pipe), out_dir="runs/scripted", progress=False)
    rows, warnings = load_run_rows(["runs/scripted"])
    assert warnings == [] and len(rows) == 1
    row = rows[0]
    assert (row.pipeline, row.dataset, row.questions) == ("scripted_rag", "mini", 2)
    assert row.em == 0.5 and row.f1 == pytest.approx(5 / 6) and row.recall5 == 1.0
    assert row.prompt_tokens and row.seconds is not None and row.f1_interval
    assert row.command.startswith(f"ragkit eval mini --pipeline {pipe}")
    assert row.command.endswith("--out runs/scripted")
    assert (
        format_results_table(rows)
        .splitlines()[2]
        .startswith("| `scripted_rag` | mini | 2 | 50.0 |")
    )
