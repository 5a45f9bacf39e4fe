"""``ragkit eval --ray``: questions spread over Ray actors; records written by the driver.

Each actor builds and warms its own pipeline once (its own reader, or a client of a shared
OpenAI-compatible server when the pipeline names one) through the opener the driver hands it,
then answers one question per call. The driver scores and appends every answer as it arrives
(:func:`ragkit.evaluation.runner.run_eval`), so an interrupted run keeps its records and
``--resume`` makes only the missing answers, exactly as without Ray.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ragkit.scale.cluster import binary_column, default_workers, ray_session

if TYPE_CHECKING:
    from ragkit.evaluation.datasets import QAExample
    from ragkit.evaluation.runner import AnswerMany, AnswerResult
    from ragkit.scale.cluster import RayOptions

__all__ = ["AnswerStage", "ray_fan_out"]

AnswerFn = Callable[["QAExample"], "AnswerResult"]
Opener = Callable[[], AbstractContextManager[AnswerFn]]

# Ray resources per actor: most of a CPU, so N CPUs run N readers
ANSWER_CPUS = 0.9


class AnswerStage:
    """A Ray Data actor: opens the answering pipeline once, then answers one question per row."""

    def __init__(self, opener: Opener) -> None:
        """Build and warm the pipeline (its reader loads here, once per actor)."""
        self._stack = contextlib.ExitStack()
        self.answer = self._stack.enter_context(opener())

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Answer each pickled question of ``batch``; the time is the worker's own."""
        ids, results = [], []
        for payload in batch["example"]:
            example = pickle.loads(payload)
            start = time.perf_counter()
            result = self.answer(example)
            if result.seconds is None:
                result.seconds = time.perf_counter() - start
            ids.append(example.id)
            results.append(pickle.dumps(result))
        return {"id": ids, "result": binary_column(results)}

    def __del__(self) -> None:
        """Release the pipeline, its store copy and its models when Ray ends the actor."""
        self._stack.close()


@contextlib.contextmanager
def ray_fan_out(options: RayOptions) -> Iterator[Callable[[Opener], AnswerMany]]:
    """Connect to the cluster; yield what turns a pipeline opener into an ``answer_many``.

    Raises:
        RayMissingError, RayUnavailableError: As for :func:`ragkit.scale.cluster.ray_session`.
    """
    with ray_session(options.address) as ray:
        workers, gpus = default_workers(ray, options)

        def bind(opener: Opener) -> AnswerMany:
            def answer_many(examples: list[QAExample]) -> Iterator[tuple[str, AnswerResult]]:
                if not examples:
                    return
                ds = ray.data.from_items(
                    [{"example": pickle.dumps(ex)} for ex in examples],
                    override_num_blocks=min(len(examples), 4 * workers),
                )
                ds = ds.map_batches(
                    AnswerStage,
                    fn_constructor_kwargs={"opener": opener},
                    batch_size=1,
                    compute=ray.data.ActorPoolStrategy(size=min(workers, len(examples))),
                    num_cpus=ANSWER_CPUS,
                    num_gpus=1 if gpus else 0,
                )
                for row in ds.iter_rows():
                    yield str(row["id"]), pickle.loads(row["result"])

            return answer_many

        yield bind
