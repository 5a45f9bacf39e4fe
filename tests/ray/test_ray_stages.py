"""The Ray stages without Ray: the cut pipeline run stage by stage writes the same store.

These run in the default test run even without the ``ray`` extra: they check the cut, the
stage functions and the indexer's one-writer path (pending mark, write, commit, manifest),
including a producer that hands a batch back twice or never.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import SAMPLE, assert_same_store

from ragkit.config import resolve_profile
from ragkit.errors import RagkitError
from ragkit.indexing.manifest import Manifest
from ragkit.indexing.run import open_indexer
from ragkit.pipeline import PipelineError, load_pipeline
from ragkit.resources import find_pipeline_file
from ragkit.scale.indexing import EmbedStage, cut_pipeline, load_and_split


class InProcess:
    """The two Ray Data stages called directly, batch by batch, with a replay/drop schedule."""

    def __init__(self, pipe: Any, order: Callable[[int], list[int]] = lambda n: list(range(n))):
        self.cut = cut_pipeline(pipe)
        self.writer = pipe.get_component(self.cut.writer)
        self.embed = EmbedStage(self.cut.embedder, self.cut.embedder_name)
        self.order = order
        self.parallelism = 1

    def produce(self, batches: list[list[str]]) -> Iterator[tuple[int, Any]]:
        for i in self.order(len(batches)):
            row = {"batch": [i], "sources": [json.dumps(batches[i])]}
            out = self.embed(load_and_split(row, self.cut.before, self.cut.feeder))
            result, docs = pickle.loads(out["payload"][0])

            def write(result: Any = result, docs: Any = docs) -> Any:
                return {**result, self.cut.writer: self.writer.run(documents=docs)}

            yield i, write


def test_the_stages_in_process_write_the_single_process_store(
    sample_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    # the last batch first and the first one twice: written once each, any order
    order = lambda n: [n - 1, *range(n - 1), 0]  # noqa: E731
    with open_indexer(
        str(store),
        resolve_profile(None),
        producer=lambda pipe: InProcess(pipe, order),
        batch_files=2,
    ) as idx:
        report = idx.index([SAMPLE])
    assert report.added == 5 and report.errors == []
    assert_same_store(store, sample_store)


def test_a_batch_that_never_comes_back_is_an_error_and_stays_unindexed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    drop_first = lambda n: list(range(1, n))  # noqa: E731
    with (
        pytest.raises(RagkitError, match="1 of 3 batches never came back"),
        open_indexer(
            str(store),
            resolve_profile(None),
            producer=lambda pipe: InProcess(pipe, drop_first),
            batch_files=2,
        ) as idx,
    ):
        idx.index([SAMPLE])
    manifest = Manifest.load(store / "manifest.json")
    assert len(manifest.files) == 3 and all(e.status == "done" for e in manifest.files.values())


def test_a_pipeline_without_one_embedder_before_the_writer_is_refused(tmp_path: Path) -> None:
    data = find_pipeline_file("default", "indexers", "indexer").read_text()
    bad = tmp_path / "two_writers.yaml"
    bad.write_text(
        data.replace(
            "connections:",
            "  writer2:\n    type: ragkit.indexing.writer.StoreWriter\n"
            "    init_parameters: {}\nconnections:\n"
            "  - sender: splitter.documents\n    receiver: writer2.documents",
        )
    )
    with pytest.raises(PipelineError, match="one document embedder"):
        cut_pipeline(load_pipeline(bad))
