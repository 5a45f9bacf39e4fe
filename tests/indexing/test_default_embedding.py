"""Issue 31, item 2: new stores embed with int8 MiniLM by default; existing stores keep theirs.

Every case runs the real CLI or the real components on real stores and the packaged models.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from cli_run import ragkit

from ragkit.config import EmbeddedStore, Profile, ServerStore
from ragkit.evaluation.evaluate import eval_embedding_model, profile_fingerprint
from ragkit.models.registry import (
    INT8_EMBEDDING_MODEL,
    TORCH_EMBEDDING_MODEL,
    default_embedding_model,
    model_files,
)
from ragkit.pipeline import load_pipeline
from ragkit.resources import find_pipeline_file
from ragkit.stores.store import open_store, release_store

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"


def _recorded(store: Path) -> str:
    return json.loads((store / "store.json").read_text())["embedding_model"]


def _pin(tmp_path: Path, model: str) -> Path:
    profile = tmp_path / f"pin-{model}.yaml"
    profile.write_text(f"embedding:\n  model: {model}\n")
    return profile


def test_the_default_is_int8_on_a_cpu_and_torch_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_embedding_model() == INT8_EMBEDDING_MODEL
    assert default_embedding_model("cpu") == INT8_EMBEDDING_MODEL
    assert default_embedding_model("cuda") == TORCH_EMBEDDING_MODEL
    assert default_embedding_model("cuda:1") == TORCH_EMBEDDING_MODEL
    # without onnxruntime (a None entry in sys.modules makes the module unimportable)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert default_embedding_model() == TORCH_EMBEDDING_MODEL


def test_shipped_profiles_and_pipelines_name_no_embedding_model() -> None:
    """A named model pins a store; the defaults must leave the choice to the store."""
    from ragkit.config import load_profile

    for name in ("default", "cpu-small", "cpu-quality", "gpu"):
        assert load_profile(name).embedding.model is None, name
    for name in ("rag", "retrieve", "multihop", "corag", "reorder_rag", "adaptive_note"):
        pipe = load_pipeline(find_pipeline_file(name, "pipelines", "--pipeline"))
        for comp_name, comp in pipe.walk():
            for attr in ("model", "embedding_model"):
                if type(comp).__name__ == "TextEmbedder" or attr == "embedding_model":
                    assert getattr(comp, attr, None) is None, (name, comp_name, attr)


def test_a_new_store_records_int8_and_queries_embed_with_it(
    sample_store: Path, tmp_path: Path
) -> None:
    assert _recorded(sample_store) == INT8_EMBEDDING_MODEL
    code, out, err = ragkit(
        "query", "Who designed the Analytical Engine?", "--store", str(sample_store),
        "--pipeline", "retrieve", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "computing_history" in json.loads(out)["passages"][0]["source"]


def test_an_existing_minilm_store_keeps_minilm(tmp_path: Path) -> None:
    """A store built before the switch: indexed into and queried with the default profile."""
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    shutil.copytree(SAMPLE, corpus)
    code, _, err = ragkit(
        "index",
        str(corpus),
        "--store",
        str(store),
        "-q",
        "--profile",
        str(_pin(tmp_path, "minilm")),
    )
    assert code == 0, err
    zebra = "Grevy's zebras graze the dry plains of northern Kenya."
    (corpus / "zebra.txt").write_text(zebra)
    code, out, err = ragkit("index", str(corpus), "--store", str(store))
    assert code == 0, err
    # the old files' settings fingerprint is the one they were indexed with: nothing re-embedded
    assert "1 new, 0 changed, 5 unchanged" in out + err
    assert _recorded(store) == TORCH_EMBEDDING_MODEL
    code, out, err = ragkit(
        "query", "Where do zebras graze?", "--store", str(store), "--pipeline", "retrieve", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["passages"][0]["source"].endswith("zebra.txt")
    # the query embedder is in the store's space: the chunk's own text finds it at cosine 1
    # (int8 against fp32 vectors of one text is 0.987-0.999)
    from ragkit.retrieval.embedders import query_embedder_for

    st = open_store(EmbeddedStore(path=str(store)), read_only=True, model_files=model_files)
    try:
        embedder = query_embedder_for(st, None)
        assert embedder.model == TORCH_EMBEDDING_MODEL
        hit = st.dense_search(embedder.run(text=zebra)["embedding"], top_k=1)[0]
        assert hit.meta["source"].endswith("zebra.txt") and hit.score > 0.9999
    finally:
        release_store(st)
    # naming the other model is refused, not mixed in
    code, _, err = ragkit(
        "index", str(corpus), "--store", str(store), "-q",
        "--profile", str(_pin(tmp_path, INT8_EMBEDDING_MODEL)),
    )  # fmt: skip
    assert code == 1 and "was built with embedding model 'minilm'" in err
    assert _recorded(store) == TORCH_EMBEDDING_MODEL


def test_self_embedding_components_follow_the_store(tmp_path: Path) -> None:
    """Clue retrieval and adaptive notes embed their own queries: in the store's space."""
    from ragkit.retrieval.embedders import query_embedder_for

    for built in (TORCH_EMBEDDING_MODEL, INT8_EMBEDDING_MODEL):
        st = open_store(
            EmbeddedStore(path=str(tmp_path / built)),
            embedding_model=built,
            model_files=model_files,
        )
        try:
            assert query_embedder_for(st, None).model == built
        finally:
            release_store(st)


