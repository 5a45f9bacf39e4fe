"""``ragkit bench speculative``: RAPID long-document QA, speculation vs target-only in one run.

Per context length (a document of about that many target tokens, built from the shared HotpotQA
paragraphs, two of whose questions it answers) and per drafter, on one backend:

* **decode**: the same greedy generation by the target alone and with each drafter, with the
  document prefix (and the drafter's retrieved context) already in the KV caches, so the
  figures are the question + answer cost. The outputs must be token-identical; a difference is
  reported and makes the command exit non-zero, unless the target itself nearly ties there:
  llama.cpp's logits depend on the batch shape (a block of k tokens is not computed exactly as
  k one-token steps; shifts up to ~0.7 were measured), so where the target's logits of the two
  diverging tokens are within ``NEAR_TIE_LOGITS`` the row carries the gap as ``near_tie_gap``
  (shown as ``tie``) and is not a mismatch. A rollback or verification bug diverges where
  the target is sure, and still fails.
* **end to end**: the first question on the document (cold: document prefill, prefix saved to
  a fresh cache directory, retrieval, drafter prefill, decoding) against a second question with
  both models' caches emptied (as in a new process), which loads the saved document prefix.

Drafters: ``ngram`` (prompt lookup in the document), ``model`` (the small model over the
retrieved chunks, fixed gamma), ``model+ngram adaptive`` (the n-gram fallback and the
adaptive policy that turns drafting off where it is measured not to pay, starting cold), and
``adaptive, learned``: the same reader after it answered the document's other question, its
policy carrying what it measured there (a reader serving a stream of questions). On the
transformers backend also ``ngram tree`` and ``model tree``: tree drafting
(:mod:`ragkit.decoding.tree`, 3 alternatives per level, gamma deep).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.bench.timing import timed

__all__ = ["BENCH_INSTRUCTION", "build_long_document", "format_table", "run_speculative_bench"]

BENCH_INSTRUCTION = (
    "Answer the question using the document. Give the answer, then quote the sentences of the "
    "document that support it."
)
NEAR_TIE_LOGITS = 1.0
"""Largest target logit gap between two diverging tokens still explained by batch-shape noise."""

_CONFIGS: tuple[tuple[str, str, bool, bool, int], ...] = (
    # label, drafter, adaptive policy, policy already taught by answering another question,
    # tree width (0: chain drafts)
    ("ngram", "ngram", False, False, 0),
    ("model", "model", False, False, 0),
    ("model+ngram adaptive", "model+ngram", True, False, 0),
    ("adaptive, learned", "model+ngram", True, True, 0),
)
_TREE_CONFIGS: tuple[tuple[str, str, bool, bool, int], ...] = (
    # tree drafting (transformers backend only): 3 alternatives per level, gamma deep
    ("ngram tree", "ngram", False, False, 3),
    ("model tree", "model", False, False, 3),
)


@dataclass
class _Item:
    """One HotpotQA row: its question, answer, context paragraphs and supporting ones."""

    question: str
    answer: str
    paragraphs: list[str]
    gold: list[str]


def _items(limit: int = 400) -> list[_Item]:
    """HotpotQA rows (question, answer, context paragraphs) from the shared data, if present."""
    from ragkit.bench.corpus import shared_data_dir

    data = shared_data_dir()
    path = data / "hotpotqa-migres" / "hotpot.json" if data else None
    items: list[_Item] = []
    if path is None or not path.is_file():
        return items
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            support = {str(fact[0]) for fact in row.get("supporting_facts") or [] if fact}
            titled = [
                (title, f"{title}: {''.join(sents).strip()}")
                for title, sents in row.get("context") or []
                if sents
            ]
            paragraphs = [text for _, text in titled]
            gold = [text for title, text in titled if title in support] or paragraphs[:2]
            items.append(_Item(row["question"], str(row.get("answer", "")), paragraphs, gold))
            if len(items) >= limit:
                break
    return items


def build_long_document(lm: Any, tokens: int, seed: int = 0) -> tuple[str, list[str]]:
    """A document of about ``tokens`` target tokens and two questions it answers.

    The supporting paragraphs of two HotpotQA questions sit among paragraphs of other questions
    (shuffled, deterministic for ``seed``). Without the shared data, Python's documentation text is used
    with two generic questions.
    """
    rng = random.Random(seed)
    items = _items()
    if len(items) < 3:
        from ragkit.bench.corpus import build_bench_corpus

        fillers = [text for _, text in build_bench_corpus(4 * tokens // 80 + 50, seed)]
        questions = ["What does the document say about exceptions?", "What is a generator?"]
        keep: list[str] = []
    else:
        rng.shuffle(items)
        gold = items[:2]
        questions = [g.question for g in gold]
        keep = [p for g in gold for p in g.gold]
        fillers = [p for it in items[2:] for p in it.paragraphs]
    parts: list[str] = []
    used = sum(lm.count_tokens(p) + 2 for p in keep)
    for paragraph in fillers:
        if used >= tokens:
            break
        parts.append(paragraph)
        used += lm.count_tokens(paragraph) + 2
    for paragraph in keep:
        parts.insert(rng.randrange(len(parts) + 1), paragraph)
    return "\n\n".join(parts), questions


def _load(
    backend: str,
    name: str,
    n_ctx: int,
    n_threads: int | None,
    device: str = "cpu",
    compile_step: bool = False,
) -> Any:
    """A target or drafter model on ``backend`` with an ``n_ctx``-token context."""
    if backend == "llama.cpp":
        from ragkit.models.llamacpp import LlamaCppLM

        return LlamaCppLM.load(name, n_ctx=n_ctx, n_threads=n_threads)
    from ragkit.models.causal_lm import CausalLM

    return CausalLM.load(
        name,
        device=device,
        kv_cache="static" if compile_step else "auto",
        max_cache_tokens=n_ctx,
        compile_step=compile_step,
    )


def _near_tie_gap(
    target: Any, ids: Sequence[int], plain: Sequence[int], other: Sequence[int]
) -> float | None:
    """The target's logit gap where ``other`` first leaves ``plain``, if it is a near-tie.

    Evaluated from the target's KV cache (re-synced to the prompt and the common answer
    prefix). ``None`` means a real mismatch: the gap is at least ``NEAR_TIE_LOGITS``, or one
    output is a prefix of the other (no diverging token).
    """
    from ragkit.models.driver import common_prefix_length

    i = common_prefix_length(list(plain), list(other))
    if i >= min(len(plain), len(other)):
        return None
    context = list(ids) + list(plain[:i])
    with target.inference():
        keep = min(common_prefix_length(target.kv_tokens, context), len(context) - 1)
        target.truncate(keep)
        logits = target.eval_last(context[keep:])
    gap = abs(float(logits[plain[i]]) - float(logits[other[i]]))
    return round(gap, 3) if gap < NEAR_TIE_LOGITS else None


def _identity(row: dict[str, Any]) -> str:
    """``yes``, ``tie (gap G)`` for a batch-shape near-tie, or ``NO``."""
    if row["identical"]:
        return "yes"
    gap = row.get("near_tie_gap")
    return "NO" if gap is None else f"tie (gap {gap:.2f})"


@dataclass
class _Held:
    """The prompt every decode row shares, with its prefix state and the target-only output."""

    prompt: Any  # RapidPrompt
    state: Any  # prefix state (None where llama.cpp keeps the prefix in its own cache)
    plain: Any  # the target-only greedy result
    base_rate: float  # its tokens per second


def _decode_rows(
    target: Any,
    draft: Any,
    make_reader: Callable[..., Any],
    document: str,
    question: str,
    max_new_tokens: int,
    other_question: str | None = None,
    configs: Sequence[tuple[str, str, bool, bool, int]] = _CONFIGS,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Target-only and each drafter on the same prompt, prefixes held; identity checked.

    The ``learned`` row's reader first answers ``other_question`` on the same document
    (untimed), so its adaptive policy starts from what it measured there, as in a reader that
    serves a stream of questions; the row is skipped without another question.
    """
    held, base_row = _target_only(target, make_reader, document, question, max_new_tokens)
    rows = [base_row]
    mismatches: list[str] = []
    for label, kind, adaptive, learned, tree_width in configs:
        if learned and other_question is None:
            continue
        extra: dict[str, Any] = {"learn_across_calls": True} if learned else {}
        if tree_width:
            extra["tree_width"] = tree_width
        reader = make_reader(drafter=kind, adaptive=adaptive, **extra)
        if learned:
            reader.run(question=str(other_question), document=document)
        row = _drafter_row(target, draft, reader, held, label, kind, max_new_tokens)
        if not row["identical"] and row["near_tie_gap"] is None:
            mismatches.append(f"{label}: output differs from target-only greedy")
        rows.append(row)
    return rows, mismatches


