"""``ragkit index --ray``: load + split, then embed, as Ray Data stages; the driver writes.

The indexing pipeline is cut in three at its one document embedder: everything before it
(loaders, splitters) runs as Ray Data tasks, the embedder as a pool of actors that load the
model once each (a GPU each where the cluster has them), and the store writer stays on the
driver. Each batch of files comes back as the same pipeline result a single-process run makes,
and :class:`~ragkit.indexing.indexer.Indexer` writes it with the same code: pending mark,
replace-by-source write, commit, manifest. Chunk ids are made by the same splitter from the same
files, so the store equals a single-process one chunk for chunk.

A worker that dies (killed, out of memory, its machine lost) is restarted by Ray Data and its
batch redone; nothing of a batch reaches the store before the whole batch is back on the driver,
so a retry can neither duplicate nor drop a chunk. A Python error in a stage is not retried: the
run fails after committing the batches before it, and the next run redoes the rest.

Batches travel between stages as pickled ``(pipeline result, documents)`` pairs: Haystack
documents are plain dataclasses, and pickling keeps every float of every vector exact.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragkit.indexing.settings import document_embedders
from ragkit.pipeline import PipelineError
from ragkit.scale.cluster import binary_column

if TYPE_CHECKING:
    from types import ModuleType

    from haystack import Pipeline


__all__ = ["EmbedStage", "PipelineCut", "RayProducer", "cut_pipeline", "load_and_split"]

# Ray resources per worker: the embedding actors take most of a CPU each, the load/split tasks
# the rest, so a cluster with N CPUs runs N embedders and still schedules the loading.
EMBED_CPUS = 0.75
LOAD_CPUS = 0.25

Batch = dict[str, Any]  # a Ray Data batch: column name -> values


@dataclass(frozen=True)
class PipelineCut:
    """An indexing pipeline cut at its embedder: the parts the workers build, the writer's name.

    Attributes:
        before: ``{"components": ..., "connections": ...}`` of everything before the embedder.
        feeder: The component whose ``documents`` output fed the embedder.
        embedder: The embedder's ``{type, init_parameters}``.
        embedder_name: Its name in the pipeline.
        writer: The store writer's name; it runs on the driver only.
    """

    before: dict[str, Any]
    feeder: str
    embedder: dict[str, Any]
    embedder_name: str
    writer: str


def _edges(pipe: Pipeline) -> list[tuple[str, str, str, str]]:
    """(sender, output socket, receiver, input socket) of every connection."""
    return [
        (s, d["from_socket"].name, r, d["to_socket"].name)
        for s, r, d in pipe.graph.edges(data=True)
    ]


def cut_pipeline(pipe: Pipeline) -> PipelineCut:
    """Cut ``pipe`` into the worker stages and the writer; refuse shapes that cannot be cut.

    Raises:
        PipelineError: Not ``... -> one document embedder -> one store writer`` with the
            embedder fed by one component's ``documents``.
    """
    writers = [
        name
        for name in pipe.graph.nodes
        if "chunks_by_source" in pipe.graph.nodes[name].get("output_sockets", {})
    ]
    embedders = [name for name, _ in document_embedders(pipe)]
    edges = _edges(pipe)
    shape = "one document embedder whose documents go only to one store writer"
    if len(writers) != 1 or len(embedders) != 1:
        raise PipelineError([f"--ray needs an indexing pipeline with {shape}"])
    writer, embedder = writers[0], embedders[0]
    into_writer = [e for e in edges if e[2] == writer]
    out_of_embedder = [e for e in edges if e[0] == embedder]
    into_embedder = [e for e in edges if e[2] == embedder]
    if (
        into_writer != [(embedder, "documents", writer, "documents")]
        or out_of_embedder != into_writer
        or any(e[0] == writer for e in edges)
        or len(into_embedder) != 1
        or into_embedder[0][1:] != ("documents", embedder, "documents")
    ):
        raise PipelineError(
            [f"--ray needs an indexing pipeline with {shape}, fed by one component"]
        )
    data = pipe.to_dict()
    dropped = {writer, embedder}
    before = {
        "components": {
            name: {"type": c["type"], "init_parameters": c.get("init_parameters") or {}}
            for name, c in data["components"].items()
            if name not in dropped
        },
        "connections": [
            c
            for c in data.get("connections", [])
            if c["sender"].split(".")[0] not in dropped
            and c["receiver"].split(".")[0] not in dropped
        ],
    }
    spec = data["components"][embedder]
    return PipelineCut(
        before=before,
        feeder=into_embedder[0][0],
        embedder={"type": spec["type"], "init_parameters": spec.get("init_parameters") or {}},
        embedder_name=embedder,
        writer=writer,
    )


def build_stage(spec: dict[str, Any]) -> Pipeline:
    """A pipeline from a cut's part, with ragkit's allowlist and parameter checks (on a worker)."""
    from haystack import Pipeline

    from ragkit.pipeline import build_component_spec

    pipe = Pipeline()
    for name, body in spec["components"].items():
        pipe.add_component(name, build_component_spec(body, f"components.{name}"))
    for conn in spec["connections"]:
        pipe.connect(conn["sender"], conn["receiver"])
    return pipe


def load_and_split(batch: Batch, before: dict[str, Any], feeder: str) -> Batch:
    """Ray Data stage 1 (tasks): run the loaders and splitters on each batch of files."""
    pipe = build_stage(before)
    pipe.warm_up()
    payloads = []
    for sources in batch["sources"]:
        result = pipe.run({"sources": json.loads(sources)})
        documents = result.get(feeder, {}).pop("documents", [])
        if feeder in result and not result[feeder]:
            del result[feeder]
        payloads.append(pickle.dumps((result, documents)))
    return {"batch": batch["batch"], "payload": binary_column(payloads)}


class EmbedStage:
    """Ray Data stage 2 (actors): embed each batch's chunks; the model loads once per actor."""

    def __init__(self, spec: dict[str, Any], name: str) -> None:
        """Build and warm the embedder (on the worker: a GPU there if Ray gave it one)."""
        from ragkit.pipeline import build_component_spec

        self.embedder = build_component_spec(spec, f"components.{name}")
        self.embedder.warm_up()

    def __call__(self, batch: Batch) -> Batch:
        """Embed the chunks of every batch of files in ``batch``."""
        payloads = []
        for payload in batch["payload"]:
            result, documents = pickle.loads(payload)
            if documents:
                documents = self.embedder.run(documents=documents)["documents"]
            payloads.append(pickle.dumps((result, documents)))
        return {"batch": batch["batch"], "payload": binary_column(payloads)}


