"""``ragkit bench generate``: decoding speed of ragkit's CausalLM against transformers, in one run.

Measures (1) tokens/s of :meth:`CausalLM.generate` versus ``model.generate`` on the same prompt
and model (target ratio >= 0.95), (2) first-token latency, and (3) a second question on the same
~2k-token document answered with a prefilled prefix cache versus cold (target <= 25% of the cold
time) and whether both outputs are identical. The prefix rows also compare with what transformers
already does: ``model.generate(past_key_values=<copy of the same prefill>)`` for a second
question, which is what ragkit's cache amounts to in one process; what ragkit adds is shown by a
question after a restart (the cache loaded from disk; transformers keeps nothing between
processes) and by two documents asked about alternately (one cache per document; transformers
keeps no cache between ``generate`` calls). Absolute numbers only compare on one machine.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.bench.table import align_columns
from ragkit.bench.timing import progress_printer, timed
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["format_table", "run_generate_bench"]

THROUGHPUT_TARGET = 0.95
PREFIX_TARGET = 0.25

_THROUGHPUT_PROMPT = "Explain step by step how a hash table stores and finds a key."
_QUESTIONS = (
    "What is the main topic of the document above? Answer in one sentence.",
    "Which Python keywords are mentioned in the document above? List three.",
)


def _document(
    count_tokens: Callable[[str], int], encode: Any, decode: Any, n_tokens: int, other: bool = False
) -> str:
    """About ``n_tokens`` of real English/technical text from Python's own docs (offline).

    ``other`` takes the topics from the end of the list: a second, different document.
    """
    from pydoc_data.topics import topics

    parts: list[str] = []
    total = 0
    for key in sorted(topics, reverse=other):
        text = topics[key].strip()
        parts.append(text)
        total += count_tokens(text)
        if total >= n_tokens:
            break
    return decode(encode("\n\n".join(parts))[:n_tokens])


def question_prompts(
    lm: Any, doc_tokens: int, other: bool = False
) -> tuple[list[int], list[list[int]]]:
    """A ~``doc_tokens`` document prefix and, per question of ``_QUESTIONS``, a prompt starting
    with it.

    The chat template is rendered once per question and cut at the question marker, so the
    prefix ids are exactly the first ids of every prompt (the condition for reusing a prefix
    cache). ``other`` builds a second, different document.
    """
    document = _document(lm.count_tokens, lm.encode, lm.decode, doc_tokens, other)
    marker = "\n\nQuestion: "

    def split(question: str) -> tuple[list[int], list[int]]:
        text = lm.chat_template_text(
            [{"role": "user", "content": f"Document:\n{document}{marker}{question}"}]
        )
        cut = text.index(marker)
        return lm.encode(text[:cut]), lm.encode(text[cut:])

    prefix_ids, _ = split(_QUESTIONS[0])
    return prefix_ids, [prefix_ids + split(q)[1] for q in _QUESTIONS]


def document_prompt(lm: Any, doc_tokens: int, other: bool = False) -> tuple[list[int], list[int]]:
    """A ~``doc_tokens`` document prefix and a second question's full prompt that starts with it.

    See :func:`question_prompts`; ``other`` builds a second, different document.
    """
    prefix_ids, prompts = question_prompts(lm, doc_tokens, other)
    return prefix_ids, prompts[1]


def run_generate_bench(
    model: str = DEFAULT_CAUSAL_MODEL,
    max_new_tokens: int = 64,
    doc_tokens: int = 2000,
    progress: bool = True,
    *,
    repeats: int = 2,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | None = None,
    threads: int | None = None,
    answer_tokens: int = 16,
) -> dict[str, Any]:
    """Run the generation benchmark and return its measurements as a JSON-ready dict.

    Args:
        model: Causal model name.
        max_new_tokens: Tokens generated per call.
        doc_tokens: Length of the shared document for the prefix-cache measurement.
        progress: Print one line per phase to stderr.
        repeats: Alternating runs per side for throughput; the best of each is kept (the
            machine may be shared, and the best run is the least disturbed one).
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: ``auto`` or an explicit dtype.
        cache_dir: Converted GGUF cache root.
        threads: torch intra-op threads for the run (restored afterwards). On a small machine
            shared with other work, 1 thread avoids the OpenMP oversubscription cliff (measured
            5x slower with 2 threads on 2 busy cores); ``None`` keeps torch's default.
        answer_tokens: Answer length for the prefix-cache question. RAG answers are short, and
            decoding cannot be cached, so the cached/cold ratio depends on it; it is reported.

    Returns:
        ``throughput``, ``first_token`` and ``prefix_cache`` sections plus run metadata.
    """
    from ragkit.models.hf import torch_threads

    with torch_threads(threads):
        return _run(
            model,
            max_new_tokens,
            doc_tokens,
            progress,
            repeats,
            device,
            dtype,
            cache_dir,
            answer_tokens,
        )


def _run(
    model: str,
    max_new_tokens: int,
    doc_tokens: int,
    progress: bool,
    repeats: int,
    device: str,
    dtype: str,
    cache_dir: str | None,
    answer_tokens: int,
) -> dict[str, Any]:
    """Load the model, measure throughput, then the prefix cache and the library baselines."""
    from ragkit.models.causal_lm import CausalLM
    from ragkit.models.hf import library_versions, torch_thread_count

    say = progress_printer("[bench generate] ", progress)
    say(f"loading {model}")
    load_seconds, lm = timed(
        lambda: CausalLM.load(model, device=device, dtype=dtype, cache_dir=cache_dir)
    )
    throughput, short_first = _measure_throughput(lm, max_new_tokens, repeats, say)
    prefix = _measure_prefix(lm, doc_tokens, answer_tokens, say)
    library = _measure_library_prefix(lm, prefix, doc_tokens, answer_tokens, repeats, say)
    return {
        "model": model,
        "device": lm.device,
        "dtype": lm.dtype_name,
        "transformers_version": library_versions()["transformers"],
        "torch_threads": torch_thread_count(),
        "load_seconds": load_seconds,
        "max_new_tokens": max_new_tokens,
        "throughput": throughput,
        "first_token": {
            "short_prompt_seconds": short_first,
            "document_cold_seconds": prefix.cold.first_token_seconds,
            "document_cached_seconds": prefix.warm.first_token_seconds,
        },
        "prefix_cache": _prefix_section(prefix, answer_tokens),
        "library_prefix": library,
    }


def _measure_throughput(
    lm: Any, max_new_tokens: int, repeats: int, say: Callable[[str], None]
) -> tuple[dict[str, Any], float]:
    """Decode speed of ragkit against transformers' ``generate``, alternating, best of each.

    Returns the ``throughput`` section and the best first-token time on the short prompt.
    """
    ids = lm.apply_chat_template([{"role": "user", "content": _THROUGHPUT_PROMPT}])
    lm.generate(ids, max_new_tokens=4)  # warm-up: allocator, kernels
    ours, theirs = [], []
    same_tokens = True
    for i in range(repeats):
        say(f"throughput run {i + 1}/{repeats}")
        result = lm.generate(ids, max_new_tokens=max_new_tokens)
        ours.append(result)
        # transformers' model.generate
        seconds, hf_ids = timed(lambda: lm.library_generate(ids, max_new_tokens))
        theirs.append((len(hf_ids), seconds))
        same_tokens = same_tokens and hf_ids == result.token_ids
    ours_tps = max(r.tokens_per_second for r in ours)
    theirs_tps = max(n / s for n, s in theirs if s > 0)
    section = {
        "prompt_tokens": len(ids),
        "ragkit_tokens_per_second": ours_tps,
        "transformers_tokens_per_second": theirs_tps,
        "ratio": ours_tps / theirs_tps if theirs_tps else 0.0,
        "target": THROUGHPUT_TARGET,
        "identical_tokens": same_tokens,
        "completion_tokens": ours[0].completion_tokens,
    }
    return section, min(r.first_token_seconds for r in ours)


@dataclass
class _Prefix:
    """One document's prefix cache and a second question answered cold and with the cache."""

    prefix_ids: list[int]
    prompt: list[int]
    cache: Any  # PrefixCache
    prefill_seconds: float
    cold: Any  # GenerationResult without the cache
    warm: Any  # GenerationResult with it