def _target_only(
    target: Any, make_reader: Callable[..., Any], document: str, question: str, max_new_tokens: int
) -> tuple[_Held, dict[str, Any]]:
    """Build the prompt, hold its prefix, and time the target alone on it (the baseline row)."""
    reader = make_reader(drafter="ngram", adaptive=False)
    prompt = _prompt(reader, target, document, question)
    state, _ = reader.prefix_state(prompt.prefix_ids)
    ids = prompt.target_ids
    # llama.cpp keeps the prefix in its KV cache between calls (state is None then); the
    # transformers backend frees its cache after each call and gets the saved state each time
    target.generate(ids[:-1], max_new_tokens=1, prefix_cache=state)
    base_seconds, plain = timed(
        lambda: target.generate(ids, max_new_tokens=max_new_tokens, prefix_cache=state)
    )
    base_rate = len(plain.token_ids) / base_seconds
    row = {
        "drafter": "target only",
        "tokens": len(plain.token_ids),
        "seconds": round(base_seconds, 3),
        "tokens_per_second": round(base_rate, 3),
        "speedup": 1.0,
        "identical": True,
    }
    return _Held(prompt, state, plain, base_rate), row


def _hold_draft_context(draft: Any, prompt: Any) -> None:
    """Put the drafter's retrieved context in its KV cache, as the document is in the target's."""
    from ragkit.models.driver import common_prefix_length

    held = prompt.draft_ids[:-1]
    keep = common_prefix_length(draft.kv_tokens, held)
    with draft.inference():
        draft.truncate(keep)
        if keep < len(held):
            draft.eval_last(held[keep:])


