"""Issue 27: the edges where ragkit lost data, leaked a credential or echoed a bomb.

Each test reproduces a failure seen on an earlier main through the real CLI (or the library
call behind it) and checks the general rule the fix keeps: bounded YAML, a URL is never a
directory, a file that stops loading keeps its chunks, counts that say what happened, an
indexer checked before the store is touched, and errors that name the file that holds the
bad value.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cli_run import one_error_line, ragkit

REPO = Path(__file__).resolve().parent.parent


def alias_bomb(depth: int = 9) -> str:
    """The billion-laughs shape: each level is nine aliases of the one before."""
    names = "abcdefghijklmnop"
    lines = ['  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, depth):
        refs = ", ".join(f"*{names[i - 1]}" for _ in range(9))
        lines.append(f"  - &{names[i]} [{refs}]")
    return "bomb:\n" + "\n".join(lines) + "\n"


# ------------------------------------------------------------------ item 1: alias bombs


def bomb_pipeline(tmp_path: Path) -> Path:
    """The shipped rag.yaml with the joiner's weights set to the bomb's last level."""
    data = yaml.safe_load((REPO / "pipelines" / "rag.yaml").read_text())
    data["components"]["joiner"]["init_parameters"]["weights"] = "PLACEHOLDER"
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb() + yaml.safe_dump(data).replace("PLACEHOLDER", "*i"))
    return path


def test_alias_bomb_in_a_pipeline_is_one_short_line_at_once(tmp_path: Path) -> None:
    path = bomb_pipeline(tmp_path)
    assert path.stat().st_size < 5000
    start = time.perf_counter()
    code, out, err = ragkit("pipelines", "validate", str(path))
    assert time.perf_counter() - start < 10
    assert code == 2, out + err
    (line,) = err.splitlines()  # validate prints one line per problem
    assert "aliases expand" in line and str(path) in line and len(line) < 400


@pytest.mark.parametrize("recursive", [False, True])
def test_alias_bomb_in_a_profile_is_refused(
    tmp_path: Path, sample_corpus: Path, recursive: bool
) -> None:
    profile = tmp_path / "bomb-profile.yaml"
    if recursive:  # an alias inside itself expands without end
        profile.write_text("split: &x\n  nested: *x\n")
    else:  # 9**7 strings as the joiner's weights
        profile.write_text(
            alias_bomb(7) + "components:\n  joiner:\n    init_parameters:\n      weights: *g\n"
        )
    store = tmp_path / "store"
    code, _, err = ragkit(
        "index", str(sample_corpus), "--store", str(store), "--profile", str(profile)
    )
    assert code == 2
    line = one_error_line(err)
    assert str(profile) in line and "aliases expand" in line
    assert not store.exists()


def test_small_aliases_still_load(tmp_path: Path) -> None:
    from ragkit.config import read_yaml

    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {top_k: 3}\nuse: *b\nmore: [*b, *b]\n")
    assert read_yaml(path) == {
        "base": {"top_k": 3},
        "use": {"top_k": 3},
        "more": [{"top_k": 3}] * 2,
    }


def test_a_huge_bad_value_is_echoed_cut_short(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "pipelines" / "rag.yaml").read_text())
    data["components"]["joiner"]["init_parameters"]["weights"] = ["heavy" * 20] * 3_000
    path = tmp_path / "big-value.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = ragkit("pipelines", "validate", str(path))
    assert code == 2
    (line,) = err.splitlines()
    assert "components.joiner.init_parameters.weights" in line
    assert len(line) < 600, len(line)


# ------------------------------------------------------------------ item 3: URL-shaped stores


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://alice:s3cretpass@127.0.0.1:9",
        "Https://alice:s3cretpass@127.0.0.1:9",
        "ftp://alice:s3cretpass@127.0.0.1:9",
        "qdrant+grpc://alice:s3cretpass@127.0.0.1:9",
    ],
)
def test_a_url_store_is_never_a_directory_and_never_shows_its_password(
    url: str, sample_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for args in (
        ("index", str(sample_corpus), "--store", url, "-q"),
        ("stats", "--store", url),
        ("query", "anything", "--store", url, "--pipeline", "retrieve"),
    ):
        code, out, err = ragkit(*args)
        assert code != 0, (args, out)
        line = one_error_line(err)
        assert "s3cretpass" not in out + err, (args, out + err)
        assert "alice" not in out + err
        assert "127.0.0.1" in line
        assert list(work.rglob("*")) == [], f"{args[0]} wrote {list(work.rglob('*'))}"


def test_upper_case_scheme_is_the_same_server() -> None:
    from ragkit.config import ServerStore, store_from_location

    cfg = store_from_location("HTTPS://qdrant.example:6333")
    assert isinstance(cfg, ServerStore) and cfg.url == "https://qdrant.example:6333"


def test_a_profile_with_an_unsupported_store_url_names_the_file(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("store:\n  kind: server\n  url: ftp://bob:hunter22@h:1\n")
    code, _, err = ragkit("stats", "--profile", str(profile))
    assert code == 2
    line = one_error_line(err)
    assert str(profile) in line and "store.url" in line and "hunter22" not in line


# ------------------------------------------------------------------ items 2 and 10: loaders


def stats(store: Path) -> dict:
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0, err
    return json.loads(out)


def chunks_of(store: Path, name: str) -> int:
    """The file's chunks by the manifest, after checking that Qdrant holds as many in all."""
    files = json.loads((store / "manifest.json").read_text())["files"]
    assert stats(store)["chunks"] == sum(e["chunks"] for e in files.values())
    return sum(e["chunks"] for src, e in files.items() if src.endswith(name))


