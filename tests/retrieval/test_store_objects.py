"""Store-bound components take an open store in Python as well as a location in YAML.

A Haystack user holds ``BM25Retriever(store=open_store(...))`` and runs it with no
``ragkit.load_pipeline``; serializing it writes the store's location, or refuses, naming the
component, when no location reopens that store. Binding is explicit: only
:class:`~ragkit.stores.components.StoreConsumer` subclasses get the pipeline's store.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from haystack import Document, Pipeline, component
from haystack.core.serialization import component_from_dict, component_to_dict

import ragkit
from ragkit import (
    BM25Retriever,
    ClueRetriever,
    DenseRetriever,
    EmbeddedStore,
    MemoryRecall,
    MemoryStore,
    RagkitStore,
    ServerStore,
    StoreWriter,
    TextEmbedder,
    open_store,
    release_store,
)
from ragkit.errors import InvalidParameter
from ragkit.pipeline import PipelineError, bind_store, load_pipeline
from ragkit.stores.components import StoreBound, StoreConsumer, store_location

TEXTS = [
    "The Nile flows north into the Mediterranean.",
    "Etna is an active volcano in Sicily.",
    "Jupiter is the largest planet of the solar system.",
]


def _vector(i: int) -> list[float]:
    """A 384-d unit vector along axis ``i``: dense search without loading a model."""
    return [1.0 if j == i else 0.0 for j in range(384)]


def _docs() -> list[Document]:
    return [Document(content=t, embedding=_vector(i)) for i, t in enumerate(TEXTS)]


@pytest.fixture
def memory_store() -> Iterator[RagkitStore]:
    store = open_store(MemoryStore())
    store.write(_docs())
    yield store
    release_store(store)


@pytest.fixture
def disk_store(tmp_path: Path) -> Iterator[RagkitStore]:
    store = open_store(EmbeddedStore(path=str(tmp_path / "store")))
    store.write(_docs())
    yield store
    release_store(store)


def test_bm25_retriever_runs_on_an_open_store_without_a_pipeline(
    memory_store: RagkitStore,
) -> None:
    retriever = BM25Retriever(store=memory_store, top_k=2)
    assert retriever.current_store() is memory_store
    docs = retriever.run(query="volcano in Sicily")["documents"]
    assert docs[0].content == TEXTS[1] and len(docs) <= 2
    assert len(retriever.run(query="Nile volcano planet", top_k=1)["documents"]) == 1


def test_dense_retriever_runs_on_an_open_store_without_a_pipeline(
    memory_store: RagkitStore,
) -> None:
    retriever = DenseRetriever(store=memory_store, top_k=3)
    retriever.warm_up()
    docs = retriever.run(query_embedding=_vector(2), top_k=1)["documents"]
    assert [d.content for d in docs] == [TEXTS[2]]
    assert len(retriever.run(query_embedding=_vector(0))["documents"]) == 3


def test_clue_retriever_and_memory_recall_take_an_open_store(memory_store: RagkitStore) -> None:
    clues = {"queries": [{"kind": "clue", "text": "largest planet"}]}
    retriever = ClueRetriever(store=memory_store, top_k=1, dense=False)
    assert [d.content for d in retriever.run(clues=clues)["documents"]] == [TEXTS[2]]
    assert retriever.run(clues=clues, top_k=3)["documents"]
    recall = MemoryRecall(store=memory_store)  # the memory model loads only in warm_up
    assert recall.current_store() is memory_store and recall.store is None


def test_close_keeps_a_store_the_caller_handed_in(memory_store: RagkitStore) -> None:
    retriever = BM25Retriever(store=memory_store)
    retriever.close()
    assert retriever.current_store() is memory_store
    assert memory_store.count() == 3  # not released: the caller still owns it
    assert retriever.run(query="Nile")["documents"][0].content == TEXTS[0]


@pytest.mark.parametrize("cls", [BM25Retriever, DenseRetriever, ClueRetriever, StoreWriter])
def test_an_open_store_with_a_location_serializes_as_that_location(
    cls: type, disk_store: RagkitStore
) -> None:
    comp = cls(store=disk_store)
    data = component_to_dict(comp, "c")
    assert data["init_parameters"]["store"] == disk_store.config.path
    again = component_from_dict(cls, data, "c")
    assert again.store == disk_store.config.path and again.current_store() is None
    assert component_to_dict(again, "c") == data


def test_memory_recall_serializes_an_open_store_by_its_location(disk_store: RagkitStore) -> None:
    data = component_to_dict(MemoryRecall(store=disk_store, draft=False), "recall")
    assert data["init_parameters"]["store"] == disk_store.config.path
    assert component_to_dict(component_from_dict(MemoryRecall, data, "recall"), "recall") == data


@pytest.mark.parametrize("cls", [BM25Retriever, DenseRetriever, ClueRetriever, MemoryRecall])
def test_an_open_memory_store_cannot_be_serialized_and_the_error_names_the_component(
    cls: type, memory_store: RagkitStore
) -> None:
    with pytest.raises(InvalidParameter) as err:
        component_to_dict(cls(store=memory_store), "c")
    assert err.value.parameter == "store"
    assert cls.__name__ in err.value.message and "memory store" in err.value.message
    assert isinstance(err.value, ValueError)  # callers catching ValueError still catch it


def test_a_pipeline_holding_an_open_memory_store_refuses_to_dump(
    memory_store: RagkitStore,
) -> None:
    pipe = Pipeline()
    pipe.add_component("bm25", BM25Retriever(store=memory_store))
    assert pipe.run({"bm25": {"query": "volcano"}})["bm25"]["documents"][0].content == TEXTS[1]
    with pytest.raises(InvalidParameter, match="BM25Retriever was given an open memory store"):
        pipe.dumps()


def test_store_location_only_when_a_location_reopens_the_same_store(tmp_path: Path) -> None:
    def held(config: Any) -> Any:
        return types.SimpleNamespace(config=config)  # store_location reads only the config

    path = str(tmp_path / "s")
    assert store_location(held(EmbeddedStore(path=path))) == path
    assert store_location(held(EmbeddedStore(path=path, engine="local"))) == path
    assert store_location(held(EmbeddedStore(path=path, collection="other"))) is None
    assert store_location(held(EmbeddedStore(path=path, hnsw_ef=64))) is None
    url = "http://localhost:6333"
    assert store_location(held(ServerStore(url=url))) == url
    assert store_location(held(ServerStore(url=url, api_key_env="MY_KEY"))) is None
    assert store_location(held(MemoryStore())) is None


@pytest.mark.parametrize("bad", [5, 1.5, ["dir"], {"path": "x"}])
def test_a_store_of_another_type_is_an_invalid_parameter(bad: Any) -> None:
    for cls in (BM25Retriever, DenseRetriever, ClueRetriever, MemoryRecall, StoreWriter):
        with pytest.raises(InvalidParameter) as err:
            cls(store=bad)
        assert err.value.parameter == "store"


def test_a_bad_store_in_yaml_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "components:\n  bm25:\n    type: ragkit.retrieval.components.BM25Retriever\n"
        "    init_parameters: {store: 5}\nconnections: []\n"
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path)
    assert str(err.value).startswith(f"{path}: components.bm25.init_parameters.store: must be")


def test_yaml_still_type_checks_the_other_parameters(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "components:\n  bm25:\n    type: ragkit.retrieval.components.BM25Retriever\n"
        "    init_parameters: {store: ./s, top_k: '3'}\nconnections: []\n"
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path)
    assert str(err.value) == f"{path}: components.bm25.init_parameters.top_k: expected int, got '3'"


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2.0])
def test_top_k_is_checked_at_init_and_per_call(bad: Any, memory_store: RagkitStore) -> None:
    for cls in (BM25Retriever, DenseRetriever, ClueRetriever):
        with pytest.raises(InvalidParameter) as err:
            cls(store=memory_store, top_k=bad)
        assert err.value.parameter == "top_k"
    calls = [
        lambda: BM25Retriever(store=memory_store).run(query="Nile", top_k=bad),
        lambda: DenseRetriever(store=memory_store).run(query_embedding=_vector(0), top_k=bad),
        lambda: ClueRetriever(store=memory_store, dense=False).run(clues={}, top_k=bad),
    ]
    for call in calls:
        with pytest.raises(InvalidParameter) as err:
            call()
        assert err.value.parameter == "top_k"


def test_the_retrievers_share_one_base_for_init_and_warm_up() -> None:
    from ragkit.retrieval.components import StoreRetriever

    for cls in (BM25Retriever, DenseRetriever):
        assert issubclass(cls, StoreRetriever)
        assert "__init__" not in vars(cls) and "warm_up" not in vars(cls)


@component
class _DuckTyped:
    """Has a ``bind_store`` method but does not opt in: the loader must leave it alone."""

    def __init__(self) -> None:
        self.bound: list[Any] = []

    def bind_store(self, store: Any) -> None:
        self.bound.append(store)

    @component.output_types(text=str)
    def run(self, text: str) -> dict[str, str]:
        return {"text": text}


@component
class _OptedIn(StoreConsumer):
    """A user's own component that takes the pipeline's store by subclassing StoreConsumer."""

    def __init__(self) -> None:
        self.bound: list[Any] = []

    def bind_store(self, store: Any) -> None:
        self.bound.append(store)

    @component.output_types(text=str)
    def run(self, text: str) -> dict[str, str]:
        return {"text": text}


def test_binding_is_explicit_not_duck_typed(memory_store: RagkitStore) -> None:
    pipe = Pipeline()
    duck, opted, bm25 = _DuckTyped(), _OptedIn(), BM25Retriever()
    embedder = TextEmbedder(model="some-other-model")
    for name, comp in (("duck", duck), ("opted", opted), ("bm25", bm25), ("emb", embedder)):
        pipe.add_component(name, comp)
    bind_store(pipe, memory_store)
    assert duck.bound == []
    assert opted.bound == [memory_store]
    assert bm25.current_store() is memory_store
    assert embedder.model == memory_store.embedding_model  # follows the store's model
    assert isinstance(bm25, StoreBound) and isinstance(embedder, StoreConsumer)
    assert ragkit.StoreConsumer is StoreConsumer  # public: users subclass it


def test_load_pipeline_still_binds_its_store_over_the_yaml_location(
    memory_store: RagkitStore, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "components:\n  bm25:\n    type: ragkit.retrieval.components.BM25Retriever\n"
        "    init_parameters: {store: ./nowhere, top_k: 1}\nconnections: []\n"
    )
    pipe = load_pipeline(path, store=memory_store)
    out = pipe.run({"bm25": {"query": "volcano"}})
    assert [d.content for d in out["bm25"]["documents"]] == [TEXTS[1]]
    assert pipe.to_dict()["components"]["bm25"]["init_parameters"]["store"] == "./nowhere"