def _drafter_row(
    target: Any,
    draft: Any,
    reader: Any,
    held: _Held,
    label: str,
    kind: str,
    max_new_tokens: int,
) -> dict[str, Any]:
    """One drafter's timed decode on the held prompt, its draft statistics and its identity."""
    prompt, state, plain = held.prompt, held.state, held.plain
    ids = prompt.target_ids
    decoder = reader._decoder(prompt.draft_ids, _chunk_docs(prompt))
    if draft is not None and kind != "ngram":  # the drafter's context, like the document's
        _hold_draft_context(draft, prompt)
    target.generate(ids[:-1], max_new_tokens=1, prefix_cache=state)  # hold the prompt again
    policy_before = None if decoder.policy is None else decoder.policy.state()
    seconds, out = timed(
        lambda: decoder.generate(ids, max_new_tokens=max_new_tokens, prefix_cache=state)
    )
    rate = len(out.result.token_ids) / seconds
    same = out.result.token_ids == plain.token_ids
    tie = None if same else _near_tie_gap(target, ids, plain.token_ids, out.result.token_ids)
    stats = out.stats
    return {
        "drafter": label,
        "tokens": len(out.result.token_ids),
        "seconds": round(seconds, 3),
        "tokens_per_second": round(rate, 3),
        "speedup": round(rate / held.base_rate, 3),
        "acceptance_rate": round(stats.acceptance_rate, 3),
        "tokens_per_target_call": round(stats.tokens_per_target_call, 3),
        "target_calls": stats.target_calls,
        "draft_seconds": round(stats.draft_seconds, 3),
        "target_seconds": round(stats.target_seconds, 3),
        "identical": same,
        "near_tie_gap": tie,
        "policy_before": policy_before,
    }


def _prompt(reader: Any, target: Any, document: str, question: str) -> Any:
    """The RAPID prompt ``reader`` would build: document prefix for the target, chunks for the
    drafter."""
    from ragkit.decoding.rapid import build_rapid_prompt

    return build_rapid_prompt(
        target,
        document,
        question,
        chunk_tokens=reader.context.chunk_tokens,
        budget_tokens=reader.context.budget_tokens,
        ratio=reader.context.ratio,
        reserve_tokens=reader.context.reserve_tokens,
        truncation=reader.context.truncation,
        instruction=reader._instruction,
    )


def _chunk_docs(prompt: Any) -> list[Any]:
    """The prompt's chunks as documents, the drafter's retrieval candidates."""
    from haystack import Document

    return [
        Document(content=c.text, meta={"source": "document", "start": c.start})
        for c in prompt.chunks
    ]


