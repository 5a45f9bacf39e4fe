"""``ragkit bench context``: Jin et al.'s inverted-U, F1 as the number of passages grows.

For each number of passages k (3, 5, 10, 20 by default) and each variant of the reorder pipeline
(``plain``: retrieval order; ``reorder``: Jin et al.'s edge layout; ``reorder+demote``: plus
hard-negative demotion), every question of a QA dataset is answered by the pipeline's reader over
the dataset's pooled store and scored (EM, F1). Writes ``sweep.json``, ``table.md`` and
``f1_vs_k.png`` (matplotlib, from the ``bench`` extra) into the output folder. It is CPU-heavy with
the 1.5B reader (len(k) x 3 x questions generator calls): start with ``--limit``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ragkit.bench.table import markdown_table
from ragkit.errors import InvalidInputError
from ragkit.evaluation.compare import paired_bootstrap

__all__ = ["VARIANTS", "format_markdown", "paired_bootstrap", "run_context_sweep", "write_plot"]

# reorderer init_parameters per variant (on top of the pipeline's own)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"min_k": 1_000_000, "demote_below": None, "drop_below": None},
    "reorder": {"min_k": 0, "demote_below": None, "drop_below": None},
    "reorder+demote": {"min_k": 0},
}


def _settings_key(dataset: str, pipeline: Path, overrides: Any, embedding_model: str) -> str:
    """Hash of everything that changes answers, so ``answers.jsonl`` is only resumed like for like."""
    blob = json.dumps(
        [dataset, pipeline.read_text(), overrides or {}, embedding_model],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _load_done(path: Path, key: str) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Answers already in ``path`` for these settings; refuses a file written under other ones."""
    done: dict[tuple[str, int, str], dict[str, Any]] = {}
    if not path.exists():
        return done
    lines = path.read_text().splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):
                break  # a line cut short by an interrupted run: answer that question again
            raise InvalidInputError(f"{path}:{lineno}: not JSON; use another --out") from None
        if row.get("settings") != key:
            raise InvalidInputError(
                f"{path} holds answers made with other settings (dataset, pipeline, profile or "
                "embedding model); use another --out"
            )
        done[row["variant"], int(row["k"]), row["id"]] = row
    return done


def run_context_sweep(
    dataset: str,
    pipeline: Path,
    out_dir: Path,
    ks: Sequence[int] = (3, 5, 10, 20),
    variants: Sequence[str] = tuple(VARIANTS),
    limit: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    embedding_model: str = "minilm",
    progress: bool = True,
) -> dict[str, Any]:
    """Answer ``dataset`` for every (variant, k) and collect EM/F1; writes JSON, markdown, PNG.

    Every answer is appended to ``out_dir/answers.jsonl`` as it is made, and a later run with the
    same settings skips what is there: with the 1.5B reader a full sweep takes hours on a CPU, so
    an interrupted run must not lose them.

    Args:
        dataset: Dataset short name or path (``ragkit eval`` names).
        pipeline: A pipeline with a component named ``reorderer`` (e.g. reorder_rag.yaml).
        out_dir: Output folder (created).
        ks: Passage counts handed to the reader (``--top-k``).
        variants: Names from :data:`VARIANTS`.
        limit: Only the first N questions.
        overrides: Profile component overrides (the profile's reader).
        embedding_model: The store's embedding model.
        progress: One line per run on stderr.

    Returns:
        ``{"runs": [{variant, k, em, f1, recall, n, seconds, answers}], ...}``.
    """
    sweep = _setup(dataset, pipeline, out_dir, ks, variants, limit, overrides, embedding_model)
    if any(sweep.todo.values()):
        _answer_all(sweep, progress)
    return _report(sweep)


@dataclass
class _Sweep:
    """What a sweep answers and what it already has: the setup every step shares."""

    examples: Any  # the loaded dataset
    questions: list[Any]
    pipeline: Path
    out_dir: Path
    ks: Sequence[int]
    variants: Sequence[str]
    overrides: dict[str, dict[str, Any]] | None
    embedding_model: str
    key: str
    done: dict[tuple[str, int, str], dict[str, Any]]
    todo: dict[tuple[str, int], list[Any]]


