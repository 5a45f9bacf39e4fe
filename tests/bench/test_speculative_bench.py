"""``ragkit bench speculative``: structure, the identity check and its exit status.

The real run uses the packaged SmolLM2 through llama.cpp (target and a second instance as the
drafter) on a short document, so it is quick; the Qwen numbers in the README come from the
command itself.
"""

from __future__ import annotations

import pytest
from cli_run import runner

from ragkit.cli import app

MODEL = "smollm2-135m-instruct"


def test_small_run_is_identical_and_reuses_the_saved_prefix() -> None:
    pytest.importorskip("llama_cpp")
    from ragkit.bench.speculative_bench import (
        NEAR_TIE_LOGITS,
        format_table,
        run_speculative_bench,
    )

    result = run_speculative_bench(
        (400,), target_model=MODEL, draft_model=MODEL, max_new_tokens=12, n_threads=1
    )
    assert result["mismatches"] == []
    (case,) = result["lengths"]
    assert 300 <= case["document_tokens"] <= 700
    rows = {r["drafter"]: r for r in case["decode"]}
    assert set(rows) == {
        "target only",
        "ngram",
        "model",
        "model+ngram adaptive",
        "adaptive, learned",
    }
    # the learned row's policy starts from what it measured on the other question
    assert rows["model+ngram adaptive"]["policy_before"]["steps_seen"] == 0
    assert rows["adaptive, learned"]["policy_before"]["steps_seen"] > 0
    # identical, or diverging only where the target's own logits nearly tie (llama.cpp's
    # batch-shape noise); a rollback or verification bug diverges where the target is sure
    assert all(r["tokens_per_second"] > 0 for r in rows.values())
    for row in rows.values():
        assert row["identical"] or row["near_tie_gap"] < NEAR_TIE_LOGITS, row
    assert rows["model"]["tokens_per_target_call"] > 1.0  # the drafter's tokens were accepted
    e2e = case["end_to_end"]
    assert e2e["first"]["prefix_cache"] == "computed"
    assert e2e["second"]["prefix_cache"] == "disk"
    assert e2e["second_over_first"] == pytest.approx(
        e2e["second"]["seconds"] / e2e["first"]["seconds"], rel=1e-3
    )
    table = format_table(result)
    assert "target only" in table and "second question" in table and "NOT IDENTICAL" not in table


def test_a_mismatch_makes_the_command_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragkit.bench import speculative_bench

    fake = {
        "settings": {"backend": "llama.cpp", "target": "t", "drafter_model": "d",
                     "max_new_tokens": 4, "gamma": 10},
        "lengths": [],
        "mismatches": ["2048 tokens, ngram: output differs from target-only greedy"],
    }  # fmt: skip
    monkeypatch.setattr(speculative_bench, "run_speculative_bench", lambda *a, **k: fake)
    result = runner.invoke(app, ["bench", "speculative", "--lengths", "2048"])
    assert result.exit_code == 1
    assert "NOT IDENTICAL" in result.stdout


@pytest.mark.parametrize("lengths", ["abc", "100", ""])
def test_bad_lengths_are_refused(lengths: str) -> None:
    result = runner.invoke(app, ["bench", "speculative", "--lengths", lengths])
    assert result.exit_code == 2
    assert "--lengths" in result.stderr


def test_ngram_only_run_through_the_cli() -> None:
    pytest.importorskip("llama_cpp")
    import json

    args = ["bench", "speculative", "--lengths", "300", "--target", MODEL, "--drafter", "none"]
    result = runner.invoke(app, [*args, "--max-new-tokens", "8", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (case,) = out["lengths"]
    assert [r["drafter"] for r in case["decode"]] == ["target only", "ngram"]
    assert out["settings"]["drafter_model"] is None


def test_transformers_run_adds_the_tree_rows_and_stays_identical() -> None:
    import json

    args = ["bench", "speculative", "--lengths", "300", "--target", MODEL, "--drafter", "none"]
    result = runner.invoke(
        app, [*args, "--backend", "transformers", "--max-new-tokens", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (case,) = out["lengths"]
    rows = {r["drafter"]: r for r in case["decode"]}
    assert list(rows) == ["target only", "ngram", "ngram tree"]
    assert all(r["identical"] for r in rows.values())  # fp32 transformers: exact
    assert out["settings"]["device"] == "cpu"


def test_device_options_need_the_transformers_backend() -> None:
    result = runner.invoke(app, ["bench", "speculative", "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device and --compile-draft-step need --backend transformers" in result.stderr
