"""The inverted-U sweep's outputs: markdown table and PNG (synthetic results, no reader)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ragkit.bench.context_sweep import (
    VARIANTS,
    format_markdown,
    paired_bootstrap,
    run_context_sweep,
    write_plot,
)
from ragkit.errors import InvalidInputError
from ragkit.resources import shipped_dir

RESULT = {
    "dataset": "hotpotqa",
    "questions": 2,
    "pipeline": "pipelines/reorder_rag.yaml",
    "ks": [3, 5],
    "runs": [
        {"variant": "plain", "k": 3, "f1": 0.25, "em": 0.0},
        {"variant": "plain", "k": 5, "f1": 0.5, "em": 0.5},
        {"variant": "reorder", "k": 3, "f1": 0.125, "em": 0.0},
    ],
}


def test_markdown_table_has_a_cell_per_variant_and_k() -> None:
    lines = format_markdown(RESULT).splitlines()
    assert lines[2] == "| variant | k=3 | k=5 |"
    assert lines[4] == "| plain | 0.250 (0.000) | 0.500 (0.500) |"
    assert lines[5] == "| reorder | 0.125 (0.000) | - |"


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_plot(RESULT, tmp_path / "f1.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_variants_switch_reordering_and_demotion() -> None:
    assert VARIANTS["plain"]["min_k"] > 1000 and VARIANTS["plain"]["demote_below"] is None
    assert VARIANTS["reorder"] == {"min_k": 0, "demote_below": None, "drop_below": None}
    assert "demote_below" not in VARIANTS["reorder+demote"]  # the pipeline's threshold applies


def _scripted_pipeline(tmp_path: Path, reply: str) -> Path:
    """reorder_rag.yaml with a scripted reader: the sweep's bookkeeping, not a model, is tested."""
    text = (shipped_dir("pipelines") / "reorder_rag.yaml").read_text()
    start = text.index("  generator:\n")
    end = text.index("  answer_builder:\n")
    reader = (
        "  generator:\n    type: ragkit.testing.ScriptedChatGenerator\n"
        f"    init_parameters:\n      default_reply: {reply}\n"
    )
    path = tmp_path / f"sweep-{reply}.yaml"
    path.write_text(text[:start] + reader + text[end:])
    return path


def test_sweep_scores_records_recall_and_resumes(tmp_path: Path, mini_qa_file: Path) -> None:
    data, out = mini_qa_file, tmp_path / "sweep"
    pipe = _scripted_pipeline(tmp_path, "Neptune")
    first = run_context_sweep(str(data), pipe, out, ks=[1, 2], variants=["plain"], progress=False)
    cells = {(r["variant"], r["k"]): r for r in first["runs"]}
    # "Neptune" is right for question 1 only; both passages handed at k=2 hold every gold one
    assert cells["plain", 1]["em"] == 0.5 and cells["plain", 2]["recall"] == 1.0
    lines = (out / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 4 and (first["plot"] is None) == (
        importlib.util.find_spec("matplotlib") is None
    )

    # a second run with a new variant answers only the new cells; the old answers are kept
    again = run_context_sweep(
        str(data), pipe, out, ks=[1, 2], variants=["plain", "reorder"], progress=False
    )
    assert len((out / "answers.jsonl").read_text().splitlines()) == 8
    assert [r["em"] for r in again["runs"][:2]] == [r["em"] for r in first["runs"]]
    assert "paired bootstrap" in (out / "table.md").read_text()

    # other settings (another reader) are refused instead of mixed in
    with pytest.raises(InvalidInputError, match="other settings"):
        run_context_sweep(
            str(data), _scripted_pipeline(tmp_path, "Sicily"), out, ks=[1], variants=["plain"],
            progress=False,
        )  # fmt: skip


def test_paired_bootstrap_interval_brackets_the_mean() -> None:
    mean, lo, hi = paired_bootstrap([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0])
    assert mean == 0.25 and lo <= mean <= hi and lo >= 0.0
    assert paired_bootstrap([1.0] * 5, [1.0] * 5) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [])