def _setup(
    dataset: str,
    pipeline: Path,
    out_dir: Path,
    ks: Sequence[int],
    variants: Sequence[str],
    limit: int | None,
    overrides: dict[str, dict[str, Any]] | None,
    embedding_model: str,
) -> _Sweep:
    """Check the inputs before anything loads, then find what is left to answer."""
    from ragkit.evaluation.datasets import load_dataset
    from ragkit.pipeline import read_pipeline_yaml

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise InvalidInputError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    data, _ = read_pipeline_yaml(pipeline)
    if "reorderer" not in (data.get("components") or {}):
        raise InvalidInputError(
            f"{pipeline}: needs a component named 'reorderer' (see reorder_rag.yaml)"
        )
    examples = load_dataset(dataset)
    questions = examples.examples[:limit] if limit else examples.examples
    out_dir.mkdir(parents=True, exist_ok=True)
    key = _settings_key(examples.name, pipeline, overrides, embedding_model)
    done = _load_done(out_dir / "answers.jsonl", key)
    todo = {
        (v, k): [ex for ex in questions if (v, k, ex.id) not in done] for v in variants for k in ks
    }
    return _Sweep(examples, questions, pipeline, out_dir, ks, variants, overrides,
                  embedding_model, key, done, todo)  # fmt: skip


def _answer_all(sweep: _Sweep, progress: bool) -> None:
    """Answer every missing (variant, k, question) over one pooled store, one pipeline a variant."""
    from ragkit.evaluation.stores import pooled_store
    from ragkit.pipeline import close_pipeline, load_pipeline
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import release_store

    embedder = DocumentEmbedder(model=sweep.embedding_model)
    embedder.warm_up()
    store = pooled_store(sweep.examples, embedder, sweep.embedding_model, progress=progress)
    try:
        with (sweep.out_dir / "answers.jsonl").open("a") as sink:
            for variant in sweep.variants:
                if not any(sweep.todo[variant, k] for k in sweep.ks):
                    continue
                merged = dict(sweep.overrides or {})
                reorderer = dict(merged.get("reorderer") or {})
                params = {**(reorderer.get("init_parameters") or {}), **VARIANTS[variant]}
                merged["reorderer"] = {**reorderer, "init_parameters": params}
                pipe = load_pipeline(sweep.pipeline, store=store, overrides=merged)
                pipe.warm_up()
                try:
                    for k in sweep.ks:
                        _answer_cell(sweep, pipe, variant, k, sink, progress)
                finally:
                    close_pipeline(pipe)
    finally:
        release_store(store)


def _answer_cell(
    sweep: _Sweep, pipe: Any, variant: str, k: int, sink: TextIO, progress: bool
) -> None:
    """Answer one (variant, k)'s missing questions; each answer is written as soon as it is made."""
    for ex in sweep.todo[variant, k]:
        row = _answer_row(sweep.key, pipe, variant, k, ex)
        sink.write(json.dumps(row) + "\n")
        sink.flush()
        sweep.done[variant, k, ex.id] = row
    if progress and sweep.todo[variant, k]:
        rows = [sweep.done[variant, k, ex.id] for ex in sweep.questions]
        print(
            f"[bench context] {variant:15} k={k:<3} "
            f"F1 {_mean(r['f1'] for r in rows):.3f} "
            f"EM {_mean(r['em'] for r in rows):.3f}",
            file=sys.stderr,
            flush=True,
        )


def _answer_row(key: str, pipe: Any, variant: str, k: int, ex: Any) -> dict[str, Any]:
    """Answer one question with k passages and score it (EM, F1, gold-passage recall)."""
    from ragkit.answering.run import answer_question, strip_citations
    from ragkit.evaluation.metrics import exact_match, f1

    res = answer_question(pipe, ex.question, k)
    answer = strip_citations(res.answer or "")
    handed = {d.meta.get("passage_id", d.id) for d in res.ranked}
    gold = set(ex.gold_passage_ids)
    info = res.shaping.get("reorderer", {})
    return {
        "settings": key,
        "variant": variant,
        "k": k,
        "id": ex.id,
        "answer": answer,
        "em": exact_match(answer, ex.answers),
        "f1": f1(answer, ex.answers),
        "recall": len(gold & handed) / len(gold) if gold else None,
        "hard_negatives": len(info.get("hard_negatives") or []),
        "prompt_tokens": res.usage.get("prompt_tokens"),
        "seconds": res.seconds,
    }