def _measure_prefix(
    lm: Any, doc_tokens: int, answer_tokens: int, say: Callable[[str], None]
) -> _Prefix:
    """Prefill a ~``doc_tokens`` document once, then answer a second question cold and cached."""
    say(f"prefix cache: building a ~{doc_tokens}-token document")
    prefix_ids, prompt = document_prompt(lm, doc_tokens)
    say(f"prefix cache: prefill {len(prefix_ids)} tokens")
    prefill_seconds, cache = timed(lambda: lm.prefill(prefix_ids))
    say("prefix cache: second question, cold")
    cold = lm.generate(prompt, max_new_tokens=answer_tokens)
    say("prefix cache: second question, cached")
    warm = lm.generate(prompt, max_new_tokens=answer_tokens, prefix_cache=cache)
    return _Prefix(prefix_ids, prompt, cache, prefill_seconds, cold, warm)


def _prefix_section(prefix: _Prefix, answer_tokens: int) -> dict[str, Any]:
    """The ``prefix_cache`` section: cached against cold, on time and on output."""
    cold, warm = prefix.cold, prefix.warm
    return {
        "document_tokens": len(prefix.prefix_ids),
        "prompt_tokens": len(prefix.prompt),
        "prefill_seconds": prefix.prefill_seconds,
        "cache_megabytes": prefix.cache.nbytes / 1e6,
        "cold_seconds": cold.seconds,
        "cached_seconds": warm.seconds,
        "ratio": warm.seconds / cold.seconds if cold.seconds else 0.0,
        "first_token_ratio": (
            warm.first_token_seconds / cold.first_token_seconds if cold.first_token_seconds else 0.0
        ),
        "target": PREFIX_TARGET,
        "completion_tokens": cold.completion_tokens,
        "answer_tokens_cap": answer_tokens,
        "identical_output": warm.token_ids == cold.token_ids,
    }


