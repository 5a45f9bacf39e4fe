"""Symbolic links that loop or lead nowhere: one line naming the link, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import runner

from ragkit.cli import app


def ragkit(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {result.exception!r}"
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def links(tmp_path: Path) -> Path:
    """``a -> b -> a`` (a loop) and ``dangling -> nowhere``, beside a real folder of text."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "what"), [("a", "symbolic link loop"), ("dangling", "broken symbolic link")]
)
def test_link_given_directly_is_one_line(links: Path, name: str, what: str) -> None:
    store = links / "store"
    code, _, err = ragkit("index", str(links / name), "--store", str(store), "-q")
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert f"{links / name}: {what}" in lines[0] and lines[0].startswith(("error: ", "warning: "))
    assert "Traceback" not in err


def test_links_inside_a_folder_are_named_and_the_rest_is_indexed(links: Path) -> None:
    docs = links / "docs"
    docs.mkdir()
    (docs / "real.txt").write_text("The okapi lives in the Ituri rainforest.")
    (docs / "loop1.txt").symlink_to(docs / "loop2.txt")
    (docs / "loop2.txt").symlink_to(docs / "loop1.txt")
    (docs / "gone.md").symlink_to(docs / "missing.md")
    (docs / "up").symlink_to(links)  # a link to a folder above is not followed (no endless walk)
    store = links / "store"
    code, out, err = ragkit("index", str(docs), str(links / "a"), "--store", str(store), "-q")
    assert code == 1, out + err  # some paths could not be indexed
    assert "indexed: 1 new" in out
    warnings = sorted(ln for ln in err.splitlines() if ln.strip())
    assert len(warnings) == 4, err
    assert all(ln.startswith("warning: ") for ln in warnings)
    assert f"{links / 'a'}: symbolic link loop" in err
    assert f"{docs / 'loop1.txt'}: symbolic link loop" in err
    assert f"{docs / 'loop2.txt'}: symbolic link loop" in err
    assert f"{docs / 'gone.md'}: broken symbolic link" in err and "missing.md" in err


def test_store_or_delete_path_through_a_loop_is_one_line(links: Path) -> None:
    doc = links / "doc.txt"
    doc.write_text("Quolls are marsupials.")
    code, _, err = ragkit("index", str(doc), "--store", str(links / "a"), "-q")
    assert code == 1
    assert (
        err
        == f"error: {links / 'a'}: symbolic link loop (a link in this path leads back to itself); fix or remove the link\n"
    )
    store = links / "store"
    code, _, err = ragkit("index", str(doc), "--store", str(store), "-q")
    assert code == 0, err
    code, out, err = ragkit("index", "--delete", str(links / "a"), "--store", str(store), "-q")
    assert code == 0 and "Traceback" not in err, out + err