def _report(sweep: _Sweep) -> dict[str, Any]:
    """Summarize each (variant, k) and write sweep.json, table.md and (with matplotlib) the PNG."""
    runs = [
        _summarize(variant, k, [sweep.done[variant, k, ex.id] for ex in sweep.questions])
        for variant in sweep.variants
        for k in sweep.ks
    ]
    result = {
        "dataset": sweep.examples.name,
        "pipeline": str(sweep.pipeline),
        "questions": len(sweep.questions),
        "ks": list(sweep.ks),
        "runs": runs,
    }
    out_dir = sweep.out_dir
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=1))
    (out_dir / "table.md").write_text(format_markdown(result) + "\n")
    # the PNG needs the bench extra; without it the JSON and the table still stand (the CLI
    # checks for matplotlib before answering anything)
    have_plot = importlib.util.find_spec("matplotlib") is not None
    result["plot"] = str(write_plot(result, out_dir / "f1_vs_k.png")) if have_plot else None
    return result


def _mean(values: Any) -> float:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else 0.0


def _summarize(variant: str, k: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One (variant, k) cell: means over its questions, the per-question answers kept."""
    return {
        "variant": variant,
        "k": k,
        "n": len(rows),
        "em": _mean(r["em"] for r in rows),
        "f1": _mean(r["f1"] for r in rows),
        "recall": _mean(r.get("recall") for r in rows),
        "hard_negatives": sum(r.get("hard_negatives") or 0 for r in rows),
        "prompt_tokens": _mean(r.get("prompt_tokens") for r in rows),
        "seconds": sum(r.get("seconds") or 0.0 for r in rows),
        "answers": [{"id": r["id"], "answer": r["answer"], "f1": r["f1"]} for r in rows],
    }


def format_markdown(result: dict[str, Any]) -> str:
    """F1 (EM) per variant and k as a markdown table, for the README."""
    ks = result["ks"]
    variants = list(dict.fromkeys(r["variant"] for r in result["runs"]))
    cell = {(r["variant"], r["k"]): r for r in result["runs"]}
    header = ["variant", *(f"k={k}" for k in ks)]
    rows = [
        [v, *(f"{cell[v, k]['f1']:.3f} ({cell[v, k]['em']:.3f})" if (v, k) in cell else "-"
              for k in ks)]
        for v in variants
    ]  # fmt: skip
    recall = {k: cell[variants[0], k].get("recall") for k in ks if (variants[0], k) in cell}
    if any(r is not None for r in recall.values()):
        rows.append(
            ["gold-passage recall",
             *(f"{recall[k]:.3f}" if recall.get(k) is not None else "-" for k in ks)]
        )  # fmt: skip
    lines = [
        f"{result['dataset']}, {result['questions']} questions, {result['pipeline']}: F1 (EM)",
        "",
        *markdown_table(header, rows),
    ]
    diffs = _bootstrap_rows(variants, ks, cell)
    if diffs:
        lines += [
            "",
            f"F1 difference vs {variants[0]} on the same questions, 95% paired bootstrap interval:",
            "",
            *markdown_table(header, diffs),
        ]
    return "\n".join(lines)


def _bootstrap_rows(
    variants: list[str], ks: Sequence[int], cell: dict[tuple[str, int], dict[str, Any]]
) -> list[list[str]]:
    """Per variant after the first, its F1 difference from the first with a 95% interval."""
    diffs = []
    for v in variants[1:]:
        vals = []
        for k in ks:
            base, other = cell.get((variants[0], k)), cell.get((v, k))
            if not base or not other or "answers" not in base or "answers" not in other:
                vals.append("-")
                continue
            mean, lo, hi = paired_bootstrap(
                [a["f1"] for a in base["answers"]], [a["f1"] for a in other["answers"]]
            )
            vals.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        if any(x != "-" for x in vals):
            diffs.append([v, *vals])
    return diffs


def write_plot(result: dict[str, Any], path: Path) -> Path:
    """F1 against k, one line per variant (matplotlib, headless)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError(
            "the PNG needs matplotlib: pip install 'ragkit[bench]' (sweep.json/table.md are written)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for variant in dict.fromkeys(r["variant"] for r in result["runs"]):
        pts = sorted((r["k"], r["f1"]) for r in result["runs"] if r["variant"] == variant)
        ax.plot([k for k, _ in pts], [f for _, f in pts], marker="o", label=variant)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(result["ks"], [str(k) for k in result["ks"]])
    ax.set_xlabel("passages given to the reader (k)")
    ax.set_ylabel("F1")
    ax.set_title(f"{result['dataset']} ({result['questions']} questions)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
