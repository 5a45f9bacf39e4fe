"""Issue 11 (data loss and silent wrong results): every case runs the real CLI on a real store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import ragkit

from ragkit.config import EmbeddedStore
from ragkit.indexing.loaders import FileLoader
from ragkit.indexing.manifest import Manifest
from ragkit.stores.store import open_store, release_store

REPO = Path(__file__).resolve().parents[2]


def index(corpus: Path, store: Path, *extra: str) -> tuple[int, str, str]:
    return ragkit("index", str(corpus), "--store", str(store), "-q", *extra)


def stats(store: Path) -> tuple[dict, str]:
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0, err
    return json.loads(out), err


def passages(store: Path, question: str, top_k: int = 5, *extra: str) -> tuple[list[dict], str]:
    code, out, err = ragkit(
        "query", question, "--store", str(store), "--top-k", str(top_k), "--json",
        "--pipeline", "retrieve", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)["passages"], err


def tree(directory: Path) -> dict[str, bytes]:
    """Every file of a store but the process locks (their content is the holder's pid)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def minilm_dir() -> str:
    from ragkit.models.registry import resolve_model

    return str(resolve_model("minilm").path)


# ---------------------------------------------------------------- 1. failures are data


def test_loader_reports_failed_sources_as_data(tmp_path: Path) -> None:
    bad = tmp_path / "notes: v2.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    good = tmp_path / "ok.jsonl"
    good.write_text('{"text": "fine"}\n{broken\n')
    out = FileLoader().run(sources=[str(bad), str(good), str(tmp_path / "gone: x.txt")])
    assert out["failed_sources"] == [str(bad), str(tmp_path / "gone: x.txt")]
    assert len(out["documents"]) == 1  # a jsonl with one bad line is not a failed file


def test_unloadable_file_with_colon_in_name_keeps_its_chunks(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    notes = corpus / "notes: v2.txt"
    notes.write_text("Tulips bloom in spring. Tulip bulbs were traded in Holland in 1637.\n")
    (corpus / "other.txt").write_text("Glaciers store most of the fresh water on Earth.\n")
    store = tmp_path / "store"
    code, _, err = index(corpus, store)
    assert code == 0, err
    src = str(notes.resolve())
    before = Manifest.load(store / "manifest.json").files[src]
    assert before.status == "done" and before.chunks > 0

    notes.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))  # no longer UTF-8
    code, out, err = index(corpus, store)
    assert code == 1 and "notes: v2.txt: not UTF-8" in err
    after = Manifest.load(store / "manifest.json").files[src]
    assert after == before  # entry (hash, chunks) untouched: the next run tries again
    hits, _ = passages(store, "tulip bulbs Holland")
    assert hits and hits[0]["source"] == src

    code, out, err = index(corpus, store)
    assert code == 1 and "0 changed, 1 unchanged" in out and "1 failed to load" in out
    assert "not UTF-8" in err


# ---------------------------------------------------------------- 2. read-only commands