def _end_to_end(
    target: Any, draft: Any, make_reader: Callable[..., Any], document: str, questions: list[str]
) -> dict[str, Any]:
    """First question cold (fresh prefix cache) vs a second one after both caches are emptied."""
    runs = []
    for question in questions:
        target.truncate(0)
        if draft is not None:
            draft.truncate(0)
        reader = make_reader(drafter="model+ngram" if draft is not None else "ngram")
        seconds, out = timed(
            lambda reader=reader, question=question: reader.run(
                question=question, document=document
            )
        )
        trace = out["trace"]
        runs.append(
            {
                "question": question,
                "seconds": round(seconds, 3),
                "prefix_cache": trace["prefix_cache"]["source"],
                "prefix_seconds": trace["prefix_cache"]["seconds"],
                "tokens": out["replies"][0].meta["usage"]["completion_tokens"],
                "answer": out["replies"][0].text,
            }
        )
    first, second = runs
    return {
        "first": first,
        "second": second,
        "second_over_first": round(second["seconds"] / first["seconds"], 4),
    }


def run_speculative_bench(
    lengths: Sequence[int] = (2048, 8192),
    *,
    backend: str = "llama.cpp",
    target_model: str = "qwen2.5-coder-1.5b-instruct",
    draft_model: str | None = "qwen2.5-coder-0.5b-instruct",
    max_new_tokens: int = 96,
    gamma: int = 10,
    n_threads: int | None = None,
    device: str = "cpu",
    compile_draft_step: bool = False,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring).

    Args:
        lengths: Document sizes in target tokens.
        backend: ``llama.cpp`` or ``transformers``.
        target_model: The verifying model.
        draft_model: The drafter (same vocabulary); ``None`` benchmarks the n-gram drafter only.
        max_new_tokens: Tokens per answer.
        gamma: Most tokens drafted per target call.
        n_threads: llama.cpp threads (``None``: its choice).
        device: transformers device (``cuda``: bf16 and static KV caches of ``n_ctx`` slots).
        compile_draft_step: ``torch.compile`` the drafter's one-token step (transformers).
        cache_dir: Where the document prefixes go (default: a temporary directory, removed).
        progress: Receives a line per step.

    Returns:
        ``{"settings": ..., "lengths": [{"tokens", "decode": rows, "end_to_end": ...}],
        "mismatches": [...]}``.
    """
    say = progress or (lambda _line: None)
    n_ctx = max(lengths) + 1024
    say(f"loading {target_model} ({backend}, n_ctx {n_ctx})")
    target, draft, configs = _load_models(backend, target_model, draft_model, n_ctx, n_threads,
                                          device, compile_draft_step)  # fmt: skip
    settings = {
        "backend": backend,
        "target": target_model,
        "drafter_model": draft_model,
        "max_new_tokens": max_new_tokens,
        "gamma": gamma,
        "n_threads": n_threads,
        "n_ctx": n_ctx,
        "device": getattr(target, "device", "cpu"),
        "compile_draft_step": compile_draft_step,
    }
    try:
        results, mismatches = _measure_lengths(target, draft, configs, settings, lengths,
                                               cache_dir, say)  # fmt: skip
    finally:
        target.close()
        if draft is not None:
            draft.close()
    return {"settings": settings, "lengths": results, "mismatches": mismatches}


def _measure_lengths(
    target: Any,
    draft: Any,
    configs: Sequence[tuple[str, str, bool, bool, int]],
    settings: dict[str, Any],
    lengths: Sequence[int],
    cache_dir: str | Path | None,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every document length in turn, prefixes under ``cache_dir`` (else a temporary one)."""
    results: list[dict[str, Any]] = []
    mismatches: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="ragkit-bench-rapid-") if cache_dir is None else None
    root = Path(tmp.name if tmp is not None else str(cache_dir))
    try:
        for length in lengths:
            make_reader = _reader_factory(target, draft, settings, root / f"len{length}")
            case, bad = _measure_length(target, draft, make_reader, length,
                                        settings["max_new_tokens"], configs, say)  # fmt: skip
            results.append(case)
            mismatches += bad
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results, mismatches


def _load_models(
    backend: str,
    target_model: str,
    draft_model: str | None,
    n_ctx: int,
    n_threads: int | None,
    device: str,
    compile_draft_step: bool,
) -> tuple[Any, Any, tuple[tuple[str, str, bool, bool, int], ...]]:
    """The target, the drafter (None: n-gram drafting only) and the drafter rows they allow."""
    target = _load(backend, target_model, n_ctx, n_threads, device)
    draft = None
    if draft_model:
        draft = _load(backend, draft_model, n_ctx, n_threads, device, compile_draft_step)
    configs = _CONFIGS if draft is not None else _CONFIGS[:1]
    if backend == "transformers":
        configs += _TREE_CONFIGS if draft is not None else _TREE_CONFIGS[:1]
    return target, draft, configs


