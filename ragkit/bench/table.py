"""Benchmark table rows: every figure next to its baseline from the same run, with the ratio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def make_row(metric: str, ragkit: float, baseline: float | None, name: str, unit: str) -> dict:
    """One table row; ratio is always a speedup (> 1 means ragkit is better)."""
    ratio = None
    if baseline is not None and ragkit > 0 and baseline > 0:
        ratio = ragkit / baseline if unit.endswith("/s") else baseline / ragkit
    return {"metric": metric, "ragkit": ragkit, "baseline": baseline, "baseline_name": name,
            "unit": unit, "ratio": ratio}  # fmt: skip


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "frac":
        return f"{value:.0%}"
    if unit == "recall":  # a fraction where 0.98 vs 0.99 matters
        return f"{value:.3f}"
    if unit.endswith("/s"):
        return f"{value:,.1f} {unit}"
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def render_rows(rows: Sequence[Mapping[str, Any]], ratio_digits: int = 1) -> list[str]:
    """Aligned ``metric / ragkit / baseline / ratio`` lines for benchmark rows (with a rule)."""
    lines = [("metric", "ragkit", "baseline", "ratio")]
    for row in rows:
        base = fmt_value(row["baseline"], row["unit"])
        if row["baseline"] is not None:
            base = f"{base} ({row['baseline_name']})"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:,.{ratio_digits}f}x"
        metric = (
            row["metric"].rsplit(" (", 1)[0]
            if row["metric"].endswith(("(s)", "/s)"))
            else row["metric"]
        )
        lines.append((metric, fmt_value(row["ragkit"], row["unit"]), base, ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = [
        "  ".join(
            cell.ljust(w) if i in (0, 2) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out
