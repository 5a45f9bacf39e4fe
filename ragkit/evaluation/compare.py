"""Compare two ``ragkit eval`` runs question by question, with a noise estimate.

Two pipelines scored on the same first N questions differ by chance as well as by method: with 100
questions a few exact matches flipping either way moves F1 by several points. Pairing the runs by
question id and resampling questions (a paired bootstrap) says how large a difference a run of
this size shows by chance, which is what "better than the baseline" has to clear.

Besides answer quality the comparison reports what each reader was given: gold-passage recall of
the passages actually read (for context-shaping pipelines, the chunks the selector kept or the
reorderer passed on, not the wider candidate ranking), mean prompt tokens and seconds per question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.errors import InvalidInputError
from ragkit.evaluation.report import read_records
from ragkit.evaluation.runner import RESULTS_FILE

__all__ = ["RunComparison", "compare_runs", "format_comparison", "paired_bootstrap", "read_ids"]


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``b - a`` over paired questions and its 95% bootstrap interval.

    Two runs answer the same questions, so resampling questions (not answers) says how large a
    difference a run of this size can show by chance.
    """
    if len(a) != len(b) or not a:
        raise ValueError("paired_bootstrap needs two equally long, non-empty lists")
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return sum(diffs) / n, means[int(0.025 * samples)], means[int(0.975 * samples) - 1]


def read_ids(record: dict[str, Any]) -> list[str]:
    """Passage ids the reader was given for one eval record.

    A ``ChunkSelector`` reports the retrieval ranks it kept and a ``Reorderer`` the ranks it passed
    on (hard negatives it dropped are missing); both index ``retrieved_ids``. Without a shaping
    report the reader read the ranking itself.
    """
    ranked = [str(i) for i in record.get("retrieved_ids") or []]
    shaping = (record.get("extra") or {}).get("shaping") or {}
    for report in shaping.values():
        ranks = report.get("selected") if "selected" in report else report.get("order")
        if isinstance(ranks, list):
            return [ranked[r - 1] for r in ranks if isinstance(r, int) and 0 < r <= len(ranked)]
    return ranked


def _recall(ids: Sequence[str], gold: Sequence[str]) -> float | None:
    return len(set(gold) & set(ids)) / len(set(gold)) if gold else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclass
class RunComparison:
    """Paired means of two runs over the questions both answered.

    Attributes:
        names: Labels of the two runs (their directories' names).
        questions: How many question ids both runs hold.
        means: Per run, mean EM, F1, read recall, prompt tokens and seconds.
        diffs: Per answer metric, (mean of second - first, 95% interval low, high).
        only_first: Ids answered exactly (EM 1) by the first run only; ``only_second`` likewise.
    """

    names: tuple[str, str]
    questions: int
    means: tuple[dict[str, float | None], dict[str, float | None]]
    diffs: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    only_first: list[str] = field(default_factory=list)
    only_second: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json``."""
        return {
            "runs": list(self.names),
            "questions": self.questions,
            "means": {name: m for name, m in zip(self.names, self.means, strict=True)},
            "differences": {k: list(v) for k, v in self.diffs.items()},
            "exact_only_first": self.only_first,
            "exact_only_second": self.only_second,
        }


def _load(run: Path) -> dict[str, dict[str, Any]]:
    path = run / RESULTS_FILE if run.is_dir() else run
    if not path.is_file():
        raise InvalidInputError(f"{run}: no {RESULTS_FILE} here; give a `ragkit eval --out` folder")
    return {str(r["id"]): r for r in read_records(path) if "id" in r}


def _row_means(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    def usage(r: dict[str, Any]) -> float | None:
        value = ((r.get("extra") or {}).get("usage") or {}).get("prompt_tokens")
        return float(value) if isinstance(value, int | float) else None

    return {
        "em": _mean([(r.get("metrics") or {}).get("em") for r in rows]),
        "f1": _mean([(r.get("metrics") or {}).get("f1") for r in rows]),
        "read_recall": _mean([_recall(read_ids(r), r.get("gold_passage_ids") or []) for r in rows]),
        "prompt_tokens": _mean([usage(r) for r in rows]),
        "seconds": _mean([r.get("seconds") for r in rows]),
    }


def compare_runs(first: str | Path, second: str | Path, samples: int = 2000) -> RunComparison:
    """Pair two eval runs by question id and estimate the noise of their differences.

    Args:
        first: The baseline run (an ``ragkit eval --out`` folder or its ``results.jsonl``).
        second: The run compared with it.
        samples: Bootstrap resamples.

    Returns:
        The paired comparison over the questions both runs answered.

    Raises:
        InvalidInputError: A run has no results, or the runs share no question.
    """
    a, b = _load(Path(first)), _load(Path(second))
    ids = [i for i in a if i in b]
    if not ids:
        raise InvalidInputError(f"{first} and {second} share no question id; nothing to compare")
    rows_a, rows_b = [a[i] for i in ids], [b[i] for i in ids]
    diffs = {}
    for metric in ("em", "f1"):
        xs = [(r.get("metrics") or {}).get(metric) for r in rows_a]
        ys = [(r.get("metrics") or {}).get(metric) for r in rows_b]
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
        if pairs:
            diffs[metric] = paired_bootstrap(
                [x for x, _ in pairs], [y for _, y in pairs], samples=samples
            )

    def exact(r: dict[str, Any]) -> bool:
        return bool((r.get("metrics") or {}).get("em"))

    return RunComparison(
        names=(Path(first).name, Path(second).name),
        questions=len(ids),
        means=(_row_means(rows_a), _row_means(rows_b)),
        diffs=diffs,
        only_first=[i for i in ids if exact(a[i]) and not exact(b[i])],
        only_second=[i for i in ids if exact(b[i]) and not exact(a[i])],
    )


def format_comparison(cmp: RunComparison) -> str:
    """A markdown table (percent for EM/F1/recall) and the paired differences, for the README."""

    def cell(value: float | None, scale: float, digits: int) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    lines = [
        f"{cmp.questions} questions answered by both runs",
        "",
        "| run | EM | F1 | read recall | prompt tokens | s/question |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in zip(cmp.names, cmp.means, strict=True):
        lines.append(
            f"| {name} | {cell(m['em'], 100, 1)} | {cell(m['f1'], 100, 1)} | "
            f"{cell(m['read_recall'], 100, 1)} | {cell(m['prompt_tokens'], 1, 0)} | "
            f"{cell(m['seconds'], 1, 1)} |"
        )
    lines.append("")
    for metric, (mean, lo, hi) in cmp.diffs.items():
        lines.append(
            f"{metric.upper()} {cmp.names[1]} - {cmp.names[0]}: {mean * 100:+.1f} "
            f"(95% paired bootstrap [{lo * 100:+.1f}, {hi * 100:+.1f}])"
        )
    lines.append(
        f"exact only in {cmp.names[0]}: {len(cmp.only_first)}, "
        f"only in {cmp.names[1]}: {len(cmp.only_second)}"
    )
    return "\n".join(lines)
