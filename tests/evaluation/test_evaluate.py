"""``ragkit eval`` run directories: keyed on every result-changing setting, resumed only when equal."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from cli_run import runner

from ragkit.cli import app
from ragkit.config import Profile
from ragkit.evaluation.datasets import Dataset, Passage, QAExample
from ragkit.evaluation.evaluate import (
    RUN_FILE,
    EvalSettings,
    RunSettingsError,
    check_resume,
    dataset_fingerprint,
    default_out_dir,
    evaluate,
    profile_fingerprint,
)

SETTINGS = EvalSettings(
    dataset="mini",
    dataset_sha256="d" * 64,
    pipeline="pipelines/retrieve.yaml",
    pipeline_sha256="p" * 64,
    profile="defaults",
    profile_sha256="f" * 64,
    mode="pooled",
    top_k=None,
)


def _example(answer: str) -> QAExample:
    passage = Passage(id="p1", title="T", text="x")
    return QAExample(
        id="q1",
        question="q?",
        answers=[answer],
        passages=[passage],
        gold_passage_ids=["p1"],
    )


def test_key_covers_results_not_labels() -> None:
    keys = {
        SETTINGS.key(),
        replace(SETTINGS, top_k=3).key(),
        replace(SETTINGS, mode="per-question").key(),
        replace(SETTINGS, pipeline_sha256="q" * 64).key(),
        replace(SETTINGS, profile_sha256="g" * 64).key(),
        replace(SETTINGS, dataset_sha256="e" * 64).key(),
    }
    assert len(keys) == 6
    # renaming or moving a file with the same content keeps the run comparable
    assert (
        replace(SETTINGS, pipeline="/else/retrieve.yaml", profile="p.yaml").key() == SETTINGS.key()
    )
    a, b = default_out_dir(SETTINGS), default_out_dir(replace(SETTINGS, top_k=3))
    assert a != b and a.parent == Path("runs") and b.name.startswith("eval-mini-retrieve-defaults-")
    assert "-top3-" in b.name and a.name.endswith(SETTINGS.key())


def test_fingerprints_follow_content() -> None:
    assert dataset_fingerprint(Dataset("a", [_example("x")])) == dataset_fingerprint(
        Dataset("b", [_example("x")])
    )
    assert dataset_fingerprint(Dataset("a", [_example("x")])) != dataset_fingerprint(
        Dataset("a", [_example("y")])
    )
    # naming the default model is leaving it out (tests/indexing/test_default_embedding.py
    # checks that another model is another key)
    base = Profile.model_validate({"embedding": {"model": "minilm-int8"}})
    assert profile_fingerprint(base) == profile_fingerprint(Profile())
    assert profile_fingerprint(Profile.model_validate({"embedding": {"batch_size": 8}})) != (
        profile_fingerprint(Profile())
    )


def test_check_resume_names_each_difference(tmp_path: Path) -> None:
    check_resume(tmp_path / "new", SETTINGS)  # nothing there yet: fine
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"settings": asdict(SETTINGS)}))
    check_resume(run, SETTINGS)
    other = replace(SETTINGS, top_k=3, profile="cpu-quality", profile_sha256="g" * 64)
    with pytest.raises(RunSettingsError) as err:
        check_resume(run, other)
    msg = str(err.value)
    assert msg.startswith(f"cannot resume {run}: it was made with other settings: ")
    assert "profile defaults -> cpu-quality (settings differ)" in msg
    assert "top_k the pipeline's own -> 3" in msg
    assert "mode" not in msg and "drop --resume" in msg and "\n" not in msg

    old = tmp_path / "old"  # results from before run.json existed: cannot be checked
    old.mkdir()
    (old / "results.jsonl").write_text('{"id": "q1"}\n')
    with pytest.raises(RunSettingsError, match=f"no {RUN_FILE}"):
        check_resume(old, SETTINGS)


def test_eval_dirs_and_resume_guard_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_qa_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    data = mini_qa_file
    first = evaluate(data, "retrieve", mode="per-question", limit=1, progress=False)
    run_dir = Path(first["out_dir"])
    assert run_dir.parent == Path("runs") and first["count"] == 1
    stored = json.loads((run_dir / RUN_FILE).read_text())
    assert stored["key"] == first["run_key"] and stored["settings"]["top_k"] is None
    assert stored["settings"]["mode"] == "per-question"

    # another top_k lands in another directory: no mixing by default
    code, out, err = _cli("eval", str(data), "--pipeline", "retrieve", "--mode", "per-question",
                          "--top-k", "1", "--limit", "1", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["out_dir"] != first["out_dir"]

    # resuming the first directory under other settings is refused before any work
    before = (run_dir / "results.jsonl").read_text()
    code, _, err = _cli("eval", str(data), "--pipeline", "retrieve", "--mode", "per-question",
                        "--top-k", "1", "--out", str(run_dir), "--resume")  # fmt: skip
    assert code == 2 and err.count("\n") == 1  # invalid input: settings differ
    assert "it was made with other settings:" in err and "top_k the pipeline's own -> 1" in err
    profile = tmp_path / "small-batch.yaml"
    profile.write_text("embedding:\n  batch_size: 8\n")
    code, _, err = _cli("eval", str(data), "--pipeline", "retrieve", "--mode", "per-question",
                        "--profile", str(profile), "--out", str(run_dir), "--resume")  # fmt: skip
    assert code == 2 and f"profile defaults -> {profile} (settings differ)" in err
    assert (run_dir / "results.jsonl").read_text() == before

    # the same settings resume: only the missing question runs
    resumed = evaluate(data, "retrieve", mode="per-question", out_dir=run_dir, resume=True,
                       progress=False)  # fmt: skip
    assert resumed["count"] == 2 and resumed["out_dir"] == str(run_dir)
    assert resumed["metrics"]["recall@1"] == pytest.approx(1.0)


def test_eval_never_writes_into_a_folder_that_is_not_a_ragkit_run(
    tmp_path: Path, mini_qa_file: Path
) -> None:
    """Issue 27: ``--out`` of a folder holding the user's own files overwrote them, exit 0."""
    precious = tmp_path / "out"
    precious.mkdir()
    (precious / "results.jsonl").write_text("precious\n")
    foreign = tmp_path / "other"  # another tool's run.json is not a ragkit run's
    foreign.mkdir()
    (foreign / RUN_FILE).write_text('{"settings": "mine"}')
    for out in (precious, foreign):
        before = {p.name: p.read_text() for p in out.iterdir()}
        for flags in ((), ("--force",), ("--resume",)):
            code, _, err = _cli("eval", str(mini_qa_file), "--pipeline", "retrieve",
                                "--mode", "per-question", "--out", str(out), *flags)  # fmt: skip
            assert code == 2 and err.count("\n") == 1, (flags, err)
            assert err.startswith(f"error: --out {out} is not empty and is not a ragkit eval run")
            assert "give a new or empty folder" in err
            assert {p.name: p.read_text() for p in out.iterdir()} == before  # nothing written
    # an empty folder is fine
    (tmp_path / "empty").mkdir()
    code, _, err = _cli("eval", str(mini_qa_file), "--pipeline", "retrieve", "--mode",
                        "per-question", "--limit", "1", "--out", str(tmp_path / "empty"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "empty" / RUN_FILE).exists()


def test_eval_replaces_a_run_with_other_settings_only_with_force(
    tmp_path: Path, mini_qa_file: Path
) -> None:
    run = tmp_path / "run"
    args = ("eval", str(mini_qa_file), "--pipeline", "retrieve", "--mode", "per-question",
            "--limit", "1", "--out", str(run), "--json")  # fmt: skip
    code, _, err = _cli(*args)
    assert code == 0, err
    before = {p.name: p.read_text() for p in run.iterdir()}
    code, _, err = _cli(*args, "--top-k", "1")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: --out {run} holds a ragkit eval run made with other settings")
    assert "top_k the pipeline's own -> 1" in err and "--force to replace" in err
    assert {p.name: p.read_text() for p in run.iterdir()} == before  # nothing written
    code, _, err = _cli(*args, "--top-k", "1", "--force", "--resume")
    assert code == 2 and "give only one of them" in err, err
    code, _, err = _cli(*args)  # the same settings: a re-run of that run is fine
    assert code == 0, err
    code, out, err = _cli(*args, "--top-k", "1", "--force")
    assert code == 0, err
    assert json.loads((run / RUN_FILE).read_text())["settings"]["top_k"] == 1
    assert json.loads(out)["top_k"] == 1 and json.loads(out)["count"] == 1


def test_eval_rejects_bad_mode_before_loading_anything(mini_qa_file: Path) -> None:
    code, _, err = _cli("eval", str(mini_qa_file), "--mode", "mixed")
    assert code == 2 and "mode must be pooled, per-question or oracle, not 'mixed'" in err


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


MEMORY_RETRIEVE = """\
components:
  memory_recall:
    type: ragkit.memory.components.MemoryRecall
    init_parameters: {model: smollm2-135m-instruct, model_backend: llamacpp, n_ctx: 2048,
                      draft: false, answer_hint: false}
  clue_retriever:
    type: ragkit.memory.components.ClueRetriever
    init_parameters: {top_k: 2}
connections:
  - sender: memory_recall.clues
    receiver: clue_retriever.clues
"""


def test_per_question_memory_pipeline_never_opens_the_working_directory_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_qa_file: Path
) -> None:
    """Warm-up used to open ./.ragkit (a store-bound component left unbound) before any
    question's store was bound: creating a store in the user's directory, or failing on a lock."""
    pytest.importorskip("llama_cpp")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path / "cache"))
    pipe = tmp_path / "memory_retrieve.yaml"
    pipe.write_text(MEMORY_RETRIEVE)
    summary = evaluate(mini_qa_file, str(pipe), mode="per-question", limit=1, progress=False)
    assert summary["count"] == 1
    rows = [json.loads(line) for line in (Path(summary["out_dir"]) / "results.jsonl").open()]
    assert rows[0]["retrieved_ids"], "the question's own passages were retrieved"
    assert not (work / ".ragkit").exists()
    assert list((tmp_path / "cache" / "memory").iterdir()), "the per-question memory was cached"