def _measure_library_prefix(
    lm: Any,
    prefix: _Prefix,
    doc_tokens: int,
    answer_tokens: int,
    repeats: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The ``library_prefix`` section: what transformers does with the same prefill, a restart
    (the cache from disk) and two documents asked about alternately."""
    from ragkit.models.causal_lm import PrefixCache

    prompt, cache = prefix.prompt, prefix.cache
    say("prefix cache: second question, ragkit vs generate(past_key_values=copy of the cache)")
    # alternating runs, best of each: both sides reuse the same prefill, so only noise differs
    ours_cached_seconds = prefix.warm.seconds
    hf_cached_seconds = float("inf")
    hf_cached: list[int] = []
    for _ in range(max(1, repeats)):
        ours_cached_seconds = min(
            ours_cached_seconds,
            lm.generate(prompt, max_new_tokens=answer_tokens, prefix_cache=cache).seconds,
        )
        seconds, hf_cached = timed(
            lambda: lm.library_generate(prompt, answer_tokens, prefix_cache=cache)
        )
        hf_cached_seconds = min(hf_cached_seconds, seconds)

    say("prefix cache: restart (save, load from disk, answer)")
    with tempfile.TemporaryDirectory(prefix="ragkit-generate-bench-") as tmp:
        cache.save(Path(tmp) / "doc")
        load_seconds_cache, loaded = timed(lambda: PrefixCache.load(Path(tmp) / "doc", lm))
    restarted = lm.generate(prompt, max_new_tokens=answer_tokens, prefix_cache=loaded)
    del loaded
    alternating = _measure_alternating(lm, prefix, doc_tokens, answer_tokens, say)
    return {
        "ragkit_cached_best_seconds": ours_cached_seconds,
        "transformers_cached_seconds": hf_cached_seconds,
        "transformers_cached_identical": hf_cached == prefix.warm.token_ids,
        "restart_load_seconds": load_seconds_cache,
        "restart_answer_seconds": restarted.seconds,
        "restart_identical": restarted.token_ids == prefix.cold.token_ids,
        **alternating,
    }


def _measure_alternating(
    lm: Any, prefix: _Prefix, doc_tokens: int, answer_tokens: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Two documents asked about alternately: one cache each for ragkit, cold for transformers
    (which keeps no cache between ``generate`` calls)."""
    say("prefix cache: two documents asked about alternately")
    prompt, cache = prefix.prompt, prefix.cache
    prefix_b, prompt_b = document_prompt(lm, doc_tokens, other=True)
    cache_b = lm.prefill(prefix_b)
    alternating = [(prompt, cache), (prompt_b, cache_b), (prompt, cache), (prompt_b, cache_b)]
    ours_alt = [
        lm.generate(p, max_new_tokens=answer_tokens, prefix_cache=c) for p, c in alternating
    ]
    # transformers keeps no cache between generate calls: each question is cold
    cold_alt = [
        timed(lambda p=p: lm.library_generate(p, answer_tokens)) for p in (prompt, prompt_b)
    ]
    alt_identical = [r.token_ids for r in ours_alt[:2]] == [ids for _, ids in cold_alt] and [
        r.token_ids for r in ours_alt[2:]
    ] == [r.token_ids for r in ours_alt[:2]]
    del cache_b
    return {
        "alternating_documents": 2,
        "alternating_questions": len(ours_alt),
        "alternating_ragkit_seconds_per_question": sum(r.seconds for r in ours_alt) / len(ours_alt),
        "alternating_transformers_seconds_per_question": sum(t for t, _ in cold_alt)
        / len(cold_alt),
        "alternating_identical": alt_identical,
    }


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.3f}" if theirs else "-"


