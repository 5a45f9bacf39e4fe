"""Issue 27, item 7: one diagnosis per damaged store file, the same in every command.

``stats``, ``query``, ``index`` and ``repair`` each meet the damage through
:func:`ragkit.stores.damage.diagnose_store`; every case runs the real CLI on a real store.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_run import ragkit

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"
WINDS = "Which planet has the strongest winds?"


def top_source(store: Path) -> str:
    code, out, err = ragkit(
        "query", WINDS, "--store", str(store), "--pipeline", "retrieve", "--top-k", "3", "--json"
    )
    assert code == 0, err
    return json.loads(out)["passages"][0]["source"]


def tree(directory: Path) -> dict[str, bytes]:
    """Every file of a store but the process locks (their content is the holder's pid)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(corpus, store): the sample corpus indexed once; tests damage copies of the store."""
    root = tmp_path_factory.mktemp("damage")
    corpus = root / "corpus"
    shutil.copytree(SAMPLE, corpus)
    store = root / "store"
    local = root / "local.yaml"  # these damages are Qdrant local mode's files
    local.write_text("store:\n  kind: embedded\n  engine: local\n")
    code, _, err = ragkit(
        "index", str(corpus), "--store", str(store), "-q", "--profile", str(local)
    )
    assert code == 0, err
    return corpus, store


def _corrupt_meta(store: Path) -> Path:
    (store / "qdrant" / "meta.json").write_text("{not json")
    return store / "qdrant" / "meta.json"


def _delete_store_json(store: Path) -> Path:
    (store / "store.json").unlink()
    return store / "store.json"


def _corrupt_store_json(store: Path) -> Path:
    (store / "store.json").write_text('{"format": 1, "embedd')
    return store / "store.json"


def _delete_meta(store: Path) -> Path:
    (store / "qdrant" / "meta.json").unlink()
    return store / "qdrant" / "meta.json"


def _unlist_collection(store: Path) -> Path:
    (store / "qdrant" / "meta.json").write_text('{"collections": {}, "aliases": {}}')
    return store / "qdrant" / "meta.json"


def _wrong_dimension(store: Path) -> Path:
    meta = store / "qdrant" / "meta.json"
    meta.write_text(meta.read_text().replace('"size": 384', '"size": 768'))
    return meta


def _both(store: Path) -> Path:
    _corrupt_meta(store)
    return _delete_store_json(store)  # the first file named; repair rebuilds both


def the_commands(corpus: Path, store: Path) -> dict[str, tuple[int, str, str]]:
    """What stats, query and index say about the store (none of them may change it)."""
    before = tree(store)
    said = {
        "stats": ragkit("stats", "--store", str(store)),
        "query": ragkit("query", WINDS, "--store", str(store), "--pipeline", "retrieve"),
        "index": ragkit("index", str(corpus), "--store", str(store), "-q"),
    }
    assert tree(store) == before
    return said


@pytest.mark.parametrize(
    "damage",
    [_corrupt_meta, _delete_meta, _unlist_collection, _wrong_dimension, _delete_store_json,
     _corrupt_store_json, _both],
    ids=["meta.json corrupt", "meta.json deleted", "meta.json lists no collection",
         "meta.json wrong dimension", "store.json deleted", "store.json corrupt", "both"],
)  # fmt: skip
def test_each_damage_has_one_diagnosis_and_repair_rebuilds_it(
    indexed: tuple[Path, Path], tmp_path: Path, damage: Callable[[Path], Path]
) -> None:
    corpus, intact = indexed
    store = tmp_path / "store"
    shutil.copytree(intact, store)
    good = json.loads(ragkit("stats", "--store", str(store), "--json")[1])
    good_meta = (store / "store.json").read_text()
    damaged_file = damage(store)

    said = the_commands(corpus, store)
    lines = {cmd: err for cmd, (_, _, err) in said.items()}
    assert all(code == 1 for code, _, _ in said.values()), said
    assert len(set(lines.values())) == 1, lines  # word for word the same diagnosis
    line = lines["stats"]
    assert line.count("\n") == 1 and "Traceback" not in line, line
    assert line.startswith(f"error: store {store} is damaged: {damaged_file} ")
    assert line.endswith(f"; run `ragkit repair --store {store}`\n"), line

    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 0, err
    assert f"rebuilt {damaged_file}" in out
    assert "0 files re-indexed" in out  # the data was intact: nothing started over
    fixed = json.loads(ragkit("stats", "--store", str(store), "--json")[1])
    assert fixed["integrity"] == "ok" and fixed["chunks"] == good["chunks"]
    assert (store / "store.json").read_text() == good_meta
    assert top_source(store).endswith("solar_system.md")
    code, out, err = ragkit("index", str(corpus), "--store", str(store), "-q")
    assert code == 0 and "5 unchanged" in out, err


@pytest.mark.parametrize("also", [_corrupt_meta, _delete_store_json])
def test_lost_points_are_one_diagnosis_everywhere_repair_included(
    indexed: tuple[Path, Path], tmp_path: Path, also: Callable[[Path], Path]
) -> None:
    """No metadata rebuild brings lost points back: every command says to re-index."""
    corpus, intact = indexed
    store = tmp_path / "store"
    shutil.copytree(intact, store)
    also(store)  # lost points outrank the lost metadata beside them
    storage = store / "qdrant" / "collection" / "ragkit" / "storage.sqlite"
    storage.write_bytes(b"this is not a database" * 100)

    said = the_commands(corpus, store)
    said["repair"] = ragkit("repair", "--store", str(store), "-q")
    lines = {cmd: err for cmd, (_, _, err) in said.items()}
    assert all(code == 1 for code, _, _ in said.values()), said
    assert len(set(lines.values())) == 1, lines
    assert lines["repair"] == (
        f"error: store {store} is damaged: {storage} is not a SQLite database (its points are "
        f"lost); delete {store} and re-index\n"
    )


def test_repair_does_not_record_another_model_for_the_vectors(
    indexed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store.json is rebuilt only when a stored chunk re-embeds to the vector stored for it."""
    import ragkit.indexing.settings as settings

    _, intact = indexed
    store = tmp_path / "store"
    shutil.copytree(intact, store)
    _delete_store_json(store)
    real = settings.embed_document

    def other_model(pipe, doc):  # same dimension, another vector space
        return list(reversed(real(pipe, doc)))

    monkeypatch.setattr(settings, "embed_document", other_model)
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 1 and err.count("\n") == 1, err
    assert f"{store / 'store.json'} is missing, and cannot be rebuilt: " in err
    assert "not made by the indexing pipeline's model 'minilm-int8'" in err
    assert "--profile / --indexer that built the store" in err and "re-index" in err
    assert not (store / "store.json").exists()