def test_a_server_collection_keeps_minilm_unless_named() -> None:
    """A server collection records no model and its queries use minilm: no silent mixing."""
    from ragkit.indexing.settings import settle_embedding_model

    pipe = load_pipeline(find_pipeline_file("default", "indexers", "indexer"))
    assert settle_embedding_model(pipe, ServerStore(url="http://127.0.0.1:1")) == "minilm"
    assert pipe.get_component("embedder").model == "minilm"
    assert pipe.get_component("writer").embedding_model == "minilm"


def test_eval_keys_follow_the_model() -> None:
    """An eval with the default is not resumed from one made with minilm, and names its model."""
    default, pinned = Profile(), Profile.model_validate({"embedding": {"model": "minilm"}})
    assert eval_embedding_model(default) == INT8_EMBEDDING_MODEL
    assert eval_embedding_model(pinned) == TORCH_EMBEDDING_MODEL
    assert profile_fingerprint(default) != profile_fingerprint(pinned)
    explicit = Profile.model_validate({"embedding": {"model": INT8_EMBEDDING_MODEL}})
    assert profile_fingerprint(default) == profile_fingerprint(explicit)


def test_repair_of_a_lost_record_never_takes_int8_for_minilm(tmp_path: Path) -> None:
    """store.json lost from a store built with minilm: the default (int8) is not recorded for it.

    int8 and fp32 vectors of one text are 0.987-0.999 alike; only the model that made them
    re-embeds a chunk to the same vector, so the default is refused and the pinned one rebuilds.
    """
    store = tmp_path / "store"
    pinned = _pin(tmp_path, "minilm")
    code, _, err = ragkit("index", str(SAMPLE / "faq.jsonl"), "--store", str(store), "-q",
                          "--profile", str(pinned))  # fmt: skip
    assert code == 0, err
    (store / "store.json").unlink()
    code, _, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 1 and "not made by the indexing pipeline's model 'minilm-int8'" in err, err
    assert "embedding: {model: minilm}" in err and not (store / "store.json").exists()
    code, out, err = ragkit("repair", "--store", str(store), "-q", "--profile", str(pinned))
    assert code == 0, err
    assert _recorded(store) == TORCH_EMBEDDING_MODEL


def test_stores_and_embedders_in_python_agree_without_naming_a_model(tmp_path: Path) -> None:
    """Outside ``ragkit index``: a new store records the model an unnamed embedder uses, and an
    embedder bound to an existing store takes that store's model (no int8 into a minilm store)."""
    from ragkit.config import MemoryStore
    from ragkit.pipeline import bind_store
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import new_store_model

    fresh = open_store(MemoryStore())
    try:
        assert fresh.embedding_model == INT8_EMBEDDING_MODEL
        embedder = DocumentEmbedder()
        embedder.bind_store(fresh)
        assert embedder.model == INT8_EMBEDDING_MODEL
    finally:
        release_store(fresh)
    old = open_store(EmbeddedStore(path=str(tmp_path / "old")), embedding_model="minilm")
    release_store(old)
    st = open_store(EmbeddedStore(path=str(tmp_path / "old")))
    try:
        assert st.embedding_model == TORCH_EMBEDDING_MODEL  # the record, not the default
        pipe = load_pipeline(find_pipeline_file("default", "indexers", "indexer"))
        bind_store(pipe, st)
        assert pipe.get_component("embedder").model == TORCH_EMBEDDING_MODEL
        named = DocumentEmbedder(model=INT8_EMBEDDING_MODEL)
        named.bind_store(st)  # a named model is kept: the indexer and the store refuse it
        assert named.model == INT8_EMBEDDING_MODEL
    finally:
        release_store(st)
    assert new_store_model(ServerStore(url="http://127.0.0.1:1")) == TORCH_EMBEDDING_MODEL