def format_table(result: dict[str, Any]) -> str:
    """Render :func:`run_generate_bench` output as a plain-text table with baselines and ratios."""
    rows = [("metric", "ragkit", "baseline", "ratio", "target"), *_core_rows(result)]
    lp = result.get("library_prefix")
    if lp:
        rows += _library_rows(lp, result["prefix_cache"])
    head = (
        f"generate bench: {result['model']} on {result['device']} ({result['dtype']}, "
        f"{result['torch_threads']} threads, transformers {result['transformers_version']}, "
        f"max_new_tokens={result['max_new_tokens']})"
    )
    return "\n".join([head, *align_columns(rows)])


def _core_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Throughput, first token and prefix-cache rows, each with its target where it has one."""
    tp, ft, pc = result["throughput"], result["first_token"], result["prefix_cache"]
    return [
        (
            f"decode tok/s ({tp['completion_tokens']} tok, transformers generate)",
            f"{tp['ragkit_tokens_per_second']:.1f}",
            f"{tp['transformers_tokens_per_second']:.1f}",
            f"{tp['ratio']:.3f}",
            f">= {tp['target']:.2f} {_verdict(tp['ratio'] >= tp['target'])}",
        ),
        ("greedy tokens identical to transformers", str(tp["identical_tokens"]), "", "", ""),
        ("first token, short prompt (s)", f"{ft['short_prompt_seconds']:.3f}", "", "", ""),
        (
            f"2nd question on {pc['document_tokens']}-token doc, "
            f"{pc['completion_tokens']}-token answer, total (s)",
            f"{pc['cached_seconds']:.2f}",
            f"{pc['cold_seconds']:.2f}",
            f"{pc['ratio']:.3f}",
            f"<= {pc['target']:.2f} {_verdict(pc['ratio'] <= pc['target'])}",
        ),
        (
            "  first token, cached vs cold (s)",
            f"{ft['document_cached_seconds']:.3f}",
            f"{ft['document_cold_seconds']:.3f}",
            f"{pc['first_token_ratio']:.3f}",
            "",
        ),
        (
            "  prefill once (s) / cache size (MB)",
            f"{pc['prefill_seconds']:.2f}",
            "",
            "",
            f"{pc['cache_megabytes']:.0f} MB",
        ),
        ("  cached output identical to cold", str(pc["identical_output"]), "", "", ""),
    ]


def _library_rows(lp: dict[str, Any], pc: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows against what transformers does: the same prefill reused, a restart, two documents."""
    restart = lp["restart_load_seconds"] + lp["restart_answer_seconds"]
    per_q_ours = lp["alternating_ragkit_seconds_per_question"]
    per_q_theirs = lp["alternating_transformers_seconds_per_question"]
    return [
        (
            "  vs transformers generate(past_key_values=copy of the prefill), best (s)",
            f"{lp['ragkit_cached_best_seconds']:.2f}",
            f"{lp['transformers_cached_seconds']:.2f}",
            _ratio(lp["ragkit_cached_best_seconds"], lp["transformers_cached_seconds"]),
            f"same output: {lp['transformers_cached_identical']}",
        ),
        (
            "after a restart: load cache from disk + answer, vs cold (s)",
            f"{restart:.2f}",
            f"{pc['cold_seconds']:.2f}",
            _ratio(restart, pc["cold_seconds"]),
            f"same output: {lp['restart_identical']}",
        ),
        (
            f"{lp['alternating_documents']} documents alternating, per question, "
            "vs transformers generate (s)",
            f"{per_q_ours:.2f}",
            f"{per_q_theirs:.2f}",
            _ratio(per_q_ours, per_q_theirs),
            f"same output: {lp['alternating_identical']}",
        ),
    ]