def test_stats_on_damaged_qdrant_writes_nothing_and_index_repairs(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    local = tmp_path / "local.yaml"  # Qdrant local mode's files are damaged below
    local.write_text("store:\n  kind: embedded\n  engine: local\n")
    assert index(sample_corpus, store, "--profile", str(local))[0] == 0
    good, _ = stats(store)
    assert good["integrity"] == "ok"
    (store / "qdrant" / "collection" / "ragkit" / "storage.sqlite").write_bytes(b"")
    before = tree(store)

    for cmd in (("stats",), ("query", "Neptune winds", "--pipeline", "retrieve")):
        code, out, err = ragkit(*cmd, "--store", str(store))
        assert code == 1 and err.count("\n") == 1, err
        assert "damaged" in err and f"ragkit repair --store {store.resolve()}" in err
        assert tree(store) == before  # read-only: nothing rebuilt, recreated or saved

    code, out, err = index(sample_corpus, store)
    assert code == 0, err
    assert "5 unchanged" not in out and "repaired 5 files" in out
    fixed, err = stats(store)
    assert fixed["chunks"] == good["chunks"] == fixed["bm25"]["docs"]
    assert fixed["integrity"] == "ok" and "damaged" not in err
    hits, _ = passages(store, "Which planet has the strongest winds?", 3)
    assert hits[0]["source"].endswith("solar_system.md")


def test_repair_restores_a_deleted_collection(sample_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    local = tmp_path / "local.yaml"  # Qdrant local mode's files are damaged below
    local.write_text("store:\n  kind: embedded\n  engine: local\n")
    assert index(sample_corpus, store, "--profile", str(local))[0] == 0
    good, _ = stats(store)
    shutil.rmtree(store / "qdrant" / "collection")
    (sample_corpus / "faq.jsonl").unlink()  # a damaged file that is gone from disk is dropped
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 0, err
    assert "4 files re-indexed, 1 missing files dropped" in out
    fixed, err = stats(store)
    assert fixed["integrity"] == "ok" and fixed["files"] == 4
    assert fixed["chunks"] == fixed["bm25"]["docs"] < good["chunks"]
    code, out, _ = ragkit("repair", "--store", str(store), "-q")
    assert code == 0 and "0 files re-indexed" in out


# ---------------------------------------------------------------- 3. BM25 checksums


def test_swapped_bm25_terms_are_detected_and_index_rebuilds_from_qdrant(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    assert index(sample_corpus, store)[0] == 0
    hits, _ = passages(store, "Pompeii", 1)
    assert hits[0]["source"].endswith("volcanoes.md")
    for vocab in (store / "bm25").glob("vocab-*.json"):
        terms = json.loads(vocab.read_text())
        if "pompeii" in terms:  # swap it with a term of another file: same shape, wrong hits
            i = terms.index("pompeii")
            terms[i], terms[0] = terms[0], terms[i]
            vocab.write_text(json.dumps(terms))
            break
    else:
        pytest.fail("no vocabulary part holds 'pompeii'")

    before = tree(store)
    info, err = stats(store)
    assert "checksum" in info["integrity"] and "ragkit repair" in err
    _, err = passages(store, "Pompeii", 1)
    assert "checksum" in err and "ragkit repair" in err
    assert tree(store) == before

    code, out, err = index(sample_corpus, store)
    assert code == 0, err
    assert "5 unchanged" in out and "0 chunks written" in out  # rebuilt from Qdrant, no re-embed
    fixed, _ = stats(store)
    assert fixed["integrity"] == "ok" and fixed["bm25"]["docs"] == fixed["chunks"]
    # BM25 alone: the retrieve pipeline fuses dense hits, so check the BM25 index itself
    st = open_store(EmbeddedStore(path=str(store)))
    try:
        assert st.bm25_search("Pompeii", top_k=1)[0].meta["source"].endswith("volcanoes.md")
    finally:
        release_store(st)


# ---------------------------------------------------------------- 4. settings fingerprint


def test_changed_split_settings_rechunk_instead_of_unchanged(
    sample_corpus: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "words.yaml"
    profile.write_text("split:\n  split_by: word\n  split_length: 30\n")
    fresh = tmp_path / "fresh"
    assert index(sample_corpus, fresh, "--profile", str(profile))[0] == 0
    want, _ = stats(fresh)

    store = tmp_path / "store"
    assert index(sample_corpus, store)[0] == 0
    default_chunks = stats(store)[0]["chunks"]
    code, out, err = index(sample_corpus, store, "--profile", str(profile))
    assert code == 0, err
    assert "5 changed, 0 unchanged" in out and "re-chunked 5 files" in out
    got, _ = stats(store)
    assert got["chunks"] == want["chunks"] != default_chunks
    assert got["integrity"] == "ok"
    code, out, _ = index(sample_corpus, store, "--profile", str(profile))
    assert code == 0 and "5 unchanged" in out


# ---------------------------------------------------------------- 5. the model that embeds


def test_embedder_override_cannot_bypass_the_model_check(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    pinned = tmp_path / "minilm.yaml"  # the name whose files the override's directory holds
    pinned.write_text("embedding:\n  model: minilm\n")
    assert index(sample_corpus / "faq.jsonl", store, "--profile", str(pinned))[0] == 0
    profile = tmp_path / "other-model.yaml"
    profile.write_text(
        f"components:\n  embedder:\n    init_parameters:\n      model: {minilm_dir()}\n"
    )
    code, _, err = index(sample_corpus, store, "--profile", str(profile))
    assert code == 1
    assert "built with embedding model 'minilm'" in err and minilm_dir() in err
    assert err.count("\n") == 1
    assert Manifest.load(store / "manifest.json").files.keys() == {
        str((sample_corpus / "faq.jsonl").resolve())
    }


def test_queries_use_the_store_model_and_dimension(sample_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    profile = tmp_path / "dir-model.yaml"
    profile.write_text(f"embedding:\n  model: {minilm_dir()}\n")
    assert index(sample_corpus, store, "--profile", str(profile))[0] == 0
    meta = json.loads((store / "store.json").read_text())
    assert meta["embedding_model"] == minilm_dir() and meta["embedding_dim"] == 384
    # the default profile names no model: the query embedder takes the store's
    hits, err = passages(store, "Which planet has the strongest winds?", 3)
    assert hits[0]["source"].endswith("solar_system.md") and "warning" not in err

    from ragkit.pipeline import load_pipeline

    st = open_store(EmbeddedStore(path=str(store)))
    try:
        pipe = load_pipeline(REPO / "pipelines" / "retrieve.yaml", store=st)
        embedders = [c for _, c in pipe.walk() if type(c).__name__ == "TextEmbedder"]
        assert embedders and all(c.model == minilm_dir() for c in embedders)
    finally:
        release_store(st)


def test_store_records_and_enforces_its_dimension(tmp_path: Path) -> None:
    from haystack import Document

    from ragkit.stores.store import StoreError

    path = tmp_path / "store"
    st = open_store(EmbeddedStore(path=str(path)), embedding_model="tiny", embedding_dim=8)
    try:
        vec = [1.0] + [0.0] * 7
        st.write([Document(id="a", content="eight dims", embedding=vec, meta={"source": "s"})])
        st.commit()
        with pytest.raises(StoreError, match="5-d embedding.*8-d vectors of 'tiny'"):
            st.write([Document(id="b", content="x", embedding=[0.0] * 5, meta={"source": "s"})])
    finally:
        release_store(st)
    st = open_store(EmbeddedStore(path=str(path)))  # model and dimension come from store.json
    try:
        assert (st.embedding_model, st.embedding_dim) == ("tiny", 8)
        assert st.dense_search(vec, top_k=1)[0].id == "a"
        with pytest.raises(StoreError, match="384 dimensions.*8-d vectors"):
            st.dense_search([0.0] * 384)
    finally:
        release_store(st)
    with pytest.raises(StoreError, match="holds 8-d vectors"):
        open_store(EmbeddedStore(path=str(path)), embedding_model="tiny", embedding_dim=384)


# ---------------------------------------------------------------- 6. validate before writing


def test_bad_model_name_writes_nothing(sample_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    profile = tmp_path / "bad.yaml"
    profile.write_text("embedding:\n  model: no-such-model-xyz\n")
    code, out, err = index(sample_corpus, store, "--profile", str(profile))
    assert code == 1 and "no-such-model-xyz" in err and err.count("\n") == 1
    assert not store.exists() or not any(store.iterdir())
    code, out, err = index(sample_corpus, store)
    assert code == 0 and "5 new" in out, err


def test_index_resyncs_bm25_from_qdrant_and_keeps_unmanaged_chunks(
    sample_corpus: Path, tmp_path: Path
) -> None:
    from haystack import Document

    store = tmp_path / "store"
    assert index(sample_corpus, store)[0] == 0
    good, _ = stats(store)
    volcanoes = str((sample_corpus / "volcanoes.md").resolve())
    st = open_store(EmbeddedStore(path=str(store)))
    try:
        vec = [1.0] + [0.0] * 383
        st.write(
            [Document(id="api-1", content="zeppelin notes", embedding=vec, meta={"source": "api"})]
        )
        st._bm25.delete_source(volcanoes)  # BM25 loses one file; Qdrant keeps it
        st.commit()
    finally:
        release_store(st)
    info, err = stats(store)
    assert volcanoes in info["integrity"] and "ragkit repair" in err

    code, out, err = index(sample_corpus, store)
    assert code == 0, err
    assert "5 unchanged" in out and "0 chunks written" in out  # healed from Qdrant
    fixed, err = stats(store)
    assert fixed["integrity"] == "ok" and "warning" not in err
    assert fixed["chunks"] == fixed["bm25"]["docs"] == good["chunks"] + 1  # API chunk kept
    st = open_store(EmbeddedStore(path=str(store)))
    try:
        assert st.bm25_search("Pompeii", top_k=1)[0].meta["source"] == volcanoes
        assert st.bm25_search("zeppelin", top_k=1)[0].id == "api-1"
    finally:
        release_store(st)
