"""``ragkit bench memory``: build, reload and per-question clue latency of a global memory.

For each corpus size (real Wikipedia paragraphs, about 2k, 8k and 30k tokens) the memory model
memorizes the corpus (``build``), the memory is saved (``size on disk``) and loaded back
(``reload``; goal: at most 5% of build, as MemoRAG's 35 s -> 1.5 s), and the clue tasks of one
question (clue spans + surrogate questions, every window) run from the restored states versus
re-reading each window from scratch (the baseline without a memory), in the same process.
Corpora longer than the model's window are memorized in several windows, so the per-question
cost and the baseline both grow with the window count. Peak RSS is the process's high-water mark
after each corpus. Absolute times only compare on one machine.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragkit.bench.table import make_row, render_rows
from ragkit.bench.timing import progress_printer, timed
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["RELOAD_GOAL", "format_table", "run_memory_bench"]

RELOAD_GOAL = 0.05
"""Reload must take at most this fraction of the build time."""

_QUESTION = "Which of the people and places described here are connected, and how?"


def _corpus(lm: Any, tokens: int) -> list[Any]:
    """Corpus units of real text adding up to about ``tokens`` tokens of ``lm``."""
    from ragkit.bench.corpus import build_bench_corpus
    from ragkit.memory.backend import MemoryUnit

    units: list[Any] = []
    total = 0
    batch = max(8, tokens // 60)
    chunks = build_bench_corpus(batch * 4, seed=7)
    for cid, text in chunks:
        if total >= tokens:
            break
        n = lm.count_tokens(text)
        units.append(MemoryUnit(cid, f"bench-{cid[:-2]}", text))
        total += n
    return units


def _rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_memory_bench(
    sizes: Sequence[int] = (2000, 8000, 30000),
    model: str = DEFAULT_CAUSAL_MODEL,
    model_backend: str = "llamacpp",
    kind: str = "kv",
    n_ctx: int = 8192,
    n_threads: int | None = None,
    task_tokens: int = 48,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure build, reload, clue latency (restored vs re-read), size on disk and peak RSS.

    Args:
        sizes: Corpus sizes in tokens.
        model: Memory model.
        model_backend: ``llamacpp`` or ``transformers``.
        kind: ``kv`` or ``gist``.
        n_ctx: Memory model context (bounds the window).
        n_threads: llama.cpp threads.
        task_tokens: Max new tokens per clue task (both sides generate the same greedy tokens).
        progress: One line per phase on stderr.

    Returns:
        Setup fields and one entry per corpus with its ``rows`` (``make_row`` format).
    """
    from ragkit.memory.backend import MemorySettings
    from ragkit.memory.lm import load_memory_lm
    from ragkit.memory.prompts import SPAN, SUR

    say = progress_printer("[bench memory] ", progress)
    say(f"loading {model} ({model_backend})")
    lm = load_memory_lm(model, model_backend, n_ctx, n_threads)
    settings = MemorySettings(kind=kind, task_tokens=task_tokens)  # type: ignore[arg-type]
    tasks = [SPAN.format(question=_QUESTION), SUR.format(question=_QUESTION)]
    out: dict[str, Any] = {
        "model": model,
        "model_backend": model_backend,
        "kind": kind,
        "n_ctx": n_ctx,
        "task_tokens": task_tokens,
        "question": _QUESTION,
        "corpora": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="ragkit-bench-memory-"))
    try:
        for size in sizes:
            out["corpora"].append(_measure_corpus(lm, settings, tasks, size, tmp / f"m{size}", say))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        inner = getattr(lm, "lm", None)
        if inner is not None and hasattr(inner, "close"):
            inner.close()
    return out


def _measure_corpus(
    lm: Any,
    settings: Any,
    tasks: Sequence[str],
    size: int,
    directory: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One corpus size: build, save, reload, then the clue tasks restored against re-read.

    The saved memory is removed afterwards, so the disk holds one corpus at a time.
    """
    from ragkit.memory.loader import load_memory
    from ragkit.memory.store import new_memory

    units = _corpus(lm, size)
    memory = new_memory(lm, settings)
    say(f"{size} tokens: memorizing {len(units)} chunks")
    build, _ = timed(lambda: memory.memorize(units))
    memory.save(directory)
    disk = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    say(f"{size} tokens: {len(memory.windows)} window(s), reloading")
    reload_s, restored = timed(lambda: load_memory(directory, lm))
    say(f"{size} tokens: clue tasks from the restored memory")
    warm_s, warm = timed(lambda: [restored.ask_all(t) for t in tasks])
    say(f"{size} tokens: clue tasks re-reading the corpus")
    cold_s, cold = timed(lambda: [restored.ask_all_cold(t) for t in tasks])
    rows = [
        make_row("build (s)", build, None, "", "s"),
        make_row("reload (s)", reload_s, build, "build", "s"),
        make_row("clues per question (s)", warm_s, cold_s, "re-read corpus", "s"),
    ]
    entry = {
        "target_tokens": size,
        "corpus_tokens": sum(lm.count_tokens(u.text) for u in units),
        "memory_tokens": memory.num_tokens,
        "windows": len(memory.windows),
        "rows": rows,
        "reload_fraction": reload_s / build if build else None,
        "reload_goal_met": build > 0 and reload_s <= RELOAD_GOAL * build,
        "disk_bytes": disk,
        "peak_rss_mb": _rss_mb(),
        "same_clues": [[t for _, t in w] for w in warm] == cold,
    }
    shutil.rmtree(directory, ignore_errors=True)
    return entry


def format_table(result: dict[str, Any]) -> str:
    """The report: one block per corpus, rows against their same-run baselines."""
    lines = [
        f"memory bench: {result['kind']} memory, {result['model']} ({result['model_backend']}, "
        f"n_ctx {result['n_ctx']}), {result['task_tokens']} new tokens per clue task"
    ]
    for c in result["corpora"]:
        lines.append("")
        lines.append(
            f"corpus ~{c['target_tokens']} tokens ({c['corpus_tokens']} corpus tokens, "
            f"{c['windows']} window(s), {c['memory_tokens']} memory tokens): "
            f"{c['disk_bytes'] / 2**20:.1f} MiB on disk, peak RSS {c['peak_rss_mb']:.0f} MiB, "
            f"reload {c['reload_fraction']:.1%} of build "
            f"({'meets' if c['reload_goal_met'] else 'misses'} the 5% goal), "
            f"same clues restored vs re-read: {c['same_clues']}"
        )
        lines.extend(render_rows(c["rows"]))
    return "\n".join(lines)
