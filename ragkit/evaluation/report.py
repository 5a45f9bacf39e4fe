"""Per-question result records (crash-safe JSONL), their summary, and the results table.

Records are appended and flushed one at a time so a killed run loses at most the line being
written; reading tolerates that truncated last line, and reopening for append cuts it off first.

``ragkit report RUN_DIR...`` (:func:`load_run_rows`, :func:`format_results_table`,
:func:`plot_f1`) turns finished ``ragkit eval`` folders into the Markdown results table (one row
per pipeline and dataset: EM, F1, recall@5, prompt tokens, seconds per question) and a bar chart
of F1 with its 95% bootstrap interval, so a published table is generated, never typed.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ragkit.atomic import write_bytes_atomic, write_json_atomic

__all__ = [
    "ResultsWriter",
    "RunRow",
    "bootstrap_interval",
    "describe_machine",
    "format_results_table",
    "format_summary_table",
    "load_run_row",
    "load_run_rows",
    "parse_reference",
    "plot_f1",
    "read_records",
    "report_header",
    "summarize",
    "write_json_atomic",
    "write_report",
]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each metric over the records that have it, plus counts and timing.

    Metrics are read from each record's `metrics` mapping; a metric missing from some records
    (recall@k without gold passages, EM without answers) is averaged over the others only, and
    its own count is reported so a mean over few questions is visible as such.

    Args:
        records: Per-question records as written by the runner.

    Reader timings (``seconds_prefill``, ``seconds_decode``) are averaged over the records that
    measured them; a record without them (an older run, a reader that reports no split) is left
    out of that mean rather than counted as zero, and the mean is None when no record has one.

    Returns:
        {"count", "mean_seconds", "total_seconds", "mean_seconds_prefill",
        "mean_seconds_decode", "metrics": {name: mean}, "metric_counts": {name: n},
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
        # the reader's share of mean_seconds, split: prompt (prefill) vs answer tokens (decode)
        "mean_seconds_prefill": _mean_field(records, "seconds_prefill"),
        "mean_seconds_decode": _mean_field(records, "seconds_decode"),
        "metrics": {name: sums[name] / counts[name] for name in _ordered(sums)},
        "metric_counts": {name: counts[name] for name in _ordered(counts)},
        # per-question means of the generator usage the pipeline reported (LLM calls, tokens)
        "mean_usage": {name: usage_sums[name] / usage_counts[name] for name in sorted(usage_sums)},
    }


def _mean_field(records: list[dict[str, Any]], name: str) -> float | None:
    """Mean of a numeric top-level record field over the records that have it; None if none do."""
    values = [
        float(v)
        for v in (r.get(name) for r in records)
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return sum(values) / len(values) if values else None


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
    for name in ("mean_seconds_prefill", "mean_seconds_decode"):
        if isinstance(summary.get(name), int | float):
            rows.append((name, f"{summary[name]:.3f}", ""))
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


# --- the results table: `ragkit report RUN_DIR...` -------------------------------------------

#: Display names of the shared evaluation sets (others are shown as eval named them).
DATASET_LABELS: dict[str, str] = {
    "hotpotqa": "HotpotQA",
    "hotpotqa-dev100": "HotpotQA (dev100)",
    "hotpotqa-fullwiki": "HotpotQA (fullwiki)",
    "2wiki": "2WikiMultihopQA",
    "nq-open": "NQ-open",
}

_REFERENCE_LINE = re.compile(
    r"(?P<n>\d+) questions: EM (?P<em>[\d.]+) F1 (?P<f1>[\d.]+) recall@5 (?P<r5>[\d.]+); "
    r"(?P<sec>[\d.]+) s/question"
)


@dataclass
class RunRow:
    """One row of the results table: one pipeline's scores on one dataset.

    Attributes:
        pipeline: Row label: the pipeline as ``ragkit eval`` was given it, plus any setting that
            tells two rows of one pipeline apart (``--top-k``, mode, profile).
        dataset: The dataset's name as the run recorded it (``hotpotqa``, ``2wiki``, ...).
        questions: How many questions the row averages over.
        em: Mean exact match in [0, 1]; None when no question had answers.
        f1: Mean token F1 in [0, 1]; None likewise.
        recall5: Mean gold-passage recall@5 in [0, 1]; None without gold passages.
        prompt_tokens: Mean reader prompt tokens per question; None when not reported.
        seconds: Mean seconds per question.
        f1_interval: 95% bootstrap interval (low, high) of the mean F1 over questions; None for
            a reference row (no per-question scores).
        source: The run folder (or the reference file) the row comes from.
        command: The ``ragkit eval`` command that reproduces the run; None for a reference.
        pattern: ``command`` with ``DATASET``/``PIPELINE`` placeholders and no ``--out``.
        reference: True for a row parsed from a reference tool's output.
        ids: The question ids averaged over.
        settings: The run's ``run.json`` settings (empty for a reference).
        made: Date the run last wrote a result (YYYY-MM-DD).
    """

    pipeline: str
    dataset: str
    questions: int
    em: float | None
    f1: float | None
    recall5: float | None
    prompt_tokens: float | None
    seconds: float | None
    f1_interval: tuple[float, float] | None = None
    source: str = ""
    command: str | None = None
    pattern: str | None = None
    reference: bool = False
    ids: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    made: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``ragkit report --json`` (fractions, not percent)."""
        out = asdict(self)
        out.pop("ids")
        out["f1_interval"] = list(self.f1_interval) if self.f1_interval else None
        return out


