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

``ragkit bench reader`` (:func:`run_reader_bench`) times the default profile's reader
(``LlamaCppChatGenerator`` as ``configs/cpu-quality.yaml`` sets it up) on the same real RAG
prompts (HotpotQA questions with their passages, in ``pipelines/rag.yaml``'s prompt) with one
latency setting changed at a time (flash attention, threads, batch size, prefix reuse), prefill
and decode apart, each against the baseline measured in the same run, and checks that the
greedy answers stay the same.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.bench.table import make_row, render_rows
from ragkit.bench.timing import Stopwatch, progress_printer, timed
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = [
    "OVERHEAD_TARGET",
    "READER_SETTINGS",
    "format_reader_table",
    "format_table",
    "parse_setting",
    "reader_prompts",
    "run_llamacpp_bench",
    "run_reader_bench",
]

OVERHEAD_TARGET = 0.95
"""ragkit's llama.cpp path must reach at least this fraction of direct llama-cpp-python speed."""

_THROUGHPUT_PROMPT = "Explain step by step how a hash table stores and finds a key."


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
    from ragkit.models.llamacpp import LlamaCppLM

    say = progress_printer("[bench generate/llama.cpp] ", progress)
    say(f"loading {model}")
    load_seconds, lm = timed(lambda: LlamaCppLM.load(model, n_ctx=n_ctx, n_threads=n_threads))
    llm = lm.llm
    assert llm is not None
    try:
        decode_rows, n_new, identical = _measure_decode(lm, llm, max_new_tokens, repeats, say)
        prefix = _measure_prefix(lm, llm, doc_tokens, max_new_tokens, repeats, say)
        library = _library_prefix_rows(
            lm, llm, prefix.state, prefix.prompt, prefix.warm, doc_tokens, max_new_tokens, say,
            repeats,
        )  # fmt: skip
        rows = [*decode_rows, *prefix.rows, *library.pop("rows")]
        say("prefix: save and load the state on disk")
        t_load, reloaded, disk_rows = _measure_reload(lm, prefix.state, prefix.prompt,
                                                      max_new_tokens)  # fmt: skip
        rows += disk_rows
        say("prefix: after a restart, vs llama-cpp-python's LlamaDiskCache")
        restart = _restart_rows(lm, llm, prefix.prompt, doc_tokens, max_new_tokens, t_load,
                                reloaded)  # fmt: skip
        rows.extend(restart.pop("rows"))
        library.update(restart)
        say("done")
        return _llama_result(model, lm, load_seconds, max_new_tokens, n_new, identical, prefix,
                             reloaded, library, rows)  # fmt: skip
    finally:
        lm.close()


def _llama_result(
    model: str,
    lm: Any,
    load_seconds: float,
    max_new_tokens: int,
    n_new: int,
    identical: bool,
    prefix: _Prefix,
    reloaded: Any,
    library: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON result: setup, whether outputs matched, the library comparison and the rows."""
    return {
        "model": model,
        "model_path": str(lm.model_path),
        "llama_cpp_python_version": lm.llama_cpp_version,
        "n_ctx": lm.context_length,
        "n_threads": lm.n_threads,
        "load_seconds": load_seconds,
        "max_new_tokens": max_new_tokens,
        "completion_tokens": n_new,
        "document_tokens": len(prefix.prefix_ids),
        "prompt_tokens": len(prefix.prompt),
        "prefix_state_megabytes": prefix.state.nbytes / 1e6,
        "identical_tokens": identical,
        "prefix_identical": prefix.warm.token_ids == prefix.cold.token_ids,
        "reloaded_identical": reloaded.token_ids == prefix.cold.token_ids,
        "library_prefix": library,
        "overhead_target": OVERHEAD_TARGET,
        "rows": rows,
    }


def _direct_generate(
    lm: Any, llm: Any, ids: list[int], max_new_tokens: int
) -> tuple[list[int], float]:
    """The raw llama-cpp-python loop: ``Llama.generate`` with the same greedy sampler.

    Returns the tokens and the first token's latency.
    """
    llm.reset()
    first = 0.0
    out: list[int] = []
    with Stopwatch() as clock:
        gen = llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        for tok in gen:
            if not out and not first:
                first = clock.elapsed()
            if tok in lm.eos_token_ids:
                break
            out.append(int(tok))
            if len(out) >= max_new_tokens:
                break
        gen.close()
    return out, first


def _greedy_completion(llm: Any, prompt: list[int], max_new_tokens: int) -> dict[str, Any]:
    """One greedy ``create_completion`` (llama-cpp-python's public API) on prompt ids."""
    return llm.create_completion(
        prompt,
        max_tokens=max_new_tokens,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
    )


def _decode_tps(total: float, first: float, n: int) -> float:
    """Tokens per second after the first token (the decode phase alone)."""
    return (n - 1) / (total - first) if n > 1 and total > first else 0.0


def _measure_decode(
    lm: Any, llm: Any, max_new_tokens: int, repeats: int, say: Callable[[str], None]
) -> tuple[list[dict[str, Any]], int, bool]:
    """Decode, end-to-end and first-token speed of ragkit against the library on a short prompt.

    The three sides alternate run by run (best of each), so load elsewhere hits them alike.
    Returns the rows, the tokens ragkit generated and whether its tokens equal the library's.
    """
    ids = lm.apply_chat_template([{"role": "user", "content": _THROUGHPUT_PROMPT}])
    lm.reset()
    lm.generate(ids, max_new_tokens=4)  # warm-up: page in weights, allocate buffers

    def ragkit_run() -> Any:
        lm.reset()
        return lm.generate(ids, max_new_tokens=max_new_tokens)

    def direct_completion() -> dict[str, Any]:
        llm.reset()
        return _greedy_completion(llm, ids, max_new_tokens)

    say(f"decode: {repeats} alternating runs per side")
    ours: list[tuple[float, Any]] = []
    raw: list[tuple[float, tuple[list[int], float]]] = []
    api: list[tuple[float, dict[str, Any]]] = []
    for _ in range(max(1, repeats)):
        ours.append(timed(ragkit_run))
        raw.append(timed(lambda: _direct_generate(lm, llm, ids, max_new_tokens)))
        api.append(timed(direct_completion))
    result = min(ours, key=lambda x: x[0])[1]
    n_new = result.completion_tokens
    ours_decode = max(
        _decode_tps(r.seconds, r.first_token_seconds, r.completion_tokens) for _, r in ours
    )
    raw_decode = max(_decode_tps(t, first, len(toks)) for t, (toks, first) in raw)
    ours_e2e = max(r.completion_tokens / t for t, r in ours if t > 0)
    api_e2e = max(a["usage"]["completion_tokens"] / t for t, a in api if t > 0)
    rows = [
        make_row(f"decode tok/s ({n_new} tok)", ours_decode, raw_decode, "Llama.generate", "tok/s"),
        make_row(
            f"end-to-end tok/s ({len(ids)}-tok prompt)",
            ours_e2e,
            api_e2e,
            "create_completion",
            "tok/s",
        ),
        make_row(
            "first token, short prompt (s)",
            min(r.first_token_seconds for _, r in ours),
            min(first for _, (_, first) in raw),
            "Llama.generate",
            "s",
        ),
    ]
    return rows, n_new, result.token_ids == raw[0][1][0]


@dataclass
class _Prefix:
    """A document's prefix state, a second question on it cold and from the state, their rows."""

    prefix_ids: list[int]
    prompt: list[int]
    state: Any  # LlamaPrefixState
    cold: Any
    warm: Any
    rows: list[dict[str, Any]]


def _measure_prefill(
    lm: Any, llm: Any, prefix_ids: list[int], repeats: int
) -> tuple[float, float, Any]:
    """Best prefill time of ragkit and of ``Llama.eval``, alternating; and ragkit's state."""

    def direct_prefill() -> None:
        llm.reset()
        llm.eval(prefix_ids)

    t_ours_prefill = t_direct_prefill = float("inf")
    state = None
    for _ in range(max(1, repeats)):  # alternating, best of each
        t, state = timed(lambda: lm.prefill(prefix_ids))
        t_ours_prefill = min(t_ours_prefill, t)
        t_direct_prefill = min(t_direct_prefill, timed(direct_prefill)[0])
    assert state is not None
    return t_ours_prefill, t_direct_prefill, state


def _measure_prefix(
    lm: Any,
    llm: Any,
    doc_tokens: int,
    max_new_tokens: int,
    repeats: int,
    say: Callable[[str], None],
) -> _Prefix:
    """Prefill speed against ``Llama.eval``, then a second question cold and from the state."""
    from ragkit.bench.generate_bench import document_prompt

    say(f"prefix: building a ~{doc_tokens}-token document")
    prefix_ids, prompt = document_prompt(lm, doc_tokens)
    if len(prompt) + max_new_tokens > lm.context_length:
        raise ValueError(
            f"document + question ({len(prompt)} tokens) + {max_new_tokens} new tokens do "
            f"not fit n_ctx={lm.context_length}; raise n_ctx or lower doc_tokens"
        )

    say(f"prefix: prefill {len(prefix_ids)} tokens")
    t_ours_prefill, t_direct_prefill, state = _measure_prefill(lm, llm, prefix_ids, repeats)
    n = len(prefix_ids)
    say("prefix: second question, cold then cached")
    lm.reset()
    cold = lm.generate(prompt, max_new_tokens=max_new_tokens)
    lm.reset()
    warm = lm.generate(prompt, max_new_tokens=max_new_tokens, prefix_cache=state)
    rows = [
        make_row(
            f"prefill tok/s ({n}-tok document)",
            n / t_ours_prefill,
            n / t_direct_prefill,
            "Llama.eval",
            "tok/s",
        ),
        make_row(
            f"2nd question on {n}-tok doc, total (s)",
            warm.seconds,
            cold.seconds,
            "cold prefill",
            "s",
        ),
        make_row(
            "2nd question, first token (s)",
            warm.first_token_seconds,
            cold.first_token_seconds,
            "cold prefill",
            "s",
        ),
    ]
    return _Prefix(prefix_ids, prompt, state, cold, warm, rows)


def _measure_reload(
    lm: Any, state: Any, prompt: list[int], max_new_tokens: int
) -> tuple[float, Any, list[dict[str, Any]]]:
    """Save and load the prefix state on disk, then answer from the loaded one.

    Returns the load time, the answer and the save/load rows.
    """
    from ragkit.models.llamacpp import LlamaPrefixState

    with tempfile.TemporaryDirectory(prefix="ragkit-llama-bench-") as tmp:
        lm.model_sha256  # noqa: B018 - hash the GGUF once (memoized), outside the timings
        t_save, _ = timed(lambda: state.save(Path(tmp) / "prefix", lm))
        t_load, loaded = timed(lambda: LlamaPrefixState.load(Path(tmp) / "prefix", lm))
    lm.reset()
    reloaded = lm.generate(prompt, max_new_tokens=max_new_tokens, prefix_cache=loaded)
    rows = [
        make_row("prefix state save (s)", t_save, None, "", "s"),
        make_row("prefix state load (s)", t_load, None, "", "s"),
    ]
    return t_load, reloaded, rows


def _completion(llm: Any, prompt: list[int], max_new_tokens: int) -> tuple[float, str]:
    """Seconds and text of one greedy ``create_completion`` (the library's public API)."""
    seconds, out = timed(lambda: _greedy_completion(llm, prompt, max_new_tokens))
    return seconds, out["choices"][0]["text"]


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
    row = make_row("2nd question, same doc, total, best (s)", t_ours, t_auto,
                   "Llama last-prompt reuse", "s")  # fmt: skip
    say("prefix: two documents alternately (A, B, A, B)")
    alternating = _alternating_rows(lm, llm, state, (a_q1, a_q2), doc_tokens, max_new_tokens)
    return {
        "rows": [row, *alternating.pop("rows")],
        "same_doc_library_same_text": text_auto.strip() == warm.text.strip(),
        **alternating,
    }


def _alternating_rows(
    lm: Any,
    llm: Any,
    state: Any,
    doc_a: tuple[list[int], list[int]],
    doc_tokens: int,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Two documents asked about alternately: one state per document against the library's
    last-prompt reuse and its ``LlamaRAMCache``."""
    from ragkit.bench.generate_bench import question_prompts
    from ragkit.models.llamacpp import import_llama_cpp  # llama_cpp only through the models

    a_q1, a_q2 = doc_a
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
    texts = [r.text.strip() for r in ours]
    name = "2 docs alternating, per question (s)"
    return {
        "rows": [
            make_row(name, ours_per_q, plain_per_q, "Llama last-prompt reuse", "s"),
            make_row(name, ours_per_q, ram_per_q, "Llama + LlamaRAMCache", "s"),
        ],
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


# ---------------------------------------------------------------------- ragkit bench reader

READER_SETTINGS: tuple[str, ...] = (
    "flash_attn=true",
    "n_threads=1",
    "n_threads=2",
    "n_batch=128",
    "reuse_prefix=false",
)
"""What ``ragkit bench reader`` compares with the baseline by default, one change per setting."""

_SETTING_KEYS = (
    "n_threads",
    "n_threads_batch",
    "n_batch",
    "n_ubatch",
    "flash_attn",
    "reuse_prefix",
)


def parse_setting(spec: str) -> dict[str, Any]:
    """``"n_batch=128+n_ubatch=128"`` -> ``{"n_batch": 128, "n_ubatch": 128}``.

    Values are integers, ``true``/``false`` or ``null``; the generator checks their ranges.

    Raises:
        ValueError: Not ``key=value`` pairs joined by ``+``, or a key that is not one of
            ``LlamaCppChatGenerator``'s latency settings.
    """
    out: dict[str, Any] = {}
    for part in spec.split("+"):
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip().lower()
        if not sep or not key or not raw:
            raise ValueError(f"setting {spec!r}: expected key=value (joined by + for several)")
        if key not in _SETTING_KEYS:
            raise ValueError(f"setting {spec!r}: {key!r} is not one of {', '.join(_SETTING_KEYS)}")
        if raw in ("true", "false"):
            out[key] = raw == "true"
        elif raw in ("null", "none"):
            out[key] = None
        else:
            try:
                out[key] = int(raw)
            except ValueError:
                raise ValueError(
                    f"setting {spec!r}: {key} takes an integer, true, false or null"
                ) from None
    return out


def _rag_template() -> str:
    """The prompt template of the shipped default answering pipeline (``pipelines/rag.yaml``)."""
    from ragkit.config import read_yaml
    from ragkit.resources import resolve_yaml

    data = read_yaml(resolve_yaml("rag", "pipelines", "pipeline"))
    return str(data["components"]["prompt_builder"]["init_parameters"]["template"])


def reader_prompts(
    count: int, count_tokens: Callable[[list[Any]], int], target_tokens: int = 700
) -> list[dict[str, Any]]:
    """``count`` real RAG prompts: the first HotpotQA questions with about ``target_tokens`` each.

    Each prompt is ``pipelines/rag.yaml``'s template (through Haystack's ``ChatPromptBuilder``,
    as the pipeline renders it) over the question's two gold passages plus its distractor
    passages in dataset order until the rendered prompt reaches ``target_tokens``, formatted as
    the evaluation's stores format them (title, newline, text). Fixed passages rather than a
    retrieval run keep the prompts identical across runs and machines.

    Args:
        count: Prompts to build (the first ``count`` questions of ``../shared/data``'s HotpotQA).
        count_tokens: Reader tokens of a list of chat messages (template applied).
        target_tokens: Stop adding passages once the prompt has this many tokens.

    Returns:
        ``{"id", "question", "answers", "messages", "prompt_tokens"}`` per prompt.
    """
    from haystack.components.builders.chat_prompt_builder import ChatPromptBuilder

    from ragkit.evaluation.datasets import load_dataset

    builder = ChatPromptBuilder(template=_rag_template(), required_variables="*")
    examples = load_dataset("hotpotqa").examples[:count]
    out: list[dict[str, Any]] = []
    for ex in examples:
        messages, tokens = _fit_passages(builder, ex, count_tokens, target_tokens)
        out.append(
            {
                "id": ex.id,
                "question": ex.question,
                "answers": ex.answers,
                "messages": messages,
                "prompt_tokens": tokens,
            }
        )
    return out


def _fit_passages(
    builder: Any, ex: Any, count_tokens: Callable[[list[Any]], int], target_tokens: int
) -> tuple[list[Any], int]:
    """One question's prompt: gold passages first, then distractors, while under the target.

    Returns the rendered chat messages and their token count.
    """
    from haystack import Document

    gold = set(ex.gold_passage_ids)
    order = [p for p in ex.passages if p.id in gold] + [p for p in ex.passages if p.id not in gold]
    chosen: list[Any] = []
    messages: list[Any] = []
    tokens = 0
    for passage in order:
        trial = [*chosen, passage]
        docs = [
            Document(content=f"{p.title}\n{p.text}" if p.title else p.text)
            for p in ex.passages
            if p in trial
        ]
        trial_messages = builder.run(question=ex.question, documents=docs)["prompt"]
        trial_tokens = count_tokens(trial_messages)
        if chosen and trial_tokens > target_tokens:
            break
        chosen, messages, tokens = trial, trial_messages, trial_tokens
    return messages, tokens


def _warm_up_messages() -> list[Any]:
    """``rag.yaml``'s prompt with no passages: short, and it starts as every real prompt does.

    Answering it pages the weights in and leaves the system prompt and the fixed instruction in
    the KV cache, as the previous question leaves them in an eval, at a fraction of a real
    prompt's prefill.
    """
    from haystack.components.builders.chat_prompt_builder import ChatPromptBuilder

    builder = ChatPromptBuilder(template=_rag_template(), required_variables="*")
    return builder.run(question="Which city is the capital of France?", documents=[])["prompt"]


def _profile_reader(profile: str) -> dict[str, Any]:
    """The profile's ``generator`` init parameters; it must be the llama.cpp generator."""
    from ragkit.config import load_profile

    override = load_profile(profile).component_overrides().get("generator") or {}
    kind = str(override.get("type") or "")
    if not kind.endswith("LlamaCppChatGenerator"):
        raise ValueError(
            f"profile {profile!r} does not read with ragkit's LlamaCppChatGenerator "
            f"(generator type {kind or 'not set'}); give a llama.cpp profile such as cpu-quality"
        )
    return dict(override.get("init_parameters") or {})


def run_reader_bench(
    prompts: int = 8,
    settings: Sequence[str] = READER_SETTINGS,
    *,
    profile: str = "cpu-quality",
    prompt_tokens: int = 700,
    rounds: int = 1,
    control: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Time the profile's reader on the same real prompts, one latency setting changed at a time.

    One ``LlamaCppChatGenerator`` per setting, all loaded side by side (the weights are
    memory-mapped once; each holds its own KV cache, so prefix reuse works per setting as in an
    eval). Every setting answers every prompt; the order of the settings rotates from prompt
    to prompt (A B C, B C A, ...) so that load from other work on the machine falls on all of
    them alike. Each generator first answers a short prompt with the same instruction and no
    passages (warm-up: weights paged in, and the KV cache starts as between two eval questions).

    Args:
        prompts: Real prompts (the first HotpotQA questions, see :func:`reader_prompts`).
        settings: Changes from the baseline, ``key=value`` (``+`` joins several in one row).
        profile: Profile whose ``generator`` is the baseline (model, n_ctx, generation kwargs).
        prompt_tokens: About this many prompt tokens each.
        rounds: Passes over the prompts (means are over all of them).
        control: Add a second, identical baseline generator: its ratio shows the noise.
        progress: One line per call on stderr.

    Returns:
        ``rows`` (``make_row`` format: per-prompt prefill and decode seconds per setting against
        the baseline, ratio > 1 meaning faster than the baseline), ``settings`` (per setting:
        init parameters, what llama.cpp made of them, mean seconds, tokens, whether every
        answer equals the baseline's), the prompts' token counts, and the profile's reader.

    Raises:
        ValueError: A malformed setting, or a profile whose reader is not llama.cpp.
        InvalidParameter: A setting's value is out of range.
    """
    from ragkit.models.llamacpp_components import LlamaCppChatGenerator

    say = progress_printer("[bench reader] ", progress)
    if prompts < 1 or rounds < 1:
        raise ValueError("prompts and rounds must be at least 1")
    base, labels, params = _reader_params(profile, settings, control)
    gens = {label: LlamaCppChatGenerator(**params[label]) for label in labels}
    try:
        say(f"loading {len(gens)} readers ({base.get('model')}) and building {prompts} prompts")
        items = _reader_setup(gens, prompts, prompt_tokens, say)
        record = _measure_readers(gens, labels, items, rounds, say)
        per_setting = _reader_summary(labels, params, gens, record)
    finally:
        for gen in gens.values():
            gen.close()
    return _reader_result(profile, base, rounds, items, labels, per_setting)


def _reader_result(
    profile: str,
    base: dict[str, Any],
    rounds: int,
    items: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    per_setting: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The JSON result: the profile's reader, the prompts, per-setting summaries and the rows."""
    return {
        "profile": profile,
        "model": base.get("model"),
        "reader": base,
        "prompts": len(items),
        "rounds": rounds,
        "prompt_tokens": [it["prompt_tokens"] for it in items],
        "questions": [it["id"] for it in items],
        "settings": per_setting,
        "rows": _reader_rows(labels, per_setting),
    }


def _reader_params(
    profile: str, settings: Sequence[str], control: bool
) -> tuple[dict[str, Any], list[str], dict[str, dict[str, Any]]]:
    """The profile's reader and, per label, its init parameters (the baseline's plus a change).

    Parsed before anything loads, so a bad setting fails at once.
    """
    base = _profile_reader(profile)
    labels = ["baseline", *(["baseline (control)"] if control else []), *settings]
    params = {label: dict(base) for label in labels}
    for spec in settings:
        params[spec].update(parse_setting(spec))
    return base, labels, params


def _reader_setup(
    gens: Mapping[str, Any], prompts: int, prompt_tokens: int, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Load every reader, build the prompts with the baseline's tokenizer, warm every reader up."""
    for gen in gens.values():
        gen.warm_up()
    lm = gens["baseline"]._lm  # noqa: SLF001 - the loaded model, for its tokenizer

    def count_tokens(messages: list[Any]) -> int:
        chat = [{"role": m.role.value, "content": m.text or ""} for m in messages]
        return len(lm.apply_chat_template(chat))

    items = reader_prompts(prompts, count_tokens, prompt_tokens)
    say("warm-up: one short prompt with the same instruction per reader")
    warm = _warm_up_messages()
    for gen in gens.values():
        gen.run(warm, generation_kwargs={"max_new_tokens": 1})
    return items


def _measure_readers(
    gens: Mapping[str, Any],
    labels: Sequence[str],
    items: Sequence[Mapping[str, Any]],
    rounds: int,
    say: Callable[[str], None],
) -> dict[str, list[dict[str, Any]]]:
    """Every reader answers every prompt, in an order rotating from prompt to prompt.

    Rotation (A B C, B C A, ...) spreads load from other work on the machine over all readers.
    Returns each reader's calls: the generator's own prefill/decode timings, tokens and text.
    """
    record: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    calls = [(r, i) for r in range(rounds) for i in range(len(items))]
    for step, (rnd, i) in enumerate(calls):
        order = [*labels[step % len(labels) :], *labels[: step % len(labels)]]
        for label in order:
            reply = gens[label].run(items[i]["messages"])["replies"][0]
            timings, usage = reply.meta["timings"], reply.meta["usage"]
            record[label].append(
                {
                    "round": rnd,
                    "prompt": i,
                    "prefill_s": timings["prefill_s"],
                    "decode_s": timings["decode_s"],
                    "prompt_tokens": usage["prompt_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "prefix_tokens_reused": timings["prefix_tokens_reused"],
                    "text": reply.text or "",
                }
            )
            say(
                f"prompt {i + 1}/{len(items)} round {rnd + 1}: {label}: prefill "
                f"{timings['prefill_s']:.2f} s, decode {timings['decode_s']:.2f} s "
                f"({usage['completion_tokens']} tokens)"
            )
    return record


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _reader_summary(
    labels: Sequence[str],
    params: Mapping[str, dict[str, Any]],
    gens: Mapping[str, Any],
    record: Mapping[str, list[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Per setting: parameters, llama.cpp's view of them, mean seconds and answer identity."""
    reference = {(r["round"], r["prompt"]): r["text"] for r in record["baseline"]}
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        calls = record[label]
        out[label] = {
            "init_parameters": {k: v for k, v in params[label].items() if k != "generation_kwargs"},
            "llama_cpp": gens[label]._lm.latency_settings,  # noqa: SLF001 - the loaded model
            "prefill_s": _mean([c["prefill_s"] for c in calls]),
            "decode_s": _mean([c["decode_s"] for c in calls]),
            "completion_tokens": _mean([c["completion_tokens"] for c in calls]),
            "prefix_tokens_reused": _mean([c["prefix_tokens_reused"] for c in calls]),
            "same_answers": all(reference[(c["round"], c["prompt"])] == c["text"] for c in calls),
            "differing_answers": [
                {
                    "prompt": c["prompt"],
                    "baseline": reference[(c["round"], c["prompt"])],
                    "setting": c["text"],
                }
                for c in calls
                if reference[(c["round"], c["prompt"])] != c["text"]
            ],
            "calls": calls,
        }
    return out


def _reader_rows(
    labels: Sequence[str], per_setting: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Prefill and decode rows per setting against the baseline (ratio > 1: faster)."""
    base = per_setting["baseline"]
    rows: list[dict[str, Any]] = []
    for label in labels:
        got = per_setting[label]
        ref = None if label == "baseline" else base
        for part in ("prefill_s", "decode_s"):
            rows.append(
                make_row(
                    f"{label}: {part[:-2]} per prompt (s)",
                    got[part],
                    None if ref is None else ref[part],
                    "baseline",
                    "s",
                )
            )
    return rows


def format_reader_table(result: Mapping[str, Any]) -> str:
    """Render :func:`run_reader_bench` output: rows, then answers identical to the baseline's."""
    tokens = result["prompt_tokens"]
    reader = result["reader"]
    head = (
        f"reader: {result['model']} via llama.cpp, profile {result['profile']} "
        f"(n_ctx={reader.get('n_ctx')}, generation_kwargs={reader.get('generation_kwargs')}); "
        f"{result['prompts']} HotpotQA prompts of {min(tokens)}-{max(tokens)} tokens "
        f"(mean {_mean(tokens):.0f}), {result['rounds']} round(s), settings interleaved"
    )
    lines = [head, *render_rows(result["rows"], ratio_digits=2)]
    for label, info in result["settings"].items():
        cpp = info["llama_cpp"]
        differ = len(info["differing_answers"])
        same = f"{info['same_answers']}" + (
            f" ({differ} of {len(info['calls'])} differ)" if differ else ""
        )
        lines.append(
            f"{label}: same answers as baseline: {same}; "
            f"threads {cpp['n_threads']}/{cpp['n_threads_batch']} (decode/prompt), "
            f"n_batch {cpp['n_batch']}, n_ubatch {cpp['n_ubatch']}, flash_attn "
            f"{cpp['flash_attn']}, reuse_prefix {cpp['reuse_prefix']}; mean "
            f"{info['completion_tokens']:.1f} answer tokens, "
            f"{info['prefix_tokens_reused']:.0f} prompt tokens reused"
        )
        for diff in info["differing_answers"]:
            lines.append(
                f"  prompt {diff['prompt'] + 1}: baseline {diff['baseline'][:60]!r}, "
                f"{label} {diff['setting'][:60]!r}"
            )
    return "\n".join(lines)
