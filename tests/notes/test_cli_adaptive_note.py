"""adaptive_note.yaml through the real CLI: query --trace/--json and eval, with the profile's
generator swapped into the answerer (an OpenAI-compatible server with scripted replies), and
once end to end with the real SmolLM2 (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import ragkit, reader_profile

from ragkit.testing import OpenAICompatServer

REPO = Path(__file__).resolve().parent.parent.parent


QA = [
    (
        "Who wrote Hamlet?",
        "William Shakespeare",
        "Hamlet",
        "Hamlet is a tragedy by William Shakespeare.",
    ),
    (
        "What is the capital of Peru?",
        "Lima",
        "Peru",
        "Lima is the capital and largest city of Peru.",
    ),
    ("How many legs does a spider have?", "eight", "Spider", "Spiders have eight legs."),
]


def make_dataset(tmp_path: Path) -> Path:
    rows = []
    for q, a, title, text in QA:
        others = [{"title": t, "text": x} for _, _, t, x in QA if t != title]
        rows.append(
            {
                "question": q,
                "answers": [a],
                "passages": [{"title": title, "text": text, "isgold": True}, *others],
            }
        )
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def scripted(messages: list[dict[str, Any]]) -> str:
    user = str(messages[-1]["content"])
    if "Task: write a note." in user:
        return "Neptune has strong winds."
    if "Task: plan new searches." in user:
        return "Neptune wind speed\nstrongest winds planet"
    if "Task: improve the note." in user:
        return "Neptune has the strongest winds in the Solar System, up to 2,100 km/h."
    if "Task: compare two notes." in user:
        return '{"status": "True"}'
    if "Task: answer." in user:
        return "Neptune"
    return "unexpected prompt"


def test_query_trace_and_json_use_the_profile_generator(
    sample_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")
    with OpenAICompatServer(scripted) as server:
        profile = reader_profile(tmp_path, server.base_url)
        args = ["query", "Which planet has the strongest winds?", "--pipeline", "adaptive_note"]
        args += ["--store", str(sample_store), "--profile", str(profile)]
        code, out, err = ragkit(*args, "--trace")
        assert code == 0, err
        assert "answer: Neptune" in out
        assert "  adaptive note (max_step=3, max_fail_step=1, top_k=5, max_top_k=15" in out
        assert "step 1  queries: Neptune wind speed | strongest winds planet" in out
        assert "verdict: better (json" in out and "kept the refined note" in out
        assert "stop: " in out and "cost: " in out
        # every LLM call of the loop went to the profile's server, none to a local model
        calls = len(server.requests)
        assert 5 <= calls <= 2 + 3 * 3

        code, out, err = ragkit(*args, "--json")
        assert code == 0, err
        data = json.loads(out)
        trace = data["trace"]["answerer"]
        assert data["answer"] == "Neptune"
        assert data["usage"]["llm_calls"] == trace["totals"]["llm_calls"] == calls
        assert data["usage"]["prompt_tokens"] > 0
        # step 2's refinement repeats the note: "not better" without a judge call, budget spent
        assert trace["stop_reason"] == "failure budget"
        assert [s["verdict"]["source"] for s in trace["steps"]] == ["json", "unchanged"]
        assert calls == 7  # note, (queries, refine, judge), (queries, refine), answer
        assert len(data["passages"]) == trace["totals"]["passages_read"] > 5
        assert len({p["id"] for p in data["passages"]}) == len(data["passages"])
        assert trace["note"].startswith("Neptune has the strongest winds")


def test_eval_records_calls_tokens_and_recall_over_all_read_passages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")
    dataset = make_dataset(tmp_path)
    with OpenAICompatServer(scripted) as server:
        profile = reader_profile(tmp_path, server.base_url)
        out_dir = tmp_path / "run"
        code, out, err = ragkit(
            "eval", str(dataset), "--pipeline", "adaptive_note", "--profile", str(profile),
            "--out", str(out_dir), "--limit", "2", "--json",
        )  # fmt: skip
        assert code == 0, err
    summary = json.loads(out)
    records = [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        usage = record["extra"]["usage"]
        assert usage["llm_calls"] >= 2 and usage["prompt_tokens"] > 0
        assert usage["passages_read"] == len(record["retrieved_ids"])
        assert "recall@all" in record["metrics"]
    assert summary["mean_usage"]["llm_calls"] == pytest.approx(
        sum(r["extra"]["usage"]["llm_calls"] for r in records) / 2
    )
    assert summary["metrics"]["recall@all"] == 1.0  # 9 pooled passages: the loop reads them all


@pytest.mark.slow
def test_real_smollm2_end_to_end(sample_store: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "pipelines" / "adaptive_note.yaml").read_text())
    params = data["components"]["answerer"]["init_parameters"]
    params["loop"].update(max_step=1, note_max_tokens=48, query_max_tokens=24, answer_max_tokens=16)
    pipe = tmp_path / "notes1.yaml"
    pipe.write_text(yaml.safe_dump(data))
    code, out, err = ragkit(
        "query", "Which planet has the strongest winds?", "--pipeline", str(pipe),
        "--store", str(sample_store), "--profile", "cpu-small", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    trace = result["trace"]["answerer"]
    assert 2 <= trace["totals"]["llm_calls"] <= 5
    assert result["usage"]["llm_calls"] == trace["totals"]["llm_calls"]
    assert trace["stop_reason"] in {
        "max steps", "failure budget", "no new evidence", "evidence cap", "no evidence"
    }  # fmt: skip
    assert all(c["completion_tokens"] <= 48 for c in trace["calls"])
    assert isinstance(result["answer"], str)