def index(docs: Path, store: Path, *extra: str) -> tuple[int, str, str]:
    return ragkit("index", str(docs), "--store", str(store), "-q", *extra)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "faq.jsonl",
            '{"text": "Quokkas live on Rottnest Island."}\n{"text": "Cloves grow on Zanzibar."}\n',
            '[{"text": "Quokkas live on Rottnest Island."},\n {"text": "Cloves."},\n]\n',
        ),
        (
            "page.html",
            "<html><body><p>Quokkas live on Rottnest Island near Perth.</p></body></html>",
            "<html><head><script>var x = 1;</script></head><body>  </body></html>",
        ),
    ],
)
def test_a_file_that_stops_loading_keeps_its_chunks(
    tmp_path: Path, name: str, good: str, bad: str
) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    docs.mkdir()
    (docs / name).write_text(good)
    (docs / "other.txt").write_text("Etna is a volcano in Sicily.")
    code, _, err = index(docs, store)
    assert code == 0, err
    before = chunks_of(store, name)
    assert before >= 1
    (docs / name).write_text(bad)
    code, out, err = index(docs, store)
    assert code == 1
    assert name in err and "warning:" in err
    assert "0 changed" in out and "1 failed to load" in out, out
    assert chunks_of(store, name) == before
    # and the next run retries it: it is not recorded as indexed in its new state
    (docs / name).write_text(good)
    code, out, err = index(docs, store)
    assert code == 0, err
    assert chunks_of(store, name) == before


