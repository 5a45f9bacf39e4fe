"""The Qdrant Edge engine (real ``qdrant-edge-py``) agrees with Qdrant local mode on every path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_run import runner
from haystack import Document
from haystack.components.joiners import DocumentJoiner

from ragkit.config import EmbeddedStore, store_from_location
from ragkit.errors import RagkitError
from ragkit.stores.lock import StoreInUseError
from ragkit.stores.store import RagkitStore, StoreError, open_store, release_store

pytest.importorskip("qdrant_edge")

DIM = 384
WORDS = [
    "river",
    "mountain",
    "planet",
    "ocean",
    "desert",
    "forest",
    "glacier",
    "volcano",
    "island",
    "canyon",
]


def corpus(n: int = 240, seed: int = 0, sources: int = 6) -> list[Document]:
    """Clustered unit vectors and short texts, ``sources`` files of ``n / sources`` chunks."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, DIM))
    docs = []
    for i in range(n):
        v = centers[i % 8] + 0.8 * rng.standard_normal(DIM)
        v /= np.linalg.norm(v)
        words = " ".join(rng.choice(WORDS, size=6))
        docs.append(
            Document(
                id=f"doc-{i}",
                content=f"chunk {i} about {words}",
                embedding=v.tolist(),
                meta={"source": f"f{i % sources}.txt", "chunk_index": i // sources, "n": i},
            )
        )
    return docs


def queries(k: int = 15, seed: int = 1) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((k, DIM))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).tolist()


def pair(tmp_path: Path) -> tuple[RagkitStore, RagkitStore]:
    local = open_store(EmbeddedStore(path=str(tmp_path / "local"), engine="local"))
    edge = open_store(EmbeddedStore(path=str(tmp_path / "edge"), engine="edge"))
    return local, edge


def ranked(store: RagkitStore, q: list[float], top_k: int = 10, **kw: object) -> list[str]:
    return [d.id for d in store.dense_search(q, top_k=top_k, **kw)]


def hybrid(store: RagkitStore, q: list[float], text: str) -> list[str]:
    """The shipped hybrid fusion (pipelines/retrieve.yaml's joiner) over one store."""
    joiner = DocumentJoiner(join_mode="reciprocal_rank_fusion", weights=[0.5, 0.5], top_k=5)
    docs = [store.dense_search(q, top_k=20), store.bm25_search(text, top_k=20)]
    return [d.id for d in joiner.run(documents=docs)["documents"]]


def assert_agree(local: RagkitStore, edge: RagkitStore) -> None:
    assert edge.count() == local.count()
    assert edge.qdrant_source_counts() == local.qdrant_source_counts()
    for i, q in enumerate(queries()):
        a, b = local.dense_search(q, top_k=10), edge.dense_search(q, top_k=10)
        assert [d.id for d in b] == [d.id for d in a]
        assert [d.score for d in b] == pytest.approx([d.score for d in a], abs=1e-5)
        assert [(d.content, d.meta) for d in b] == [(d.content, d.meta) for d in a]
        text = f"{WORDS[i % 10]} {WORDS[(3 * i) % 10]}"
        assert hybrid(edge, q, text) == hybrid(local, q, text)


def test_index_query_update_delete_agree_with_local_mode(tmp_path: Path) -> None:
    local, edge = pair(tmp_path)
    try:
        assert edge.engine == "edge" and local.engine == "local"
        for st in (local, edge):
            assert st.write(corpus()) == 240
            assert st.write(corpus()[:10]) == 10  # same ids: overwrite, no duplicates
            st.commit()
        assert edge.count() == 240
        assert_agree(local, edge)

        # filters: the dense retriever's runtime input, translated for the engine
        q = queries()[0]
        for flt in (
            {"field": "meta.source", "operator": "==", "value": "f2.txt"},
            {"field": "meta.source", "operator": "in", "value": ["f1.txt", "f4.txt"]},
            {"field": "meta.n", "operator": ">=", "value": 200},
            {
                "operator": "AND",
                "conditions": [
                    {"field": "meta.source", "operator": "!=", "value": "f0.txt"},
                    {"field": "meta.n", "operator": "<", "value": 100},
                ],
            },
            {
                "operator": "NOT",
                "conditions": [{"field": "meta.source", "operator": "==", "value": "f3.txt"}],
            },
        ):
            got = ranked(edge, q, filters=flt)
            assert got == ranked(local, q, filters=flt) and len(got) == 10, flt

        # update: a source re-indexed with new text and vectors, as `ragkit index` does
        fresh = corpus(seed=7)
        changed = [d for d in fresh if d.meta["source"] == "f1.txt"]
        for st in (local, edge):
            assert st.delete_source("f1.txt") == 40
            st.write(changed)
            st.commit()
        assert_agree(local, edge)
        moved = changed[0]
        assert ranked(edge, moved.embedding, top_k=1) == [moved.id]

        # delete: gone from vectors, BM25 and every count
        for st in (local, edge):
            assert st.delete_source("f2.txt") == 40
            st.commit()
        assert edge.count() == 200 and "f2.txt" not in edge.qdrant_source_counts()
        assert all(d.meta["source"] != "f2.txt" for d in edge.qdrant.filter_documents())
        assert_agree(local, edge)
    finally:
        release_store(local)
        release_store(edge)


