"""The inverted-U sweep's outputs: markdown table and PNG (synthetic results, no reader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.bench.context_sweep import VARIANTS, format_markdown, write_plot

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