def test_a_pdf_without_a_text_layer_is_a_failure_not_an_empty_file(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    from ragkit.indexing.loaders import FileLoader

    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    pdf = tmp_path / "scan.pdf"
    with pdf.open("wb") as fh:
        writer.write(fh)
    result = FileLoader().run(sources=[str(pdf)])
    assert result["documents"] == []
    assert result["failed_sources"] == [str(pdf)]
    assert "text layer" in result["errors"][0]


def test_a_blank_file_is_empty_and_drops_its_chunks(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    docs.mkdir()
    (docs / "a.txt").write_text("Etna is a volcano in Sicily.")
    (docs / "b.jsonl").write_text('{"text": "Cloves grow on Zanzibar."}\n')
    assert index(docs, store)[0] == 0
    (docs / "a.txt").write_text("  \n")
    (docs / "b.jsonl").write_text("")
    code, out, err = index(docs, store)
    assert code == 0, err
    assert "2 changed" in out
    assert chunks_of(store, "a.txt") == 0 and chunks_of(store, "b.jsonl") == 0


def test_counts_say_which_files_failed_and_which_were_skipped(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    docs.mkdir()
    (docs / "prog.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    (docs / "noise.md").write_bytes(bytes((i * 7919) % 128 + 128 for i in range(2000)))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (docs / "good.txt").write_text("Etna is a volcano in Sicily.")
    lone = tmp_path / "notes.csv"
    lone.write_text("a,b\n1,2\n")
    code, out, err = ragkit("index", str(docs), str(lone), "--store", str(store), "-q", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["added"] == 1 and report["updated"] == 0
    assert report["failed"] == 3 and report["skipped"] == 1
    code, out, _ = index(docs, store)
    assert "0 new, 0 changed, 1 unchanged" in out and "3 failed to load" in out, out


def test_repair_does_not_count_a_file_that_failed_to_load(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    docs.mkdir()
    (docs / "a.txt").write_text("Etna is a volcano in Sicily.")
    assert index(docs, store)[0] == 0
    manifest = store / "manifest.json"
    data = json.loads(manifest.read_text())
    entries = data["files"]
    (src,) = list(entries)
    entries[src]["status"] = "pending"  # as an interrupted run leaves it
    manifest.write_text(json.dumps(data))
    (docs / "a.txt").write_bytes(b"\x00\x01binary now")
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 1
    assert "0 files re-indexed, 1 failed to load" in out, out


# ------------------------------------------------------------------ items 6 and 15: nothing written


def test_a_query_pipeline_as_indexer_is_one_line_and_touches_no_store(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    query_pipeline = REPO / "pipelines" / "rag_bm25.yaml"
    code, _, err = index(sample_corpus, store, "--indexer", str(query_pipeline))
    assert code == 2
    line = one_error_line(err)
    assert "not an indexing pipeline" in line and "rag_bm25.yaml" in line
    assert not store.exists()
    # an existing store is left as it was: no file marked pending by an interrupted run
    assert index(sample_corpus, store)[0] == 0
    manifest = (store / "manifest.json").read_bytes()
    code, _, err = index(sample_corpus, store, "--indexer", str(query_pipeline))
    assert code == 2
    assert (store / "manifest.json").read_bytes() == manifest
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["pending_files"] == 0, err


def test_index_files_on_a_missing_path_writes_nothing(tmp_path: Path) -> None:
    import ragkit
    from ragkit.errors import InvalidInputError

    store = tmp_path / "store"
    with pytest.raises(InvalidInputError, match="nothing to index.*nonexistent"):
        ragkit.index_files(tmp_path / "nonexistent", store=str(store))
    assert not store.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="no supported files"):
        ragkit.index_files(empty, store=str(store))
    assert not store.exists()


# ------------------------------------------------------------------ item 13: errors name the profile


@pytest.mark.parametrize(
    ("profile_text", "key"),
    [
        (
            "components:\n  joiner:\n    init_parameters:\n      top_kk: 3\n",
            "components.joiner.init_parameters.top_kk",
        ),
        (
            "components:\n  joiner:\n    init_parameters:\n      top_k: many\n",
            "components.joiner.init_parameters.top_k",
        ),
    ],
)
def test_a_bad_override_names_the_profile_and_its_key(
    tmp_path: Path, profile_text: str, key: str
) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text(profile_text)
    code, _, err = ragkit(
        "query", "x", "--pipeline", "rag", "--profile", str(profile), "--store", str(tmp_path / "s")
    )
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"error: profile {profile}: {key}:"), line
    assert "rag.yaml" in line  # and says which pipeline it was applied to


def test_a_bad_split_in_a_profile_names_the_split_key(tmp_path: Path, sample_corpus: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("split:\n  split_length: 10\n  split_overlap: 10\n")
    store = tmp_path / "store"
    code, _, err = index(sample_corpus, store, "--profile", str(profile))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"error: profile {profile}: split.split_overlap:"), line
    assert not store.exists()
