"""Chunking keeps offsets and sources; loaders report bad files without raising."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Document

from ragkit.indexing.loaders import FileLoader
from ragkit.indexing.splitter import TextSplitter, sentence_spans, window_spans

TEXT = "First sentence here. Second one follows! Third asks why? Fourth ends.\n\nNew paragraph starts here"


def test_sentence_spans_and_offsets_round_trip() -> None:
    spans = sentence_spans(TEXT)
    assert [TEXT[a:b] for a, b in spans] == [
        "First sentence here.",
        "Second one follows!",
        "Third asks why?",
        "Fourth ends.",
        "New paragraph starts here",
    ]


def test_window_overlap_and_oversize_unit() -> None:
    units = [(i, i + 1) for i in range(10)]
    assert window_spans(units, [1] * 10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_spans([(0, 5), (5, 6)], [5, 1], 2, 0) == [(0, 5), (5, 6)]  # big unit kept whole


@pytest.mark.parametrize("mode", ["word", "sentence", "token"])
def test_splitter_meta_and_ids(mode: str) -> None:
    splitter = TextSplitter(split_by=mode, split_length=6, split_overlap=2)
    doc = Document(content=TEXT, meta={"source": "s.txt"})
    chunks = splitter.run(documents=[doc])["documents"]
    assert len(chunks) > 1
    for i, c in enumerate(chunks):
        assert c.meta["source"] == "s.txt" and c.meta["chunk_index"] == i
        assert TEXT[c.meta["start"] : c.meta["end"]] == c.content
    again = splitter.run(documents=[Document(content=TEXT, meta={"source": "s.txt"})])["documents"]
    assert [c.id for c in again] == [c.id for c in chunks]  # deterministic ids
    assert "Fourth" in " ".join(c.content for c in chunks)


def test_bad_split_config() -> None:
    with pytest.raises(ValueError, match="split_overlap"):
        TextSplitter(split_length=5, split_overlap=5)


def test_loader_types(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nbody text")
    (tmp_path / "b.html").write_text(
        "<html><body><script>x()</script><p>Visible paragraph of text.</p></body></html>"
    )
    (tmp_path / "c.jsonl").write_text('{"text": "row one", "lang": "en"}\n\n{"text": "row two"}\n')
    (tmp_path / "d.bin").write_bytes(b"\x00\x01")
    out = FileLoader().run(
        sources=[str(tmp_path / n) for n in ["a.md", "b.html", "c.jsonl", "d.bin", "zz.txt"]]
    )
    contents = [d.content for d in out["documents"]]
    assert contents[0].startswith("# Title")
    assert "Visible paragraph" in contents[1] and "x()" not in contents[1]
    assert contents[2:] == ["row one", "row two"]
    assert out["documents"][2].meta == {
        "lang": "en",
        "source": str(tmp_path / "c.jsonl"),
        "line": 1,
    }
    assert any("d.bin: unsupported file type" in e for e in out["errors"])
    assert any("zz.txt: unsupported" in e or "zz.txt: file not found" in e for e in out["errors"])
