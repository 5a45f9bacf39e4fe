"""llama.cpp rows for ``ragkit bench generate``: ragkit's LlamaCppLM against llama-cpp-python.

Both sides run on the *same* ``llama_cpp.Llama`` object in the same process, with the KV cache
reset before every timed call, so the ratios measure ragkit's overhead (chat template, stop and
streaming bookkeeping, prefix states) and nothing else; the target is within 5% (ratio >= 0.95).
The prefix rows answer a second question about the same ~2k-token document (text from Python's
own ``pydoc_data``) from a restored prefix state versus cold, and then against what
llama-cpp-python already does: it reuses the longest common prefix with the *last* prompt
evaluated (automatic), and with ``Llama.set_cache`` a ``LlamaRAMCache`` / ``LlamaDiskCache``
keeps whole states keyed by prompt tokens. The rows show where ragkit's explicit per-document
states add something: two documents asked about alternately, and a question after a restart
(state loaded from disk). Absolute numbers only compare on one machine; on a 2-core box shared with other work, pass ``n_threads=1`` (2 OpenMP threads on 2
busy cores measured ~10x slower).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragkit.bench.table import make_row, render_rows
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["OVERHEAD_TARGET", "format_table", "run_llamacpp_bench"]

OVERHEAD_TARGET = 0.95
"""ragkit's llama.cpp path must reach at least this fraction of direct llama-cpp-python speed."""

