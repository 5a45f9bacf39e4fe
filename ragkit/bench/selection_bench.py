"""``ragkit bench selection``: what context shaping costs next to the generator call it feeds.

Per query, on real HotpotQA passages (30 candidates: the question's own 10 plus its neighbours'):
(1) CORAG's MCTS search time with the default cached-embedding utility, against (2) the reader's
generator call on the selected context with the short-answer prompt of ``pipelines/rag_short.yaml``
(goal: search <= 10% of that call), (3) states scored against what exhaustive scoring would
evaluate, (4) the utility MCTS reaches against greedy budget filling, and (5) the Reorderer's
overhead per query in microseconds. Absolute times only compare on one machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragkit.bench.table import make_row, render_rows
from ragkit.bench.timing import progress_printer, timed
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

__all__ = ["format_table", "run_selection_bench"]

FRACTION_TARGET = 0.10


def _prompt_template() -> str:
    """The short-answer prompt of the shipped rag_short pipeline (the one corag.yaml uses)."""
    from ragkit.config import read_yaml

    path = Path(__file__).resolve().parents[2] / "pipelines" / "rag_short.yaml"
    return read_yaml(path)["components"]["prompt_builder"]["init_parameters"]["template"]


def _candidates(n_queries: int, n_candidates: int) -> list[tuple[str, list[str]]]:
    """(question, candidate passages) from the HotpotQA dev data, neighbours' passages as filler."""
    from ragkit.evaluation.datasets import load_dataset

    data = load_dataset("hotpotqa")
    examples = data.examples
    out = []
    for i in range(min(n_queries, len(examples))):
        texts: list[str] = []
        j = i
        while len(texts) < n_candidates and j < i + len(examples):
            ex = examples[j % len(examples)]
            texts.extend(f"{p.title}: {p.text}" for p in ex.passages)
            j += 1
        out.append((examples[i].question, texts[:n_candidates]))
    return out


def _generator(reader: str, max_new_tokens: int) -> Any:
    """The reader: a ``qwen*`` GGUF through llama.cpp, any other model through transformers."""
    if reader.startswith("qwen"):
        from ragkit.models.llamacpp_components import LlamaCppChatGenerator

        return LlamaCppChatGenerator(
            model=reader, n_ctx=8192, generation_kwargs={"max_new_tokens": max_new_tokens}
        )
    from ragkit.models.components import LocalChatGenerator

    return LocalChatGenerator(model=reader, generation_kwargs={"max_new_tokens": max_new_tokens})