def _distractor_set(tmp_path: Path) -> Path:
    """Two questions whose gold passage shares no word with the question (BM25 cannot find it)
    among distractors that do: retrieval misses the gold, the oracle hands it over."""
    rows = []
    for i, (question, gold, answer) in enumerate(
        [
            ("Which river crosses the old capital?", "Zorblat flows past Quentovic.", "Zorblat"),
            ("Which mountain rises over the old capital?", "Mount Yelvar looms there.", "Yelvar"),
        ]
    ):
        passages = [{"title": f"G{i}", "text": gold, "isgold": True}]
        passages += [
            {"title": f"D{i}{j}", "text": f"The old capital {question} distractor {j}."}
            for j in range(6)
        ]
        rows.append({"question": question, "answers": [answer], "passages": passages})
    path = tmp_path / "distractors.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_oracle_mode_reads_only_the_gold_passages_and_pool_recall_is_reported(
    tmp_path: Path,
) -> None:
    data = _distractor_set(tmp_path)
    common = {"limit": 2, "progress": False, "top_k": 1}
    retrieved = evaluate(data, "retrieve", mode="per-question", out_dir=tmp_path / "r", **common)
    oracle = evaluate(data, "retrieve", mode="oracle", out_dir=tmp_path / "o", **common)
    # with the question's passages, the word-matching distractors come first; the gold is
    # still among the retrievers' candidates (pool recall), the oracle's store holds only it
    assert retrieved["metrics"]["recall@1"] == 0.0
    assert retrieved["metrics"]["pool_recall"] == 1.0
    assert oracle["metrics"]["recall@1"] == 1.0
    rows = [
        json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()
    ]
    assert all(r["extra"]["pool_size"] == 1 for r in rows)
    settings = json.loads((tmp_path / "o" / RUN_FILE).read_text())["settings"]
    assert settings["mode"] == "oracle"


def test_oracle_mode_through_the_cli(mini_qa_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "oracle"
    result = runner.invoke(
        app,
        [
            "eval",
            str(mini_qa_file),
            "--pipeline",
            "retrieve",
            "--mode",
            "oracle",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["mode"] == "oracle" and summary["metrics"]["recall@1"] == 1.0