_THROUGHPUT_PROMPT = "Explain step by step how a hash table stores and finds a key."


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Fastest wall time of ``repeats`` runs (the least disturbed on a shared machine)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_llamacpp_bench(
    model: str = DEFAULT_CAUSAL_MODEL,
    max_new_tokens: int = 64,
    doc_tokens: int = 2000,
    progress: bool = True,
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    """Measure prefill and decode speed, prefix-state reuse, and overhead versus llama-cpp-python.

    Args:
        model: Packaged GGUF name or ``.gguf`` path.
        max_new_tokens: Tokens generated per call (greedy; EOS may end a call earlier, the
            rows use the tokens actually produced).
        doc_tokens: Length of the shared document.
        progress: Print one line per phase to stderr.
        n_ctx: Context to allocate (must hold the document, question and answer).
        n_threads: llama.cpp threads (decode and prompt); ``None`` lets llama.cpp choose.
        repeats: Runs per side for the speed rows; the best of each is kept.

    Returns:
        Setup fields and ``rows`` (``make_row`` format: metric, ragkit, baseline,
        baseline_name, unit, ratio, where ratio > 1 means ragkit is faster), plus
        ``identical_tokens`` (ragkit vs direct greedy) and ``prefix_identical`` (cached vs cold).
    """
    from ragkit.bench.generate_bench import document_prompt
    from ragkit.models.llamacpp import LlamaCppLM, LlamaPrefixState

    def say(message: str) -> None:
        if progress:
            print(f"[bench generate/llama.cpp] {message}", file=sys.stderr, flush=True)

    say(f"loading {model}")
    t0 = time.perf_counter()
    lm = LlamaCppLM.load(model, n_ctx=n_ctx, n_threads=n_threads)
    load_seconds = time.perf_counter() - t0
    llm = lm.llm
    assert llm is not None
    rows: list[dict[str, Any]] = []
    try:
        ids = lm.apply_chat_template([{"role": "user", "content": _THROUGHPUT_PROMPT}])
        lm.reset()
        lm.generate(ids, max_new_tokens=4)  # warm-up: page in weights, allocate buffers

        def ragkit_run() -> Any:
            lm.reset()
            return lm.generate(ids, max_new_tokens=max_new_tokens)

        def direct_generate() -> tuple[list[int], float]:
            """The raw llama-cpp-python loop: ``Llama.generate`` with the same greedy sampler."""
            llm.reset()
            start = time.perf_counter()
            first = 0.0
            out: list[int] = []
            gen = llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
            for tok in gen:
                if not out and not first:
                    first = time.perf_counter() - start
                if tok in lm.eos_token_ids:
                    break
                out.append(int(tok))
                if len(out) >= max_new_tokens:
                    break
            gen.close()
            return out, first

        def direct_completion() -> dict[str, Any]:
            """llama-cpp-python's public API on the same prompt ids."""
            llm.reset()
            return llm.create_completion(
                ids,
                max_tokens=max_new_tokens,
                temperature=0.0,
                top_k=0,
                top_p=1.0,
                min_p=0.0,
                repeat_penalty=1.0,
            )

        say(f"decode: {repeats} alternating runs per side")
        ours: list[tuple[float, Any]] = []
        raw: list[tuple[float, tuple[list[int], float]]] = []
        api: list[tuple[float, dict[str, Any]]] = []
        for _ in range(max(1, repeats)):
            ours.append(_best(ragkit_run, 1))
            raw.append(_best(direct_generate, 1))
            api.append(_best(direct_completion, 1))
        result = min(ours, key=lambda x: x[0])[1]
        n_new = result.completion_tokens

        def decode_tps(total: float, first: float, n: int) -> float:
            return (n - 1) / (total - first) if n > 1 and total > first else 0.0

        ours_decode = max(
            decode_tps(r.seconds, r.first_token_seconds, r.completion_tokens) for _, r in ours
        )
        raw_decode = max(decode_tps(t, first, len(toks)) for t, (toks, first) in raw)
        ours_e2e = max(r.completion_tokens / t for t, r in ours if t > 0)
        api_e2e = max(a["usage"]["completion_tokens"] / t for t, a in api if t > 0)
        identical = result.token_ids == raw[0][1][0]
        rows.append(
            make_row(
                f"decode tok/s ({n_new} tok)", ours_decode, raw_decode, "Llama.generate", "tok/s"
            )
        )
        rows.append(
            make_row(
                f"end-to-end tok/s ({len(ids)}-tok prompt)",
                ours_e2e,
                api_e2e,
                "create_completion",
                "tok/s",
            )
        )
        rows.append(
            make_row(
                "first token, short prompt (s)",
                min(r.first_token_seconds for _, r in ours),
                min(first for _, (_, first) in raw),
                "Llama.generate",
                "s",
            )
        )

        say(f"prefix: building a ~{doc_tokens}-token document")
        prefix_ids, prompt = document_prompt(lm, doc_tokens)
        if len(prompt) + max_new_tokens > lm.context_length:
            raise ValueError(
                f"document + question ({len(prompt)} tokens) + {max_new_tokens} new tokens do "
                f"not fit n_ctx={lm.context_length}; raise n_ctx or lower doc_tokens"
            )

        def direct_prefill() -> None:
            llm.reset()
            llm.eval(prefix_ids)

        say(f"prefix: prefill {len(prefix_ids)} tokens")
        t_ours_prefill = float("inf")
        t_direct_prefill = float("inf")
        state = None
        for _ in range(max(1, repeats)):
            t, state = _best(lambda: lm.prefill(prefix_ids), 1)
            t_ours_prefill = min(t_ours_prefill, t)
            t_direct_prefill = min(t_direct_prefill, _best(direct_prefill, 1)[0])
        assert state is not None
        rows.append(
            make_row(
                f"prefill tok/s ({len(prefix_ids)}-tok document)",
                len(prefix_ids) / t_ours_prefill,
                len(prefix_ids) / t_direct_prefill,
                "Llama.eval",
                "tok/s",
            )
        )

        say("prefix: second question, cold then cached")
        lm.reset()
        cold = lm.generate(prompt, max_new_tokens=max_new_tokens)
        lm.reset()
        warm = lm.generate(prompt, max_new_tokens=max_new_tokens, prefix_cache=state)
        rows.append(
            make_row(
                f"2nd question on {len(prefix_ids)}-tok doc, total (s)",
                warm.seconds,
                cold.seconds,
                "cold prefill",
                "s",
            )
        )
        rows.append(
            make_row(
                "2nd question, first token (s)",
                warm.first_token_seconds,
                cold.first_token_seconds,
                "cold prefill",
                "s",
            )
        )

        library = _library_prefix_rows(
            lm, llm, state, prompt, warm, doc_tokens, max_new_tokens, say, repeats
        )
        rows.extend(library.pop("rows"))

        say("prefix: save and load the state on disk")
        with tempfile.TemporaryDirectory(prefix="ragkit-llama-bench-") as tmp:
            lm.model_sha256  # noqa: B018 - hash the GGUF once (memoized), outside the timings
            t_save, _ = _best(lambda: state.save(Path(tmp) / "prefix", lm), 1)
            t_load, loaded = _best(lambda: LlamaPrefixState.load(Path(tmp) / "prefix", lm), 1)
        lm.reset()
        reloaded = lm.generate(prompt, max_new_tokens=max_new_tokens, prefix_cache=loaded)
        rows.append(make_row("prefix state save (s)", t_save, None, "", "s"))
        rows.append(make_row("prefix state load (s)", t_load, None, "", "s"))
        say("prefix: after a restart, vs llama-cpp-python's LlamaDiskCache")
        restart = _restart_rows(lm, llm, prompt, doc_tokens, max_new_tokens, t_load, reloaded)
        rows.extend(restart.pop("rows"))
        library.update(restart)
        say("done")
        return {
            "model": model,
            "model_path": str(lm.model_path),
            "llama_cpp_python_version": lm.llama_cpp_version,
            "n_ctx": lm.context_length,
            "n_threads": lm.n_threads,
            "load_seconds": load_seconds,
            "max_new_tokens": max_new_tokens,
            "completion_tokens": n_new,
            "document_tokens": len(prefix_ids),
            "prompt_tokens": len(prompt),
            "prefix_state_megabytes": state.nbytes / 1e6,
            "identical_tokens": identical,
            "prefix_identical": warm.token_ids == cold.token_ids,
            "reloaded_identical": reloaded.token_ids == cold.token_ids,
            "library_prefix": library,
            "overhead_target": OVERHEAD_TARGET,
            "rows": rows,
        }
    finally:
        lm.close()


def _completion(llm: Any, prompt: list[int], max_new_tokens: int) -> tuple[float, str]:
    """Seconds and text of one greedy ``create_completion`` (the library's public API)."""
    start = time.perf_counter()
    out = llm.create_completion(
        prompt,
        max_tokens=max_new_tokens,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
    )
    return time.perf_counter() - start, out["choices"][0]["text"]


def _library_prefix_rows(
    lm: Any,
    llm: Any,
    state: Any,
    prompt: list[int],
    warm: Any,
    doc_tokens: int,
    max_new_tokens: int,
    say: Callable[[str], None],
    repeats: int,
) -> dict[str, Any]:
    """ragkit's prefix states against llama-cpp-python's own prefix reuse, in one process.

    * Same document, second question: the library reuses the longest common prefix with the
      last prompt it evaluated, so after a first question on the document it skips the prefill
      too (the fair baseline for ragkit's cached row).
    * Two documents alternately (A, B, A, B): the last prompt is always the other document, so
      the automatic reuse finds only the chat header; ``LlamaRAMCache`` keeps a state per
      completion and finds the longest prefix among them; ragkit keeps one state per document.
    """
    from ragkit.bench.generate_bench import question_prompts

    rows: list[dict[str, Any]] = []
    _, (a_q1, a_q2) = question_prompts(lm, doc_tokens)
    assert a_q2 == prompt
    say("prefix: same document, ragkit's state vs llama-cpp-python reusing the last prompt")
    t_ours, t_auto, text_auto = warm.seconds, float("inf"), ""
    for _ in range(max(1, repeats)):  # alternating, best of each
        lm.reset()
        t_ours = min(
            t_ours, lm.generate(prompt, max_new_tokens=max_new_tokens, prefix_cache=state).seconds
        )
        llm.reset()
        _completion(llm, a_q1, max_new_tokens)  # the first question on the doc: a cold prefill
        t, text_auto = _completion(llm, a_q2, max_new_tokens)
        t_auto = min(t_auto, t)
    rows.append(
        make_row(
            "2nd question, same doc, total, best (s)",
            t_ours,
            t_auto,
            "Llama last-prompt reuse",
            "s",
        )
    )

    say("prefix: two documents alternately (A, B, A, B)")
    prefix_b, (b_q1, b_q2) = question_prompts(lm, doc_tokens, other=True)
    lm.reset()
    state_b = lm.prefill(prefix_b)
    ours = []
    for p, st in ((a_q2, state), (b_q2, state_b), (a_q1, state), (b_q1, state_b)):
        lm.reset()
        ours.append(lm.generate(p, max_new_tokens=max_new_tokens, prefix_cache=st))
    ours_per_q = sum(r.seconds for r in ours) / len(ours)
    llm.reset()
    plain = [_completion(llm, p, max_new_tokens) for p in (a_q2, b_q2)]
    plain_per_q = sum(t for t, _ in plain) / len(plain)

    from ragkit.models.llamacpp import import_llama_cpp  # llama_cpp only through the models

    llm.reset()
    llm.set_cache(import_llama_cpp().LlamaRAMCache())
    try:
        for p in (a_q1, b_q1):  # first question on each document fills the cache (cold)
            _completion(llm, p, max_new_tokens)
        cached = [_completion(llm, p, max_new_tokens) for p in (a_q2, b_q2, a_q1, b_q1)]
    finally:
        llm.set_cache(None)
        llm.reset()
    ram_per_q = sum(t for t, _ in cached) / len(cached)
    rows.append(
        make_row(
            "2 docs alternating, per question (s)",
            ours_per_q,
            plain_per_q,
            "Llama last-prompt reuse",
            "s",
        )
    )
    rows.append(
        make_row(
            "2 docs alternating, per question (s)",
            ours_per_q,
            ram_per_q,
            "Llama + LlamaRAMCache",
            "s",
        )
    )
    texts = [r.text.strip() for r in ours]
    return {
        "rows": rows,
        "same_doc_library_same_text": text_auto.strip() == warm.text.strip(),
        "alternating_library_same_text": [t.strip() for _, t in plain] == texts[:2]
        and [t.strip() for _, t in cached] == texts,
    }


def _restart_rows(
    lm: Any,
    llm: Any,
    prompt: list[int],
    doc_tokens: int,
    max_new_tokens: int,
    t_load: float,
    reloaded: Any,
) -> dict[str, Any]:
    """A question after a restart: ragkit's state from disk vs the library's ``LlamaDiskCache``.

    A restart is modelled by resetting the context (the KV cache is empty, as in a new
    process) and, for the library, a new ``LlamaDiskCache`` over the same folder.
    """
    import contextlib
    import io

    from ragkit.bench.generate_bench import question_prompts
    from ragkit.models.llamacpp import import_llama_cpp  # llama_cpp only through the models

    LlamaDiskCache = import_llama_cpp().LlamaDiskCache  # the library's class, by its name

    _, (a_q1, _) = question_prompts(lm, doc_tokens)
    # LlamaDiskCache prints a line per write to stderr; keep the bench output readable
    with (
        tempfile.TemporaryDirectory(prefix="ragkit-llama-disk-") as tmp,
        contextlib.redirect_stderr(io.StringIO()),
    ):
        llm.reset()
        llm.set_cache(LlamaDiskCache(cache_dir=tmp))
        try:
            _completion(llm, a_q1, max_new_tokens)  # before the restart: fills the cache
            llm.reset()
            llm.set_cache(LlamaDiskCache(cache_dir=tmp))  # the new process's cache object
            t_disk, text_disk = _completion(llm, prompt, max_new_tokens)
        finally:
            llm.set_cache(None)
            llm.reset()
    ours = t_load + reloaded.seconds
    return {
        "rows": [
            make_row(
                "after a restart: state from disk + answer (s)",
                ours,
                t_disk,
                "Llama + LlamaDiskCache",
                "s",
            )
        ],
        "restart_library_same_text": text_disk.strip() == reloaded.text.strip(),
    }


def format_table(result: Mapping[str, Any]) -> str:
    """Render :func:`run_llamacpp_bench` output as an aligned table (ratio > 1: ragkit faster)."""
    out = render_rows(result["rows"], ratio_digits=2)
    note = (
        f"llama.cpp: {result['model']} (llama-cpp-python {result['llama_cpp_python_version']}, "
        f"n_ctx={result['n_ctx']}, {result['n_threads']} threads, "
        f"max_new_tokens={result['max_new_tokens']}); target: ragkit >= "
        f"{result['overhead_target']:.2f}x of direct llama-cpp-python"
    )
    flags = (
        f"greedy tokens identical to direct: {result['identical_tokens']}; cached output "
        f"identical to cold: {result['prefix_identical']}; after disk reload: "
        f"{result['reloaded_identical']}; prefix state {result['prefix_state_megabytes']:.0f} MB"
    )
    lib = result.get("library_prefix")
    if lib:
        flags += (
            "; same text as llama-cpp-python: same doc "
            f"{lib['same_doc_library_same_text']}, alternating "
            f"{lib['alternating_library_same_text']}, restart {lib['restart_library_same_text']}"
        )
    return "\n".join([note, *out, flags])