def test_edge_store_persists_and_read_only_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "edge"
    st = open_store(EmbeddedStore(path=str(path), engine="edge"))
    try:
        st.write(corpus(60))
        st.commit()
        want = [ranked(st, q) for q in queries(5)]
    finally:
        release_store(st)
    assert json.loads((path / "store.json").read_text())["engine"] == "edge"
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != ".lock"}

    # no engine given: the recorded one, also through --store with a profile that names none
    st = open_store(store_from_location(str(path)), read_only=True)
    try:
        assert st.engine == "edge" and st.stats()["engine"] == "edge"
        assert [ranked(st, q) for q in queries(5)] == want
        assert st.bm25_search("glacier volcano", top_k=3)
        with pytest.raises(StoreError, match="read-only"):
            st.write(corpus(1))
        with pytest.raises(StoreInUseError, match="in use"):  # the directory lock holds
            RagkitStore(EmbeddedStore(path=str(path)))
    finally:
        release_store(st)
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_mismatched_engine_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "store"
    st = open_store(EmbeddedStore(path=str(path), engine="edge"))
    try:
        st.write(corpus(12))
        st.commit()
        with pytest.raises(StoreError, match="'edge' vector engine, not 'local'"):
            open_store(EmbeddedStore(path=str(path), engine="local"))  # shared handle
    finally:
        release_store(st)
    with pytest.raises(StoreError) as err:
        open_store(EmbeddedStore(path=str(path), engine="local"))
    msg = str(err.value)
    assert "\n" not in msg and "store.engine: edge" in msg and "another --store" in msg
    local = tmp_path / "old"
    release_store(open_store(EmbeddedStore(path=str(tmp_path / "new"))))  # new: edge by default
    assert json.loads((tmp_path / "new" / "store.json").read_text())["engine"] == "edge"
    release_store(open_store(EmbeddedStore(path=str(local), engine="local")))
    assert json.loads((local / "store.json").read_text())["engine"] == "local"
    release_store(open_store(EmbeddedStore(path=str(local))))  # no engine: the recorded one
    with pytest.raises(StoreError, match="'local' vector engine, not 'edge'"):
        open_store(EmbeddedStore(path=str(local), engine="edge"))


def test_bad_filter_is_one_actionable_error(tmp_path: Path) -> None:
    st = open_store(EmbeddedStore(path=str(tmp_path / "s"), engine="edge"))
    try:
        st.write(corpus(12))
        with pytest.raises(RagkitError, match="unknown operator 'like'"):
            st.dense_search(
                queries(1)[0], filters={"field": "meta.source", "operator": "like", "value": "f"}
            )
    finally:
        release_store(st)


# ------------------------------------------------------------------ through the CLI


def test_cli_edge_profile_indexes_queries_and_repairs(sample_corpus: Path, tmp_path: Path) -> None:
    """Same pipeline YAML on both engines; a damaged edge shard is reported, then repaired."""
    from ragkit.cli import app

    profile = tmp_path / "edge.yaml"
    profile.write_text("store:\n  kind: embedded\n  engine: edge\n")

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    def passages(store: Path, *extra: str) -> list[tuple[str, str]]:
        code, out, err = run(
            "query", "Which planet has the strongest winds?", "--store", str(store),
            "--pipeline", "retrieve", "--top-k", "5", "--json", *extra,
        )  # fmt: skip
        assert code == 0, err
        return [(p["source"], p["content"]) for p in json.loads(out)["passages"]]

    edge, local = tmp_path / "edge-store", tmp_path / "local-store"
    code, _, err = run(
        "index", str(sample_corpus), "--store", str(edge), "-q", "--profile", str(profile)
    )
    assert code == 0, err
    code, _, err = run("index", str(sample_corpus), "--store", str(local), "-q")
    assert code == 0, err
    assert (edge / "edge").is_dir() and not (edge / "qdrant").exists()
    hits = passages(edge)
    assert hits == passages(local) and hits[0][0].endswith("solar_system.md")

    code, out, err = run("stats", "--store", str(edge), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["engine"] == "edge" and info["integrity"] == "ok"

    def damaged_read_only_writes_nothing() -> None:
        before = {p: p.read_bytes() for p in edge.rglob("*") if p.is_file() and p.name != ".lock"}
        for cmd in (("stats",), ("query", "Neptune winds", "--pipeline", "retrieve")):
            code, _, err = run(*cmd, "--store", str(edge))
            assert code == 1 and err.count("\n") == 1 and "damaged" in err, err
            assert f"ragkit repair --store {edge.resolve()}" in err
        after = {p: p.read_bytes() for p in edge.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == before

    # segments gone, write-ahead log kept: a writer's open replays the log, nothing to re-index
    shutil.rmtree(edge / "edge" / "segments")
    damaged_read_only_writes_nothing()
    code, out, err = run("index", str(sample_corpus), "--store", str(edge), "-q")
    assert code == 0 and "5 unchanged" in out, err
    assert passages(edge) == hits

    # segments and log gone: the chunks are lost, so index re-indexes every file
    shutil.rmtree(edge / "edge" / "segments")
    shutil.rmtree(edge / "edge" / "wal")
    damaged_read_only_writes_nothing()
    code, out, err = run("index", str(sample_corpus), "--store", str(edge), "-q")
    assert code == 0 and "repaired 5 files" in out, err
    assert passages(edge) == hits

    # a corrupt segment fails its seal: one line saying what to do, and repair does it
    segment = next((edge / "edge" / "segments").iterdir())
    (segment / "segment.json").write_text("")
    damaged_read_only_writes_nothing()
    code, out, err = run("repair", "--store", str(edge), "-q")
    assert code == 0 and "5 files re-indexed" in out, err
    assert passages(edge) == hits


def test_missing_engine_package_is_one_line_and_writes_no_store_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # import fails as if not installed
    path = tmp_path / "s"
    with pytest.raises(RagkitError, match=r"pip install 'ragkit\[edge\]'") as err:
        open_store(EmbeddedStore(path=str(path), engine="edge"))
    assert "\n" not in str(err.value) and not (path / "store.json").exists()
