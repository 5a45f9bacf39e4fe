"""Benchmark table rows: every figure next to its baseline from the same run, with the ratio."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any


def make_row(metric: str, ragkit: float, baseline: float | None, name: str, unit: str) -> dict:
    """One table row; ratio is always a speedup (> 1 means ragkit is better)."""
    ratio = None
    if baseline is not None and ragkit > 0 and baseline > 0:
        ratio = ragkit / baseline if unit.endswith("/s") else baseline / ragkit
    return {"metric": metric, "ragkit": ragkit, "baseline": baseline, "baseline_name": name,
            "unit": unit, "ratio": ratio}  # fmt: skip


def fmt_value(value: float | None, unit: str) -> str:
    """A value in its unit: fractions as percent, rates per second, times in ms or s."""
    if value is None:
        return "-"
    if unit == "frac":
        return f"{value:.0%}"
    if unit == "recall":  # a fraction where 0.98 vs 0.99 matters
        return f"{value:.3f}"
    if unit.endswith("/s"):
        return f"{value:,.1f} {unit}"
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    ratio_digits: int = 1,
    *,
    header: str = "ragkit",
    value_key: str = "ragkit",
    fmt: Callable[[float | None, str], str] = fmt_value,
) -> list[str]:
    """Aligned ``metric / ragkit / baseline / ratio`` lines for benchmark rows (with a rule).

    Args:
        rows: Rows as made by `make_row` (or with the value under `value_key`).
        ratio_digits: Decimals of the ratio column.
        header: Title of the value column (e.g. ``ragkit serve``).
        value_key: The row key holding the measured value.
        fmt: Formats a value with its unit (`fmt_value` unless a bench needs other units).

    Returns:
        The table's lines, header and rule first.
    """
    lines = [("metric", header, "baseline", "ratio")]
    for row in rows:
        base = fmt(row["baseline"], row["unit"])
        if row["baseline"] is not None:
            base = f"{base} ({row['baseline_name']})"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:,.{ratio_digits}f}x"
        metric = (
            row["metric"].rsplit(" (", 1)[0]
            if row["metric"].endswith(("(s)", "/s)"))
            else row["metric"]
        )
        lines.append((metric, fmt(row[value_key], row["unit"]), base, ratio))
    return align_columns(lines, right=(1, 3))


def align_columns(lines: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Pad each column to its widest cell, two spaces apart, with a rule under the first line.

    The one table writer of the benchmarks: `render_rows` and the benches with other columns
    (e.g. a target column) all print through it, so every table looks alike.

    Args:
        lines: The header, then the rows; every line has the same number of cells.
        right: Indexes of right-aligned columns (numbers); the others are left-aligned.

    Returns:
        The lines, trailing spaces stripped, with the rule of dashes as the second line.
    """
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table (``| a | b |`` lines under a ``|---|---|`` rule), for docs and READMEs."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
