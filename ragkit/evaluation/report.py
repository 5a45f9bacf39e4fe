"""Per-question result records (crash-safe JSONL) and their summary table.

Records are appended and flushed one at a time so a killed run loses at most the line being
written; reading tolerates that truncated last line, and reopening for append cuts it off first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ragkit.atomic import write_json_atomic

__all__ = [
    "ResultsWriter",
    "format_summary_table",
    "read_records",
    "summarize",
    "write_json_atomic",
]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each metric over the records that have it, plus counts and timing.

    Metrics are read from each record's `metrics` mapping; a metric missing from some records
    (recall@k without gold passages, EM without answers) is averaged over the others only, and
    its own count is reported so a mean over few questions is visible as such.

    Args:
        records: Per-question records as written by the runner.

    Returns:
        {"count", "mean_seconds", "total_seconds", "metrics": {name: mean}, "metric_counts": {name: n},
        "mean_usage": {name: mean of extra.usage[name]}}.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    seconds: list[float] = []
    usage_sums: dict[str, float] = {}
    usage_counts: dict[str, int] = {}
    for record in records:
        usage = (record.get("extra") or {}).get("usage") or {}
        for name, value in usage.items() if isinstance(usage, dict) else ():
            if isinstance(value, int | float) and not isinstance(value, bool):
                usage_sums[name] = usage_sums.get(name, 0.0) + float(value)
                usage_counts[name] = usage_counts.get(name, 0) + 1
        for name, value in (record.get("metrics") or {}).items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
        sec = record.get("seconds")
        if isinstance(sec, int | float):
            seconds.append(float(sec))
    total = sum(seconds)
    return {
        "count": len(records),
        "mean_seconds": total / len(seconds) if seconds else 0.0,
        "total_seconds": total,
        "metrics": {name: sums[name] / counts[name] for name in _ordered(sums)},
        "metric_counts": {name: counts[name] for name in _ordered(counts)},
        # per-question means of the generator usage the pipeline reported (LLM calls, tokens)
        "mean_usage": {name: usage_sums[name] / usage_counts[name] for name in sorted(usage_sums)},
    }


def _ordered(names: dict[str, Any]) -> list[str]:
    """Answer metrics first in a fixed order, then recall@k by k, then anything else by name."""
    fixed = ["em", "f1", "accuracy", "rouge_l"]

    def key(name: str) -> tuple[int, float, str]:
        if name in fixed:
            return (0, fixed.index(name), name)
        if name.startswith("recall@") and name[7:].isdigit():
            return (1, int(name[7:]), name)
        return (2, 0, name)

    return sorted(names, key=key)


def format_summary_table(summary: dict[str, Any]) -> str:
    """Render a summary as an aligned plain-text table for terminals and logs.

    Args:
        summary: The output of `summarize` (extra keys such as "dataset" are shown if present).

    Returns:
        A multi-line string without a trailing newline.
    """
    rows: list[tuple[str, str, str]] = [("metric", "value", "n")]
    counts = summary.get("metric_counts", {})
    for name, value in summary.get("metrics", {}).items():
        rows.append((name, f"{value:.4f}", str(counts.get(name, ""))))
    rows.append(("mean_seconds", f"{summary.get('mean_seconds', 0.0):.3f}", ""))
    for name, value in (summary.get("mean_usage") or {}).items():
        rows.append((f"mean_{name}", f"{value:.1f}", ""))
    rows.append(("questions", str(summary.get("count", 0)), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines: list[str] = []
    if summary.get("dataset"):
        lines.append(f"dataset: {summary['dataset']}")
    for i, (name, value, n) in enumerate(rows):
        lines.append(f"{name:<{widths[0]}}  {value:>{widths[1]}}  {n:>{widths[2]}}".rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _trim_partial_tail(path: Path) -> None:
    """Cut a trailing partial line (left by a killed run) so the next append starts clean."""
    if not path.exists():
        return
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Walk back to the last newline; everything after it is an incomplete record.
        pos = size
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            idx = data.rfind(b"\n")
            if idx >= 0:
                fh.truncate(start + idx + 1)
                return
            pos = start
        fh.truncate(0)


class ResultsWriter:
    """Append-only JSONL writer that flushes every record, for crash-safe resumable runs.

    Use as a context manager. With `append=True` an existing file is kept (its truncated last line,
    if any, is removed); otherwise the file is started afresh.
    """

    def __init__(self, path: str | Path, append: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            _trim_partial_tail(self.path)
        self._fh: IO[str] = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record as a single line and flush it to the OS."""
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read records back from a results JSONL file; a missing file gives an empty list.

    A truncated last line (the run was killed mid-write) is ignored. A bad line elsewhere means
    real corruption and raises, naming file:line.

    Raises:
        ValueError: On an invalid line that is not the last one.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records: list[dict[str, Any]] = []
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for i, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last:
                break
            raise ValueError(f"{path}:{i + 1}: invalid JSON record: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object per line")
        records.append(record)
    return records