class RayProducer:
    """A :class:`~ragkit.indexing.indexer.BatchProducer` over a Ray cluster (already connected).

    Args:
        pipe: The driver's indexing pipeline, its writer bound to the open store.
        ray: The connected ``ray`` module (from :func:`ragkit.scale.cluster.ray_session`).
        workers: Embedding actors.
        gpus: Give each actor a GPU.
        embed_stage: The actor class (tests pass one that dies once, to check retries).
    """

    def __init__(
        self,
        pipe: Pipeline,
        ray: ModuleType,
        workers: int,
        gpus: bool = False,
        embed_stage: type[EmbedStage] = EmbedStage,
    ) -> None:
        self.cut = cut_pipeline(pipe)
        self.writer = pipe.get_component(self.cut.writer)
        self.ray = ray
        self.workers = workers
        self.parallelism = workers
        self.gpus = gpus
        self.embed_stage = embed_stage

    def produce(
        self, batches: list[list[str]]
    ) -> Iterator[tuple[int, Callable[[], dict[str, dict[str, Any]]]]]:
        """Stream every batch through the cluster; yield each as soon as it is embedded."""
        if not batches:
            return
        data = self.ray.data
        ds = data.from_items(
            [{"batch": i, "sources": json.dumps(b)} for i, b in enumerate(batches)],
            override_num_blocks=len(batches),
        )
        ds = ds.map_batches(
            load_and_split,
            fn_kwargs={"before": self.cut.before, "feeder": self.cut.feeder},
            batch_size=1,
            num_cpus=LOAD_CPUS,
        )
        ds = ds.map_batches(
            self.embed_stage,
            fn_constructor_kwargs={"spec": self.cut.embedder, "name": self.cut.embedder_name},
            batch_size=1,
            compute=data.ActorPoolStrategy(size=self.workers),
            num_cpus=EMBED_CPUS,
            num_gpus=1 if self.gpus else 0,
        )
        for row in ds.iter_rows():
            result, documents = pickle.loads(row["payload"])
            yield int(row["batch"]), self._writer_for(result, documents)

    def _writer_for(
        self, result: dict[str, dict[str, Any]], documents: list[Any]
    ) -> Callable[[], dict[str, dict[str, Any]]]:
        """What the indexer calls once the batch is marked pending: write, give the full result."""

        def write() -> dict[str, dict[str, Any]]:
            return {**result, self.cut.writer: self.writer.run(documents=documents)}

        return write
