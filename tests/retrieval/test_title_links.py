"""Title links: second-hop passages named by the question or by a retrieved passage.

Unit tests of :class:`TitleIndex` matching, :class:`LinkedPassages` on real stores (both
engines, and a ``:memory:`` store), the store's ``title_ids``/``documents_by_id``, and the
component inside a YAML pipeline run by ``ragkit.load_pipeline``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from haystack import Document

from ragkit import EmbeddedStore, MemoryStore, open_store, release_store
from ragkit.errors import InvalidParameter
from ragkit.retrieval.links import LINKED_FROM_KEY, LinkedPassages, TitleIndex

DIM = 384


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def near(base: list[float], noise: float, seed: int) -> list[float]:
    v = np.asarray(base) + noise * np.asarray(unit(seed))
    return (v / np.linalg.norm(v)).tolist()


def test_title_index_matches_whole_words_longest_first_in_order() -> None:
    index = TitleIndex(
        {
            "New York": ["ny"],
            "New York City": ["nyc"],
            "Björk": ["bjork"],
            "Angi Vera (1979 film)": ["angi"],
            "Io": ["io"],  # too short to count as a mention
            "Orkney": ["ork"],
        }
    )
    assert len(index) == 5
    found = index.mentions("BJORK sang in new york city; Angi Vera and Io, not Orkneyan.")
    assert found == [
        ("Björk", ["bjork"]),
        ("New York City", ["nyc"]),
        ("Angi Vera (1979 film)", ["angi"]),
    ]
    assert index.mentions("") == []
    assert index.mentions("New York, then New York again") == [("New York", ["ny"])]


def corpus() -> list[Document]:
    question = unit(0)
    return [
        Document(id="film", content="Polish Easter\nPolish Easter is a film by Jakob Ziemnicki "
                 "with Adam Bousdoukos.", meta={"title": "Polish Easter"}, embedding=near(question, 0.5, 1)),
        Document(id="director", content="Jakob Ziemnicki\nA German director; his mother is Ida.",
                 meta={"title": "Jakob Ziemnicki"}, embedding=near(question, 0.8, 2)),
        Document(id="actor", content="Adam Bousdoukos\nA German actor.",
                 meta={"title": "Adam Bousdoukos"}, embedding=near(question, 3.0, 3)),
        Document(id="berlin", content="Berlin\nThe capital of Germany.",
                 meta={"title": "Berlin"}, embedding=unit(4)),
        Document(id="untitled", content="Jakob Ziemnicki was born in Berlin.", embedding=unit(5)),
    ]  # fmt: skip


QUESTION = "Who is the mother of the director of Polish Easter?"


@pytest.mark.parametrize("engine", ["edge", "local", "memory"])
def test_store_titles_and_documents_by_id_on_every_engine(tmp_path: Path, engine: str) -> None:
    config = (
        MemoryStore()
        if engine == "memory"
        else EmbeddedStore(path=str(tmp_path / "s"), engine=engine)
    )
    store = open_store(config, embedding_model="minilm", embedding_dim=DIM)
    try:
        store.write(corpus())
        store.commit()
        titles = store.title_ids()
        assert titles == {
            "Polish Easter": ["film"],
            "Jakob Ziemnicki": ["director"],
            "Adam Bousdoukos": ["actor"],
            "Berlin": ["berlin"],
        }
        docs = store.documents_by_id(["actor", "missing", "film"])
        assert [d.id for d in docs] == ["actor", "film"]
        want = {d.id: d.embedding for d in corpus()}
        for d in docs:
            assert d.embedding == pytest.approx(want[d.id], abs=1e-6)
    finally:
        release_store(store)


@pytest.fixture
def store():
    st = open_store(MemoryStore(), embedding_model="minilm", embedding_dim=DIM)
    st.write(corpus())
    yield st
    release_store(st)


def test_adds_the_passages_a_retrieved_passage_names_closest_to_the_question_first(store) -> None:
    film = corpus()[0]
    links = LinkedPassages(store=store, keep=1, add=2, follow=1)
    out = links.run(query=QUESTION, documents=[film], query_embedding=unit(0))["documents"]
    assert [d.id for d in out] == ["film", "director", "actor"]
    assert [d.meta.get(LINKED_FROM_KEY) for d in out] == [None, "Polish Easter", "Polish Easter"]
    assert out[1].embedding is None  # the reader gets passages, not vectors
    # without the question's vector: the order in which the passage names them
    plain = links.run(query=QUESTION, documents=[film])["documents"]
    assert [d.id for d in plain] == ["film", "director", "actor"]
    # one slot: the passage closest to the question wins it, not the first one named
    one = LinkedPassages(store=store, keep=1, add=1, follow=1)
    actor_like = corpus()[2].embedding
    out = one.run(query=QUESTION, documents=[film], query_embedding=actor_like)["documents"]
    assert [d.id for d in out] == ["film", "actor"]
    assert [d.id for d in one.run(query=QUESTION, documents=[film])["documents"]] == [
        "film",
        "director",
    ]


def test_keep_follow_and_add_bound_what_is_read_and_returned(store) -> None:
    docs = corpus()
    berlin, untitled, film = docs[3], docs[4], docs[0]
    # follow=1: only the first passage's links (Berlin names nothing), so nothing is added
    links = LinkedPassages(store=store, keep=3, add=2, follow=1)
    assert [d.id for d in links.run(query="a question", documents=[berlin, film])["documents"]] == [
        "berlin",
        "film",
    ]
    # follow=2 reaches the film's links; passages already kept are never added twice
    links = LinkedPassages(store=store, keep=2, add=5, follow=2)
    out = links.run(query="q", documents=[untitled, film, berlin])["documents"]
    assert [d.id for d in out][:2] == ["untitled", "film"]
    assert sorted(d.id for d in out[2:]) == ["actor", "berlin", "director"]
    assert len({d.id for d in out}) == len(out)
    # add=0 is the input cut to keep
    assert [
        d.id
        for d in LinkedPassages(store=store, keep=1, add=0).run(
            query=QUESTION, documents=[film, berlin]
        )["documents"]
    ] == ["film"]
    # the question's own mentions are followed even with no passage
    assert [
        d.id
        for d in LinkedPassages(store=store).run(query="Tell me about Berlin", documents=[])[
            "documents"
        ]
    ] == ["berlin"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"keep": 0}, "keep"),
        ({"add": -1}, "add"),
        ({"add": True}, "add"),
        ({"follow": "2"}, "follow"),
    ],
)
def test_bad_counts_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(InvalidParameter, match=name):
        LinkedPassages(**kwargs)


def test_runs_in_a_yaml_pipeline_with_the_store_bound(tmp_path: Path) -> None:
    import yaml

    from ragkit import load_pipeline
    from ragkit.pipeline import close_pipeline

    spec = {
        "components": {
            "bm25": {"type": "ragkit.retrieval.components.BM25Retriever", "init_parameters": {"top_k": 1}},
            "links": {
                "type": "ragkit.retrieval.links.LinkedPassages",
                "init_parameters": {"keep": 1, "add": 1},
            },
        },
        "connections": [{"sender": "bm25.documents", "receiver": "links.documents"}],
    }  # fmt: skip
    path = tmp_path / "links.yaml"
    path.write_text(yaml.safe_dump(spec))
    store = open_store(
        EmbeddedStore(path=str(tmp_path / "s")), embedding_model="minilm", embedding_dim=DIM
    )
    try:
        store.write(corpus())
        store.commit()
        pipe = load_pipeline(path, store=store)
        out = pipe.run({"bm25": {"query": "Polish Easter film"}, "links": {"query": QUESTION}})
        assert [d.id for d in out["links"]["documents"]] == ["film", "director"]
        close_pipeline(pipe)
    finally:
        release_store(store)


def test_top_k_overrides_keep_per_call_and_the_ranking_is_the_linked_list(store) -> None:
    from ragkit.answering.run import ranking_components

    docs = corpus()
    links = LinkedPassages(store=store, keep=3, add=1, follow=1)
    out = links.run(query="q", documents=[docs[0], docs[3], docs[4]], top_k=1)["documents"]
    assert [d.id for d in out] == ["film", "director"]
    with pytest.raises(InvalidParameter, match="top_k"):
        links.run(query="q", documents=[], top_k=0)
    from haystack import Pipeline
    from haystack.components.joiners import DocumentJoiner

    pipe = Pipeline()
    pipe.add_component("joiner", DocumentJoiner(top_k=5))
    pipe.add_component("links", links)
    pipe.connect("joiner.documents", "links.documents")
    assert ranking_components(pipe)[-1] == "links"  # what eval scores and the reader reads
