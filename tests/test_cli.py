"""The real CLI end to end: index, query, stats, incremental updates and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import ragkit


def chunk_sources(store: Path, question: str, top_k: int = 50) -> list[str]:
    code, out, err = ragkit(
        "query",
        question,
        "--store",
        str(store),
        "--top-k",
        str(top_k),
        "--json",
        "--pipeline",
        "retrieve",
    )
    assert code == 0, err
    return [p["source"] for p in json.loads(out)["passages"]]


def stats(store: Path) -> dict:
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0, err
    return json.loads(out)


def test_help_is_fast_and_imports_no_torch() -> None:
    code = (
        "import sys; from ragkit.cli import app; "
        "assert 'torch' not in sys.modules and 'haystack' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "index" in out.stdout and "query" in out.stdout


def test_index_query_stats_and_incremental(sample_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, err = ragkit("index", str(sample_corpus), "--store", str(store), "-q")
    assert code == 0, err
    assert "5 new" in out
    first = stats(store)
    assert first["files"] == 5 and first["chunks"] > 5
    assert first["bm25"]["docs"] == first["chunks"]

    code, out, err = ragkit(
        "query",
        "Which planet has the strongest winds?",
        "--store",
        str(store),
        "--top-k",
        "3",
        "--json",
        "--pipeline",
        "retrieve",
    )
    assert code == 0, err
    passages = json.loads(out)["passages"]
    assert len(passages) == 3
    assert passages[0]["source"].endswith("solar_system.md")
    assert "Neptune" in passages[0]["content"]

    # unchanged re-run writes nothing
    code, out, _ = ragkit("index", str(sample_corpus), "--store", str(store), "-q")
    assert code == 0 and "5 unchanged" in out and "0 chunks written" in out
    assert stats(store)["chunks"] == first["chunks"]

    # change one file, add one, remove one
    (sample_corpus / "volcanoes.md").write_text(
        "# Volcanoes\n\nKrakatoa erupted in 1883 with a sound heard 4,800 km away.\n"
    )
    (sample_corpus / "glaciers.txt").write_text(
        "Glaciers store about 69 percent of the world's fresh water.\n"
    )
    (sample_corpus / "rivers.html").unlink()
    code, out, err = ragkit("index", str(sample_corpus), "--store", str(store), "-q")
    assert code == 0, err
    assert "1 new, 1 changed, 3 unchanged, 1 removed" in out
    after = stats(store)
    assert after["files"] == 5
    sources = chunk_sources(store, "Krakatoa volcano eruption glaciers rivers Nile Amazon")
    assert not any(s.endswith("rivers.html") for s in sources)
    assert any(s.endswith("glaciers.txt") for s in sources)
    code, out, _ = ragkit(
        "query", "Pompeii Vesuvius", "--store", str(store), "--json", "--pipeline", "retrieve"
    )
    contents = " ".join(p["content"] for p in json.loads(out)["passages"])
    assert "Pompeii" not in contents  # the old version of volcanoes.md is gone, not duplicated
    # no duplicates: the chunk count equals the manifest's and BM25's
    assert after["bm25"]["docs"] == after["chunks"]

    # --delete removes a file's chunks
    code, out, err = ragkit(
        "index", "--delete", str(sample_corpus / "glaciers.txt"), "--store", str(store), "-q"
    )
    assert code == 0, err
    assert stats(store)["files"] == 4
    assert not any(s.endswith("glaciers.txt") for s in chunk_sources(store, "glaciers fresh water"))


def test_bad_inputs_are_one_line_and_good_files_still_indexed(
    sample_corpus: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (sample_corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary" * 100)
    (sample_corpus / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    with open(sample_corpus / "huge.txt", "wb") as fh:  # sparse 50 MB file
        fh.truncate(50 * 2**20)
    (sample_corpus / "bad.jsonl").write_text(
        '{"text": "fine line about tulips"}\n{not json\n{"body": "no text"}\n'
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = ragkit(
        "index",
        str(sample_corpus),
        str(empty),
        str(tmp_path / "missing"),
        "--store",
        str(store),
        "-q",
    )
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    joined = "\n".join(lines)
    assert "blob.txt: binary file" in joined
    assert "latin1.txt: not UTF-8" in joined
    assert "huge.txt: 50.0 MB is over the 20 MB limit" in joined
    assert "bad.jsonl:2: malformed JSON" in joined
    assert "bad.jsonl:3: no string field 'text'" in joined
    assert f"{empty}: no supported files" in joined
    assert "missing: no such file or directory" in joined
    assert "Traceback" not in err
    # good files (and the good jsonl line) were indexed
    assert stats(store)["files"] == 6
    assert any(s.endswith("bad.jsonl") for s in chunk_sources(store, "tulips"))


def test_unknown_pipeline_and_store_errors(tmp_path: Path, sample_corpus: Path) -> None:
    store = tmp_path / "store"
    code, _, err = ragkit("query", "x", "--store", str(store))
    assert code == 1 and "no ragkit store at" in err
    ragkit("index", str(sample_corpus / "faq.jsonl"), "--store", str(store), "-q")
    code, _, err = ragkit("query", "x", "--store", str(store), "--pipeline", "nope")
    assert code == 1 and "unknown --pipeline 'nope'" in err and "retrieve" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = ragkit("index", str(sample_corpus), "--store", str(afile), "-q")
    assert code == 1 and "is a file" in err and err.count("\n") == 1


def test_second_process_gets_store_in_use(tmp_path: Path, sample_corpus: Path) -> None:
    store = tmp_path / "store"
    ragkit("index", str(sample_corpus / "faq.jsonl"), "--store", str(store), "-q")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ragkit.stores.lock import StoreLock; "
            "from pathlib import Path; l = StoreLock(Path(sys.argv[1])); l.acquire(); print('locked', flush=True); time.sleep(60)",
            str(store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(
            [sys.executable, "-m", "ragkit.cli", "stats", "--store", str(store)],
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        assert proc.returncode == 1
        assert "is in use by another ragkit process" in proc.stderr
        assert str(holder.pid) in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "name",
    sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "pipelines").glob("*.yaml")),
)
def test_shipped_pipelines_validate(name: str) -> None:
    code, out, err = ragkit(
        "pipelines", "validate", f"pipelines/{name}.yaml", "indexers/default.yaml"
    )
    assert code == 0, err
    assert out.count(": ok") == 2
