"""``ragkit bench context``: Jin et al.'s inverted-U, F1 as the number of passages grows.

For each number of passages k (3, 5, 10, 20 by default) and each variant of the reorder pipeline
(``plain``: retrieval order; ``reorder``: Jin et al.'s edge layout; ``reorder+demote``: plus
hard-negative demotion), every question of a QA dataset is answered by the pipeline's reader over
the dataset's pooled store and scored (EM, F1). Writes ``sweep.json``, ``table.md`` and
``f1_vs_k.png`` (matplotlib, from the ``bench`` extra) into the output folder. It is CPU-heavy with
the 1.5B reader (len(k) x 3 x questions generator calls): start with ``--limit``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "format_markdown", "run_context_sweep", "write_plot"]

# reorderer init_parameters per variant (on top of the pipeline's own)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"min_k": 1_000_000, "demote_below": None, "drop_below": None},
    "reorder": {"min_k": 0, "demote_below": None, "drop_below": None},
    "reorder+demote": {"min_k": 0},
}


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
        ``{"runs": [{variant, k, em, f1, n, seconds}], ...}``.
    """
    from ragkit.answering.run import answer_question, strip_citations
    from ragkit.evaluation.datasets import load_dataset
    from ragkit.evaluation.metrics import exact_match, f1
    from ragkit.evaluation.stores import pooled_store
    from ragkit.pipeline import close_pipeline, load_pipeline, read_pipeline_yaml
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import release_store

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    data, _ = read_pipeline_yaml(pipeline)
    if "reorderer" not in (data.get("components") or {}):
        raise ValueError(f"{pipeline}: needs a component named 'reorderer' (see reorder_rag.yaml)")
    examples = load_dataset(dataset)
    questions = examples.examples[:limit] if limit else examples.examples
    embedder = DocumentEmbedder(model=embedding_model)
    embedder.warm_up()
    store = pooled_store(examples, embedder, embedding_model, progress=progress)
    runs: list[dict[str, Any]] = []
    try:
        for variant in variants:
            merged = dict(overrides or {})
            reorderer = dict(merged.get("reorderer") or {})
            params = {**(reorderer.get("init_parameters") or {}), **VARIANTS[variant]}
            merged["reorderer"] = {**reorderer, "init_parameters": params}
            pipe = load_pipeline(pipeline, store=store, overrides=merged)
            pipe.warm_up()
            try:
                for k in ks:
                    started = time.perf_counter()
                    ems, f1s, demoted, answers = [], [], 0, []
                    for ex in questions:
                        res = answer_question(pipe, ex.question, k)
                        answer = strip_citations(res.answer or "")
                        ems.append(exact_match(answer, ex.answers))
                        f1s.append(f1(answer, ex.answers))
                        answers.append({"id": ex.id, "answer": answer, "f1": f1s[-1]})
                        info = res.shaping.get("reorderer", {})
                        demoted += len(info.get("hard_negatives") or [])
                    run = {
                        "variant": variant,
                        "k": k,
                        "n": len(questions),
                        "em": sum(ems) / len(ems) if ems else 0.0,
                        "f1": sum(f1s) / len(f1s) if f1s else 0.0,
                        "hard_negatives": demoted,
                        "seconds": time.perf_counter() - started,
                        "answers": answers,
                    }
                    runs.append(run)
                    if progress:
                        print(
                            f"[bench context] {variant:15} k={k:<3} F1 {run['f1']:.3f} "
                            f"EM {run['em']:.3f} ({run['seconds']:.0f} s)",
                            file=sys.stderr,
                            flush=True,
                        )
            finally:
                close_pipeline(pipe)
    finally:
        release_store(store)
    result = {
        "dataset": examples.name,
        "pipeline": str(pipeline),
        "questions": len(questions),
        "ks": list(ks),
        "runs": runs,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=1))
    (out_dir / "table.md").write_text(format_markdown(result) + "\n")
    result["plot"] = str(write_plot(result, out_dir / "f1_vs_k.png"))
    return result


def format_markdown(result: dict[str, Any]) -> str:
    """F1 (EM) per variant and k as a markdown table, for the README."""
    ks = result["ks"]
    variants = list(dict.fromkeys(r["variant"] for r in result["runs"]))
    cell = {(r["variant"], r["k"]): r for r in result["runs"]}
    lines = [
        f"{result['dataset']}, {result['questions']} questions, {result['pipeline']}: F1 (EM)",
        "",
        "| variant | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for v in variants:
        vals = [
            f"{cell[v, k]['f1']:.3f} ({cell[v, k]['em']:.3f})" if (v, k) in cell else "-"
            for k in ks
        ]
        lines.append(f"| {v} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


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