def run_selection_bench(
    queries: int = 3,
    candidates: int = 30,
    iterations: int = 20,
    budget: int = 1024,
    reader: str = DEFAULT_CAUSAL_MODEL,
    max_new_tokens: int = 64,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the context-shaping benchmark; returns a JSON-ready dict.

    Args:
        queries: Questions measured (each pays one generator call).
        candidates: Candidate chunks per question.
        iterations: MCTS iterations (the rule agent is off, so every query uses exactly this).
        budget: Token budget in the reader's tokens.
        reader: Generator model: the packaged SmolLM2 (transformers) or a ``qwen*`` GGUF through
            llama.cpp.
        max_new_tokens: Answer length cap for the generator call.
        progress: One line per phase on stderr.
        threads: torch intra-op threads during the run (restored afterwards); 1 avoids the
            OpenMP oversubscription cliff on a busy machine. None keeps torch's default.
    """
    from ragkit.models.hf import torch_threads

    with torch_threads(threads) as in_effect:
        result = _run(queries, candidates, iterations, budget, reader, max_new_tokens, progress)
    result["torch_threads"] = in_effect
    return result


def _run(
    queries: int,
    candidates: int,
    iterations: int,
    budget: int,
    reader: str,
    max_new_tokens: int,
    progress: bool,
) -> dict[str, Any]:
    """Load the passages, the selector and the reader; measure every query, then the reorderer."""
    say = progress_printer("[bench selection] ", progress)
    say("loading HotpotQA passages")
    data = _candidates(queries, candidates)
    selector, builder, generator = _setup(candidates, iterations, budget, reader, max_new_tokens,
                                          say)  # fmt: skip
    rows = [
        _measure_query(selector, builder, generator, question, texts, budget, say, qi, len(data))
        for qi, (question, texts) in enumerate(data, start=1)
    ]
    say("reorderer overhead")
    reorder = _measure_reorderer()
    generator.close()
    selector.close()
    return _summary(rows, reorder, reader, candidates, iterations, budget)


def _setup(
    candidates: int,
    iterations: int,
    budget: int,
    reader: str,
    max_new_tokens: int,
    say: Callable[[str], None],
) -> tuple[Any, Any, Any]:
    """The warmed-up selector, the short-answer prompt builder and the warmed-up reader."""
    from haystack.components.builders import ChatPromptBuilder

    from ragkit.selection.components import ChunkSelector

    selector = ChunkSelector(
        budget=budget,
        tokenizer=reader,
        candidates=candidates,
        search={"iterations": iterations, "agent": "static"},
        scorer={"device": "cpu"},
    )
    say(f"loading the tokenizer of {reader} and MiniLM")
    selector.warm_up()
    builder = ChatPromptBuilder(template=_prompt_template(), required_variables="*")
    generator = _generator(reader, max_new_tokens)
    say(f"loading the reader {reader}")
    generator.warm_up()
    return selector, builder, generator


def _measure_query(
    selector: Any,
    builder: Any,
    generator: Any,
    question: str,
    texts: list[str],
    budget: int,
    say: Callable[[str], None],
    qi: int,
    n_queries: int,
) -> dict[str, Any]:
    """One query: the selector cold and warm, greedy filling's utility, the generator call."""
    from haystack import Document

    from ragkit.selection.mcts import count_feasible_states, greedy_fill

    docs = [Document(content=t) for t in texts]
    # embeddings of question + chunks, then the search
    cold, out = timed(lambda: selector.run(query=question, documents=docs))
    report = out["shaping"]
    # the search alone, embeddings cached: the repeatable cost per query
    selector._embed([question, *texts])
    search = [  # utility construction + MCTS, as the selector times it
        selector.run(query=question, documents=docs)["shaping"]["seconds"] for _ in range(5)
    ]
    utility = selector._state_scorer(question, texts)
    costs = [selector.count_tokens(t) + selector.chunk_overhead_tokens for t in texts]
    singles = utility.single_scores()
    greedy = greedy_fill(costs, budget, sorted(range(len(texts)), key=lambda i: -singles[i]))
    greedy_utility = utility.score_states([greedy])[0]
    say(f"query {qi}/{n_queries}: generator call on {len(out['documents'])} passages")
    messages = builder.run(documents=out["documents"], question=question)["prompt"]
    gen_seconds, replies = timed(lambda: generator.run(messages=messages)["replies"])
    usage = replies[0].meta.get("usage") or {}
    return {
        "question": question,
        "selected": report["selected"],
        "tokens": report["tokens"],
        "cold_seconds": cold,
        "search_seconds": min(search),
        "mcts_seconds": report["seconds"],
        "states_scored": report["states_scored"],
        "cache_hits": report["cache_hits"],
        "scorer_calls": report["scorer_calls"],
        "exhaustive_ordered": count_feasible_states(costs, budget, ordered=True),
        "exhaustive_sets": count_feasible_states(costs, budget, ordered=False),
        "mcts_utility": report["score"],
        "greedy_utility": greedy_utility,
        "generator_seconds": gen_seconds,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "answer": replies[0].text,
    }


def _measure_reorderer(reps: int = 2000) -> dict[int, float]:
    """Seconds per Reorderer run on 10 and 20 passages (mean of ``reps`` runs: microseconds)."""
    from haystack import Document

    from ragkit.ordering.components import Reorderer

    reorder = {}
    for k in (10, 20):
        docs = [
            Document(content=f"passage {i}", meta={"relevance": 1.0 / (i + 1)}) for i in range(k)
        ]
        reorderer = Reorderer(min_k=3, demote_below=0.2)

        def run_all(reorderer: Reorderer = reorderer, docs: list[Document] = docs) -> None:
            for _ in range(reps):
                reorderer.run(documents=docs)

        reorder[k] = timed(run_all)[0] / reps
    return reorder


def _summary(
    rows: list[dict[str, Any]],
    reorder: dict[int, float],
    reader: str,
    candidates: int,
    iterations: int,
    budget: int,
) -> dict[str, Any]:
    """The JSON result: means over the queries, the search's share of the generator call."""
    mean = statistics.fmean
    search_mean = mean(r["search_seconds"] for r in rows)
    cold_mean = mean(r["cold_seconds"] for r in rows)
    gen_mean = mean(r["generator_seconds"] for r in rows)
    return {
        "reader": reader,
        "queries": len(rows),
        "candidates": candidates,
        "iterations": iterations,
        "budget": budget,
        "per_query": rows,
        "search_seconds": search_mean,
        "selector_cold_seconds": cold_mean,
        "generator_seconds": gen_mean,
        "search_fraction": search_mean / gen_mean if gen_mean else None,
        "cold_fraction": cold_mean / gen_mean if gen_mean else None,
        "fraction_target": FRACTION_TARGET,
        "states_scored": mean(r["states_scored"] for r in rows),
        "exhaustive_sets": mean(r["exhaustive_sets"] for r in rows),
        "exhaustive_ordered": mean(r["exhaustive_ordered"] for r in rows),
        "mcts_utility": mean(r["mcts_utility"] for r in rows),
        "greedy_utility": mean(r["greedy_utility"] for r in rows),
        "mcts_beats_greedy": sum(r["mcts_utility"] > r["greedy_utility"] + 1e-9 for r in rows),
        "reorderer_seconds": {str(k): v for k, v in reorder.items()},
    }


def format_table(result: dict[str, Any]) -> str:
    """The benchmark as an aligned table plus the search-space and utility lines."""
    gen = result["generator_seconds"]
    rows = [
        make_row("MCTS search per query (s)", result["search_seconds"], gen, "generator call", "s"),
        make_row(
            "selector incl. embedding (s)",
            result["selector_cold_seconds"],
            gen,
            "generator call",
            "s",
        ),
        make_row("search / generator call", result["search_fraction"], None, "", "frac"),
        make_row("selector incl. embedding / generator", result["cold_fraction"], None, "", "frac"),
    ]
    for k, seconds in result["reorderer_seconds"].items():
        rows.append(make_row(f"reorderer, {k} passages (s)", seconds, None, "", "s"))
    lines = [
        f"reader {result['reader']}, {result['queries']} HotpotQA questions, "
        f"{result['candidates']} candidates, {result['iterations']} iterations, "
        f"budget {result['budget']} tokens, torch threads {result.get('torch_threads')}",
        *render_rows(rows),
        "",
        f"states scored per query: {result['states_scored']:.0f} "
        f"(exhaustive: {result['exhaustive_sets']:.3g} sets, "
        f"{result['exhaustive_ordered']:.3g} ordered combinations within the budget)",
        f"utility: MCTS {result['mcts_utility']:.3f} vs greedy budget fill "
        f"{result['greedy_utility']:.3f} (MCTS higher on {result['mcts_beats_greedy']}/"
        f"{result['queries']} queries)",
        "reorderer per query: "
        + ", ".join(f"{1e6 * s:.0f} us at k={k}" for k, s in result["reorderer_seconds"].items()),
        f"goal: search <= {result['fraction_target']:.0%} of the generator call",
    ]
    return "\n".join(lines)
