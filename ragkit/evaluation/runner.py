"""Resumable evaluation loop: answer each question, score it, append the record, summarize.

Pure orchestration with no model or Haystack imports; the caller supplies `answer_fn`, which
wraps whatever pipeline is being evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.errors import RagkitError
from ragkit.evaluation.datasets import Dataset, QAExample
from ragkit.evaluation.metrics import answer_metrics, recall_at_k
from ragkit.evaluation.report import ResultsWriter, read_records, summarize, write_json_atomic

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "AnswerMany",
    "AnswerResult",
    "run_eval",
    "score_example",
]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class AnswerResult:
    """What a pipeline returns for one question.

    Attributes:
        answer: The generated answer text.
        retrieved_ids: Passage ids in rank order (for recall@k); empty if nothing was retrieved.
        seconds: Time the pipeline spent; None lets the runner use its own wall-clock measure.
        seconds_prefill: Reader time spent on prompts (until each reply's first token), summed
            over the question's reader calls; 0.0 when no reader ran, None when not measured.
        seconds_decode: Reader time spent generating after the first token, the same way.
        extra: Anything else worth keeping in the record (token counts, cost, notes).
    """

    answer: str | None
    retrieved_ids: list[str] = field(default_factory=list)
    # every passage a first-stage retriever returned, before fusion and the top-k cut: the
    # candidate pool that selection and reranking methods choose from (for ``pool_recall``)
    pool_ids: list[str] = field(default_factory=list)
    seconds: float | None = None
    seconds_prefill: float | None = None
    seconds_decode: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# answers many questions elsewhere (``ragkit eval --ray``): yields (question id, result) as each
# finishes, in any order, each exactly once
AnswerMany = Callable[[list[QAExample]], Iterator[tuple[str, AnswerResult]]]


def score_example(
    example: QAExample,
    answer: str | None,
    retrieved_ids: list[str],
    k_values: Iterable[int] = (1, 5, 10),
    pool_ids: list[str] | None = None,
) -> dict[str, float]:
    """Metrics for one answered question: answer metrics if it has answers, recall@k if gold ids.

    Args:
        example: The question with its references.
        answer: The predicted answer; None for retrieval-only pipelines (no answer metrics).
        retrieved_ids: Retrieved passage ids in rank order.
        k_values: Cut-offs for recall@k.
        pool_ids: The retrievers' candidate pool; its recall is ``pool_recall`` (how much of
            the gold a better choice among the candidates could still put in front of the reader).

    Returns:
        A mapping such as {"em": 1.0, "f1": 1.0, ..., "recall@5": 0.5, "recall@all": 1.0}.
    """
    metrics: dict[str, float] = {}
    if example.answers and answer is not None:
        metrics.update(answer_metrics(answer, example.answers))
    if example.gold_passage_ids:
        for k in k_values:
            metrics[f"recall@{k}"] = recall_at_k(retrieved_ids, example.gold_passage_ids, k)
        # everything the pipeline read (iterative pipelines read more than one ranking's top k)
        metrics["recall@all"] = recall_at_k(
            retrieved_ids, example.gold_passage_ids, max(len(retrieved_ids), 1)
        )
        if pool_ids:
            metrics["pool_recall"] = recall_at_k(pool_ids, example.gold_passage_ids, len(pool_ids))
    return metrics


def run_eval(
    dataset: Dataset,
    answer_fn: Callable[[QAExample], AnswerResult],
    out_dir: Path,
    limit: int | None = None,
    resume: bool = False,
    progress: bool = True,
    k_values: Iterable[int] = (1, 5, 10),
    skip: int = 0,
    answer_many: AnswerMany | None = None,
) -> dict[str, Any]:
    """Evaluate `answer_fn` on a dataset, writing `results.jsonl` and `summary.json` in `out_dir`.

    Each record is appended and flushed as soon as its question is scored, so an interrupted run
    keeps its work; with `resume=True` questions already in results.jsonl are skipped (a truncated
    last line is dropped and that question redone). Without `resume` the results file starts afresh.
    The summary covers the selected questions (`limit` of them after the first `skip`, or all)
    present in the results file.

    Args:
        dataset: The loaded dataset.
        answer_fn: Answers one example; exceptions propagate (records so far stay on disk).
        out_dir: Output folder, created if needed.
        limit: Evaluate only the first `limit` examples.
        resume: Continue a previous run in the same folder.
        progress: Show a tqdm progress bar on stderr.
        k_values: Cut-offs for recall@k.
        skip: Leave out the first `skip` examples: tune settings on one slice of a dataset
            (e.g. `skip=100, limit=100`) and report another, so a gain is not fitted to the
            questions it is reported on.
        answer_many: Answers the questions elsewhere instead of `answer_fn` (Ray workers): each
            result is scored and appended here as it arrives, so `resume` works the same.

    Returns:
        The summary dict (also written to out_dir/summary.json).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    ks = sorted({int(k) for k in k_values})
    if any(k < 1 for k in ks):
        raise ValueError(f"k_values must all be >= 1, got {ks}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")

    examples = dataset.examples[skip:] if limit is None else dataset.examples[skip : skip + limit]
    done: set[str] = {str(r.get("id")) for r in read_records(results_path)} if resume else set()
    todo = [ex for ex in examples if ex.id not in done]

    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc=dataset.name)
    try:
        with ResultsWriter(results_path, append=resume) as writer:
            for example, result, elapsed in _answers(todo, answer_fn, answer_many):
                writer.write(_record(example, result, elapsed, ks))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    wanted = {ex.id for ex in examples}
    records: dict[str, dict[str, Any]] = {}
    for record in read_records(results_path):
        rid = str(record.get("id"))
        if rid in wanted and rid not in records:
            records[rid] = record
    summary = summarize(list(records.values()))
    summary = {"dataset": dataset.name, **summary, "k_values": ks, "limit": limit, "skip": skip}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _answers(
    todo: list[QAExample],
    answer_fn: Callable[[QAExample], AnswerResult],
    answer_many: AnswerMany | None,
) -> Iterator[tuple[QAExample, AnswerResult, float]]:
    """Each question with its result and wall time: answered here, or by ``answer_many``.

    From ``answer_many`` a question that comes back twice is recorded once, and one that
    never comes back is an error after the others are recorded (``--resume`` makes it).
    """
    if answer_many is None:
        for example in todo:
            start = time.perf_counter()
            result = answer_fn(example)
            yield example, result, time.perf_counter() - start
        return
    by_id = {ex.id: ex for ex in todo}
    seen: set[str] = set()
    for qid, result in answer_many(todo):
        if qid in seen or qid not in by_id:
            continue
        seen.add(qid)
        yield by_id[qid], result, 0.0 if result.seconds is None else result.seconds
    missing = [ex.id for ex in todo if ex.id not in seen]
    if missing:
        raise RagkitError(
            f"{len(missing)} questions never came back from the workers (first: {missing[0]}); "
            "run again with --resume to answer them"
        )


def _record(
    example: QAExample, result: AnswerResult, elapsed: float, ks: list[int]
) -> dict[str, Any]:
    """The results.jsonl record of one answered question."""
    return {
        "id": example.id,
        "question": example.question,
        "answers": example.answers,
        "prediction": result.answer,
        "retrieved_ids": list(result.retrieved_ids),
        "gold_passage_ids": example.gold_passage_ids,
        "metrics": score_example(example, result.answer, result.retrieved_ids, ks, result.pool_ids),
        "seconds": result.seconds if result.seconds is not None else elapsed,
        "seconds_prefill": result.seconds_prefill,
        "seconds_decode": result.seconds_decode,
        "extra": result.extra,
    }
