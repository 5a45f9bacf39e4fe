"""Issue 27, item 14: a ``--delete`` path that matches nothing in the store is warned about."""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import ragkit

from ragkit.indexing.run import index_files


def test_delete_that_matches_nothing_warns_naming_the_path(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "tulips.txt").write_text("Tulip bulbs were traded in Holland in 1637.\n")
    (corpus / "glaciers.txt").write_text("Glaciers store most of the fresh water on Earth.\n")
    store = tmp_path / "store"
    code, _, err = ragkit("index", str(corpus), "--store", str(store), "-q")
    assert code == 0, err
    typo = tmp_path / "nothere"

    code, out, err = ragkit("index", "--delete", f"{typo}/", "--store", str(store))
    assert code == 0, err  # nothing failed; the warning says nothing was there to remove
    assert out == "removed 0 files from the index\n"
    assert (
        err
        == f"warning: --delete {typo}: no indexed file is at or under it; nothing removed there\n"
    )

    # one path matched, one did not: the match is removed, the other named in --json and stderr
    code, out, err = ragkit(
        "index", "--delete", str(typo), "--delete", str(corpus / "tulips.txt"),
        "--store", str(store), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["deleted_files"] == 1 and result["unmatched_deletes"] == [str(typo)]
    assert err.count("\n") == 1 and err.startswith(f"warning: --delete {typo}: ")

    # deletes that all match say nothing on stderr; the library hands the same lines back
    code, out, err = ragkit("index", "--delete", str(corpus), "--store", str(store), "--json")
    assert code == 0 and err == "" and json.loads(out)["unmatched_deletes"] == []
    result = index_files(None, delete=[corpus], store=str(store))
    assert result.deleted == 0 and result.unmatched_deletes == [str(corpus)]
    assert result.warnings == [
        f"--delete {corpus}: no indexed file is at or under it; nothing removed there"
    ]