def bootstrap_interval(
    values: Sequence[float], samples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``values`` (questions resampled with replacement).

    Args:
        values: One score per question.
        samples: Bootstrap resamples.
        seed: Seed of the resampling, so a report is reproducible.

    Returns:
        (low, high): the 2.5th and 97.5th percentiles of the resampled means.
    """
    if not values:
        raise ValueError("bootstrap_interval needs at least one value")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return means[int(0.025 * samples)], means[int(0.975 * samples) - 1]


def _mean_of(values: Iterable[Any]) -> float | None:
    kept = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
    ]
    return sum(kept) / len(kept) if kept else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _eval_command(
    run: Path | None, summary: dict[str, Any], settings: dict[str, Any], pattern: bool = False
) -> str:
    """The ``ragkit eval`` command line that made (and resumes) the run in ``run``.

    With ``pattern`` the dataset and pipeline are ``DATASET`` and ``PIPELINE`` and ``--out`` is
    left off: rows made the same way share one pattern.
    """
    dataset = str(summary.get("dataset") or settings.get("dataset") or "DATASET")
    pipeline = summary.get("pipeline") or Path(str(settings.get("pipeline", "rag"))).stem
    if pattern:
        dataset, pipeline = "DATASET", "PIPELINE"
    parts = ["ragkit", "eval", dataset, "--pipeline", str(pipeline)]
    profile = summary.get("profile") or settings.get("profile")
    if profile and profile != "defaults":
        parts += ["--profile", str(profile)]
    mode = summary.get("mode") or settings.get("mode")
    if mode and mode != "pooled":
        parts += ["--mode", str(mode)]
    top_k = summary.get("top_k", settings.get("top_k"))
    if top_k is not None:
        parts += ["--top-k", str(top_k)]
    if summary.get("limit") is not None:
        parts += ["--limit", str(summary["limit"])]
    if run is not None and not pattern:
        parts += ["--out", str(run)]
    return " ".join(p if p in ("DATASET", "PIPELINE") else shlex.quote(p) for p in parts)


def load_run_row(
    run: str | Path, questions: Iterable[str] | None = None, samples: int = 2000
) -> RunRow:
    """Read one ``ragkit eval`` output folder into a results-table row.

    Means come from ``results.jsonl`` (one record per question, the first record of an id
    counts), so the table and the bootstrap interval describe the same questions; ``run.json``
    and ``summary.json`` give the labels and the command.

    Args:
        run: A ``ragkit eval --out`` folder (or its ``results.jsonl``).
        questions: Only these question ids (None: every question the run answered).
        samples: Bootstrap resamples for the F1 interval.

    Returns:
        The row; its ``pipeline`` label is the pipeline as eval was given it (see
        :func:`load_run_rows` for telling rows of one pipeline apart).

    Raises:
        InvalidInputError: No ``results.jsonl`` there, an unreadable one, or no answered
            question (among ``questions``).
    """
    from ragkit.errors import InvalidInputError

    path = Path(run)
    folder = path.parent if path.is_file() else path
    results = path if path.is_file() else path / "results.jsonl"
    if not results.is_file():
        raise InvalidInputError(f"{run}: no results.jsonl here; give a `ragkit eval --out` folder")
    try:
        records = read_records(results)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{run}: unreadable results ({exc})") from None
    wanted = None if questions is None else set(questions)
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        rid = str(record.get("id"))
        if rid not in by_id and (wanted is None or rid in wanted):
            by_id[rid] = record
    if not by_id:
        what = "the shared questions" if wanted is not None else "its results.jsonl"
        raise InvalidInputError(f"{run}: no answered question in {what}")
    rows = list(by_id.values())
    summary = _read_json(folder / "summary.json")
    stored = _read_json(folder / "run.json")
    settings = stored.get("settings") if isinstance(stored.get("settings"), dict) else {}

    def metric(name: str) -> list[Any]:
        return [(r.get("metrics") or {}).get(name) for r in rows]

    def prompt_tokens(r: dict[str, Any]) -> Any:
        usage = (r.get("extra") or {}).get("usage")
        return usage.get("prompt_tokens") if isinstance(usage, dict) else None

    f1s = [float(v) for v in metric("f1") if isinstance(v, int | float)]
    pipeline = summary.get("pipeline") or settings.get("pipeline") or folder.name
    if str(pipeline).endswith((".yaml", ".yml")):
        pipeline = Path(str(pipeline)).stem
    made = time.strftime("%Y-%m-%d", time.localtime(results.stat().st_mtime))
    return RunRow(
        pipeline=str(pipeline),
        dataset=str(summary.get("dataset") or settings.get("dataset") or "?"),
        questions=len(rows),
        em=_mean_of(metric("em")),
        f1=_mean_of(f1s),
        recall5=_mean_of(metric("recall@5")),
        prompt_tokens=_mean_of(prompt_tokens(r) for r in rows),
        seconds=_mean_of(r.get("seconds") for r in rows),
        f1_interval=bootstrap_interval(f1s, samples) if f1s else None,
        source=str(run),
        command=_eval_command(folder, summary, settings),
        pattern=_eval_command(None, summary, settings, pattern=True),
        ids=list(by_id),
        settings=dict(settings),
        made=str(stored.get("date") or made),
    )


def parse_reference(text: str, dataset: str, name: str = "peer-rag", source: str = "") -> RunRow:
    """A reference row from the summary line ``../shared/tools/peer-rag`` prints.

    The line reads ``plain RAG (...), N questions: EM a F1 b recall@5 c; d s/question``;
    the reference keeps no per-question scores, so its row has no F1 interval and no prompt
    tokens.

    Args:
        text: The tool's output (the summary line anywhere in it).
        dataset: The dataset it ran on (as in the eval runs: ``hotpotqa``, ``2wiki``, ...).
        name: The row's label.
        source: Where the text came from, for messages.

    Raises:
        InvalidInputError: No such line in ``text``.
    """
    from ragkit.errors import InvalidInputError

    found = _REFERENCE_LINE.search(text)
    if found is None:
        raise InvalidInputError(
            f"{source or 'reference'}: no 'N questions: EM a F1 b recall@5 c; d s/question' "
            "line (the output of ../shared/tools/peer-rag) in it"
        )
    return RunRow(
        pipeline=name,
        dataset=dataset,
        questions=int(found["n"]),
        em=float(found["em"]) / 100,
        f1=float(found["f1"]) / 100,
        recall5=float(found["r5"]) / 100,
        prompt_tokens=None,
        seconds=float(found["sec"]),
        source=source,
        reference=True,
    )


def load_run_rows(
    runs: Sequence[str | Path],
    references: Sequence[RunRow] = (),
    shared: bool = False,
    samples: int = 2000,
) -> tuple[list[RunRow], list[str]]:
    """Rows for several eval runs (and reference rows), with warnings about comparability.

    Rows of one dataset answered over different questions are not comparable; each such
    dataset is named in a warning, and ``shared=True`` scores every run of a dataset on only
    the questions all of them answered. Two rows of one pipeline on one dataset get the
    setting that tells them apart (``--top-k``, mode, profile) in their label.

    Args:
        runs: ``ragkit eval --out`` folders.
        references: Rows from :func:`parse_reference`, kept after their dataset's runs.
        shared: Restrict each dataset to the questions every one of its runs answered.
        samples: Bootstrap resamples for the F1 intervals.

    Returns:
        (rows grouped by dataset in the order first seen, warning lines).

    Raises:
        InvalidInputError: A run that :func:`load_run_row` refuses, or no run and no reference.
    """
    from ragkit.errors import InvalidInputError

    if not runs and not references:
        raise InvalidInputError("no eval runs given: name one or more `ragkit eval --out` folders")
    rows = [load_run_row(run, samples=samples) for run in runs]
    warnings: list[str] = []
    datasets = list(dict.fromkeys([r.dataset for r in rows] + [r.dataset for r in references]))
    for dataset in datasets:
        group = [i for i, r in enumerate(rows) if r.dataset == dataset]
        id_sets = [set(rows[i].ids) for i in group]
        if len(group) < 2 or all(s == id_sets[0] for s in id_sets):
            continue
        common = set.intersection(*id_sets)
        if shared:
            if not common:
                raise InvalidInputError(
                    f"the runs on {dataset} share no question; nothing to compare"
                )
            for i in group:
                rows[i] = load_run_row(runs[i], questions=common, samples=samples)
        else:
            sizes = ", ".join(f"{rows[i].source}: {rows[i].questions}" for i in group)
            warnings.append(
                f"the runs on {dataset} answered different questions ({sizes}; {len(common)} "
                "shared); their rows are not comparable: finish them with `ragkit eval ... "
                "--resume`, or pass --shared to score only the shared questions"
            )
    _disambiguate(rows)
    ordered: list[RunRow] = []
    for dataset in datasets:
        ordered += [r for r in rows if r.dataset == dataset]
        ordered += [r for r in references if r.dataset == dataset]
    return ordered, warnings


def _disambiguate(rows: list[RunRow]) -> None:
    """Add ``--top-k``, mode and profile to the labels of rows that would otherwise look alike."""
    seen: dict[tuple[str, str], list[RunRow]] = {}
    for row in rows:
        seen.setdefault((row.pipeline, row.dataset), []).append(row)
    for same in seen.values():
        if len(same) < 2:
            continue
        for key, prefix in (("top_k", "--top-k "), ("mode", ""), ("profile", "")):
            values = [row.settings.get(key) for row in same]
            if len({str(v) for v in values}) > 1:
                for row, value in zip(same, values, strict=True):
                    if value is not None:
                        row.pipeline += f" ({prefix}{value})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def format_results_table(rows: Sequence[RunRow]) -> str:
    """The Markdown results table: one row per pipeline and dataset, scores in percent.

    Args:
        rows: From :func:`load_run_rows`.

    Returns:
        A GitHub-flavoured Markdown table without a trailing newline.
    """
    lines = [
        "| pipeline | dataset | questions | EM | F1 | recall@5 | prompt tokens | s/question |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = f"{row.pipeline} (reference)" if row.reference else f"`{row.pipeline}`"
        tokens = "-" if row.prompt_tokens is None else f"{row.prompt_tokens:,.0f}"
        seconds = "-" if row.seconds is None else f"{row.seconds:.1f}"
        lines.append(
            f"| {name} | {DATASET_LABELS.get(row.dataset, row.dataset)} | {row.questions} | "
            f"{_pct(row.em)} | {_pct(row.f1)} | {_pct(row.recall5)} | {tokens} | {seconds} |"
        )
    return "\n".join(lines)


def _git_commit(cwd: Path | None = None) -> str | None:
    """The short commit of the checkout at ``cwd`` (``+changes`` when tracked files differ)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=30, cwd=cwd, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+changes" if dirty and sha else sha or None


def describe_machine() -> str:
    """This machine in a few words: OS, architecture, CPU model and core count."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"


def report_header(
    rows: Sequence[RunRow], machine: str | None = None, commit: str | None = None
) -> str:
    """One paragraph above the table: dates, commit, machine and the commands that made it.

    Args:
        rows: The table's rows.
        machine: Where the runs ran; default: a run's recorded ``machine``, else this machine.
        commit: The code's commit; default: a run's recorded ``commit``, else the commit of the
            ragkit checkout this code runs from (``+changes`` when its files differ from it).
    """
    runs = [r for r in rows if not r.reference]
    dates = sorted({r.made for r in runs if r.made})
    when = "-" if not dates else dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    recorded = [_read_json(Path(r.source) / "run.json") for r in runs if r.source]
    commit = commit or next((str(d["commit"]) for d in recorded if d.get("commit")), None)
    machine = machine or next((str(d["machine"]) for d in recorded if d.get("machine")), None)
    commit = commit or _git_commit(Path(__file__).resolve().parent) or "unknown"
    machine = machine or describe_machine()
    readers = sorted({str(r.settings.get("profile", "?")) for r in runs})
    patterns = sorted({r.pattern for r in runs if r.pattern})
    command = (
        f"`{patterns[0]} --out RUN` for each row"
        if len(patterns) == 1
        else "the `ragkit eval` command under the table for each row"
    )
    references = sorted({r.pipeline for r in rows if r.reference})
    ref = f"; reference rows: {', '.join(references)}" if references else ""
    return (
        f"Measured {when} at commit {commit} on {machine}; profile {', '.join(readers) or '-'}; "
        f"{command}, then `ragkit report RUN...`{ref}."
    )


def plot_f1(rows: Sequence[RunRow], path: str | Path) -> Path:
    """Write a PNG bar chart of F1 per pipeline (one panel per dataset) with 95% intervals.

    Args:
        rows: From :func:`load_run_rows`; rows without F1 are left out, reference rows are
            drawn hatched and without an interval.
        path: Where to write the PNG (atomically).

    Returns:
        The path written.

    Raises:
        RagkitError: matplotlib is not installed (it is in the ``bench`` extra).
    """
    from ragkit.errors import RagkitError

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RagkitError(
            "the F1 chart needs matplotlib, which is not installed: pip install 'ragkit[bench]' "
            "(in a checkout: pip install -e '.[bench]'), or pass --no-chart"
        ) from None
    import io

    drawn = [r for r in rows if r.f1 is not None]
    datasets = list(dict.fromkeys(r.dataset for r in drawn)) or ["-"]
    heights = [max(1, sum(r.dataset == d for r in drawn)) for d in datasets]
    fig = Figure(figsize=(7.5, 1.2 + sum(0.38 * h + 0.7 for h in heights)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(datasets), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        group = [r for r in drawn if r.dataset == dataset]
        values = [100 * (r.f1 or 0.0) for r in group]
        low = [100 * ((r.f1 or 0.0) - r.f1_interval[0]) if r.f1_interval else 0.0 for r in group]
        high = [100 * (r.f1_interval[1] - (r.f1 or 0.0)) if r.f1_interval else 0.0 for r in group]
        bars = ax.barh(
            range(len(group)), values, xerr=[low, high], capsize=3, color="#4c78a8", height=0.6
        )
        for bar, row in zip(bars, group, strict=True):
            if row.reference:
                bar.set_facecolor("#dddddd")
                bar.set_edgecolor("#777777")
                bar.set_hatch("//")
        labels = [f"{r.pipeline} (reference)" if r.reference else r.pipeline for r in group]
        ax.set_yticks(range(len(group)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(DATASET_LABELS.get(dataset, dataset), loc="left", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("F1 (%), with its 95% bootstrap interval over questions")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    out = Path(path)
    write_bytes_atomic(out, buffer.getvalue())
    return out


def write_report(
    rows: Sequence[RunRow],
    out_dir: str | Path,
    chart: bool = True,
    header: str | None = None,
) -> dict[str, Path]:
    """Write ``results.md`` (header, table, commands) and ``f1.png`` into ``out_dir``.

    Only these two files are (re)written; anything else in the folder is left alone.

    Args:
        rows: From :func:`load_run_rows`.
        out_dir: The report folder (created if needed).
        chart: Also draw the F1 chart (needs matplotlib).
        header: The line above the table; default :func:`report_header`.

    Returns:
        {"table": path of results.md, "chart": path of f1.png (when drawn)}.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if chart:  # first: a missing matplotlib fails before anything is written
        written["chart"] = plot_f1(rows, out / "f1.png")
    lines = [header or report_header(rows), "", format_results_table(rows), ""]
    if chart:
        lines += ["![F1 with its 95% bootstrap interval per pipeline](f1.png)", ""]
    commands = [r.command for r in rows if r.command]
    if commands:
        lines += ["Commands, one per row:", "", "```bash", *commands, "```", ""]
    written["table"] = out / "results.md"
    write_bytes_atomic(written["table"], "\n".join(lines).encode("utf-8"))
    return dict(sorted(written.items(), key=lambda kv: kv[0] != "table"))
