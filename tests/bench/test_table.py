"""The benches' table writer: aligned columns under a rule, markdown for the docs."""

from __future__ import annotations

from ragkit.bench.table import align_columns, make_row, markdown_table, render_rows


def test_align_columns_pads_to_the_widest_cell_with_a_rule_under_the_header() -> None:
    lines = align_columns([("metric", "value"), ("a", "1.0"), ("longer name", "10.25")], right={1})
    assert lines == [
        "metric       value",
        "-----------  -----",
        "a              1.0",
        "longer name  10.25",
    ]


def test_render_rows_puts_the_baseline_name_and_ratio_next_to_the_value() -> None:
    rows = [make_row("build (s)", 0.5, 2.0, "other", "s"), make_row("n", 3.0, None, "", "q/s")]
    lines = render_rows(rows)
    assert lines[0].split() == ["metric", "ragkit", "baseline", "ratio"]
    assert lines[2].split() == ["build", "500.0", "ms", "2.00", "s", "(other)", "4.0x"]
    assert lines[3].endswith("-") and "3.0 q/s" in lines[3]
    custom = render_rows(
        [{"metric": "m", "value": 2.0, "baseline": None, "unit": "n", "ratio": None}],
        header="ragkit serve", value_key="value", fmt=lambda v, u: "-" if v is None else f"{v:.0f}",
    )  # fmt: skip
    assert custom[0].startswith("metric  ragkit serve") and custom[2].split() == [
        "m",
        "2",
        "-",
        "-",
    ]


def test_markdown_table() -> None:
    assert markdown_table(["variant", "k=3"], [["plain", "0.5"]]) == [
        "| variant | k=3 |",
        "|---|---|",
        "| plain | 0.5 |",
    ]
