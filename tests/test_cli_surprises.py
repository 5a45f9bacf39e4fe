"""Issue 11 "surprises": bad --store values, terminal escapes, empty stores, through the real CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from cli_run import one_error_line, ragkit, reader_profile

from ragkit.testing import OpenAICompatServer

EVIL_TEXT = (
    "Zanzibar spice notes. The clove harvest \x1b]0;pwned-title\x07 begins in October "
    "\x1b[2J\x1b[H and ends\x07 in December\x9b31m. Zanzibar cloves are dried in the sun."
)
DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there


# ---------------------------------------------------------------- item 7: --store values


def test_server_url_with_password_writes_nothing_and_hides_password(
    sample_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    url = "http://user:s3cretpw@127.0.0.1:9"
    for args in (
        ("index", str(sample_corpus), "--store", url, "-q"),
        ("query", "anything", "--store", url, "--pipeline", "retrieve"),
        ("stats", "--store", url),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, out, err = ragkit(*args)
        assert not [w for w in caught if "qdrant" in str(w.filename)], [
            (w.filename, str(w.message)) for w in caught
        ]  # stderr noise
        assert code != 0, (args, out)
        line = one_error_line(err)
        assert "s3cretpw" not in out + err
        assert "127.0.0.1:9" in line and "cannot reach" in line
        assert list(work.iterdir()) == [], f"{args[0]} wrote {list(work.rglob('*'))}"


def test_server_state_dir_name_has_no_credentials() -> None:
    from ragkit.config import ServerStore
    from ragkit.stores.store import server_state_dir

    d = server_state_dir(ServerStore(url="https://bob:hunter2@qdrant.example:6333/?api_key=k9"))
    assert "hunter2" not in str(d) and "bob" not in str(d) and "k9" not in str(d)
    assert "qdrant.example" in d.name
    # a plain URL keeps the directory name earlier versions used, so existing manifests stay valid
    plain = server_state_dir(ServerStore(url="http://localhost:6333"))
    assert plain.name == "http___localhost_6333-ragkit"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_store_value_is_refused(
    value: str, sample_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    code, _, err = ragkit("index", str(sample_corpus), "--store", value, "-q")
    assert code == 2
    assert "--store" in one_error_line(err)
    assert sorted(tmp_path.iterdir()) == before  # the current directory did not become a store
    code, _, err = ragkit("query", "x", "--store", value, "--pipeline", "retrieve")
    assert code == 2 and "--store" in one_error_line(err)


def test_index_into_memory_store_is_one_line(sample_corpus: Path) -> None:
    code, _, err = ragkit("index", str(sample_corpus), "--store", ":memory:", "-q")
    assert code == 2
    line = one_error_line(err)
    assert ":memory:" in line and "directory" in line


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("surprises")
    docs = root / "docs"
    docs.mkdir()
    (docs / "zanzibar.txt").write_text(EVIL_TEXT)
    (docs / "evil\x1b[2J\x1b]0;t\x07name.txt").write_text(
        "Quokka notes. The quokka lives on Rottnest Island near Perth."
    )
    store = root / "store"
    local = root / "local.yaml"  # test_corrupt_qdrant_files_give_one_line damages local mode's
    local.write_text("store:\n  kind: embedded\n  engine: local\n")
    code, _, err = ragkit("index", str(docs), "--store", str(store), "-q", "--profile", str(local))
    assert code == 0, err
    return store


@pytest.mark.parametrize("target", ["qdrant/meta.json", "sqlite"])
def test_corrupt_qdrant_files_give_one_line(indexed: Path, tmp_path: Path, target: str) -> None:
    import shutil

    store = tmp_path / "copy"
    shutil.copytree(indexed, store)
    if target == "sqlite":
        files = list((store / "qdrant").rglob("*.sqlite"))
        assert files, list(store.rglob("*"))
        files[0].write_bytes(b"this is not a database" * 100)
    else:
        (store / target).write_text("{not json")
    code, _, err = ragkit("query", "cloves", "--store", str(store), "--pipeline", "retrieve")
    assert code == 1
    line = one_error_line(err)
    # either the damaged files themselves or the collection they hold is reported, with the fix
    assert str(store) in line and ("re-index" in line or f"ragkit repair --store {store}" in line)


# ---------------------------------------------------------------- item 8: terminal escapes


def test_query_output_has_no_control_characters(indexed: Path) -> None:
    for question in (
        "When does the clove harvest begin in Zanzibar?",
        "Where does the quokka live?",
    ):
        code, out, err = ragkit(
            "query", question, "--store", str(indexed), "--pipeline", "retrieve", "--top-k", "2"
        )
        assert code == 0, err
        assert not any(ch in out for ch in "\x1b\x07\x9b"), repr(out)
    assert "begins in October" in out or "quokka" in out.lower()
    assert "evil" in out and "name.txt" in out  # the file name is shown, defused

    code, out, err = ragkit(
        "query",
        "clove harvest Zanzibar",
        "--store",
        str(indexed),
        "--pipeline",
        "retrieve",
        "--json",
    )
    assert code == 0, err
    assert "\x1b" not in out  # JSON escapes control characters ...
    contents = [p["content"] for p in json.loads(out)["passages"]]
    assert any("\x1b]0;pwned-title\x07" in c for c in contents)  # ... and keeps them


def test_streamed_answer_tokens_are_defused(
    indexed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    reply = "Octo\x1b[2Jber \x1b]0;owned\x07[1]\rline"
    with OpenAICompatServer(lambda messages: reply) as server:
        code, out, err = ragkit(
            "query",
            "When does the clove harvest begin?",
            "--store",
            str(indexed),
            "--profile",
            str(reader_profile(tmp_path, server.base_url)),
        )
    assert code == 0, err
    assert len(server.requests) == 1 and server.requests[0]["stream"] is True
    assert not any(ch in out for ch in "\x1b\x07\r"), repr(out)
    assert out.startswith("answer: Octo")


# ---------------------------------------------------------------- item 10: empty store


def test_empty_store_answers_nothing_and_never_calls_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    doc = tmp_path / "a.txt"
    doc.write_text("The capital of Freedonia is Fredville.")
    store = tmp_path / "store"
    code, _, err = ragkit("index", str(doc), "--store", str(store), "-q")
    assert code == 0, err
    code, _, err = ragkit("index", "--delete", str(doc), "--store", str(store), "-q")
    assert code == 0, err
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["chunks"] == 0, out + err
    with OpenAICompatServer(lambda messages: "Paris [1]") as server:
        profile = reader_profile(tmp_path, server.base_url)
        code, out, err = ragkit(
            "query", "What is the capital?", "--store", str(store), "--profile", str(profile)
        )
        assert code == 0, err
        assert "no passages found" in out and "empty" in out
        assert "answer" not in out and "Paris" not in out
        code, out, err = ragkit(
            "query",
            "What is the capital?",
            "--store",
            str(store),
            "--profile",
            str(profile),
            "--json",
        )
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] is None and data["passages"] == [] and data["no_passages"] is True
        assert server.requests == []  # the reader was never asked