def _reader_factory(
    target: Any, draft: Any, settings: dict[str, Any], case_dir: Path
) -> Callable[..., Any]:
    """``make_reader(drafter=..., **speculation)``: a RapidReader over the loaded models.

    Every reader of one document length shares its prefix cache directory, so the second
    end-to-end question finds the first one's saved prefix.
    """
    from ragkit.decoding.components import RapidReader

    max_new_tokens = settings["max_new_tokens"]

    def make_reader(drafter: str = "ngram", **speculation: Any) -> Any:
        """A reader with one of the ``_CONFIGS`` drafters (``model+ngram``...)."""
        spec: dict[str, Any] = {"gamma": settings["gamma"], **speculation}
        if drafter.endswith("+ngram"):
            spec["fallback"] = {"kind": "ngram"}
        return RapidReader.from_models(
            target,
            draft,
            target={
                "name": settings["target"],
                "backend": settings["backend"],
                "n_ctx": settings["n_ctx"],
            },
            drafter="ngram" if drafter == "ngram" else {"name": settings["drafter_model"]},
            speculation=spec,
            context={"reserve_tokens": max_new_tokens + 128},
            cache_dir=str(case_dir),
            instruction=BENCH_INSTRUCTION,
            generation_kwargs={"max_new_tokens": max_new_tokens},
        )

    return make_reader


def _measure_length(
    target: Any,
    draft: Any,
    make_reader: Callable[..., Any],
    length: int,
    max_new_tokens: int,
    configs: Sequence[tuple[str, str, bool, bool, int]],
    say: Callable[[str], None],
) -> tuple[dict[str, Any], list[str]]:
    """One document length: end to end (first vs second question), then the decode rows."""
    document, questions = build_long_document(target, length)
    say(f"{length} tokens: first and second question end to end")
    e2e = _end_to_end(target, draft, make_reader, document, questions)
    say(f"  first {e2e['first']['seconds']:.1f} s, second {e2e['second']['seconds']:.1f} s")
    say(f"{length} tokens: decode, target only vs drafters")
    rows, bad = _decode_rows(
        target,
        draft,
        make_reader,
        document,
        questions[0],
        max_new_tokens,
        other_question=questions[1] if len(questions) > 1 else None,
        configs=configs,
    )
    for row in rows:
        say(f"  {row['drafter']}: {row['tokens_per_second']:.2f} tok/s")
    case = {
        "tokens": length,
        "document_tokens": target.count_tokens(document),
        "decode": rows,
        "end_to_end": e2e,
    }
    return case, [f"{length} tokens, {m}" for m in bad]


def format_table(result: dict[str, Any]) -> str:
    """The benchmark as text: one decode table and one end-to-end line per length."""
    s = result["settings"]
    lines = [
        f"backend {s['backend']} on {s.get('device', 'cpu')}, target {s['target']}, drafter "
        f"model {s['drafter_model']}{' (compiled step)' if s.get('compile_draft_step') else ''}, "
        f"greedy, {s['max_new_tokens']} new tokens max, gamma {s['gamma']}",
        "",
        f"{'context':>8}  {'drafter':<22} {'tokens':>6} {'tok/s':>7} {'speedup':>8} "
        f"{'accept':>7} {'tok/call':>8}  identical",
    ]
    for case in result["lengths"]:
        for row in case["decode"]:
            accept = row.get("acceptance_rate")
            per_call = row.get("tokens_per_target_call")
            lines.append(
                f"{case['document_tokens']:>8}  {row['drafter']:<22} {row['tokens']:>6} "
                f"{row['tokens_per_second']:>7.2f} {row['speedup']:>7.2f}x "
                f"{'-' if accept is None else f'{accept:.0%}':>7} "
                f"{'-' if per_call is None else f'{per_call:.2f}':>8}  "
                f"{_identity(row)}"
            )
    lines += ["", f"{'context':>8}  first question (cold)   second question (prefix from disk)"]
    for case in result["lengths"]:
        e = case["end_to_end"]
        lines.append(
            f"{case['document_tokens']:>8}  {e['first']['seconds']:>8.2f} s "
            f"({e['first']['tokens']} tok)   {e['second']['seconds']:>8.2f} s "
            f"({e['second']['tokens']} tok, prefix load {e['second']['prefix_seconds']:.2f} s) "
            f"= {e['second_over_first']:.1%} of the first"
        )
    if result["mismatches"]:
        lines += ["", "NOT IDENTICAL: " + "; ".join(result["mismatches"])]
    return "\n".join(lines)
