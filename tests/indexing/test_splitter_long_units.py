"""Issue 11 item 11: text without sentence breaks (or without spaces) still becomes window-sized chunks."""

from __future__ import annotations

import time

import pytest
from haystack import Document

from ragkit.indexing.splitter import MAX_WORD_CHARS, TextSplitter


def split(
    text: str, mode: str = "sentence", length: int = 120, overlap: int = 20
) -> list[Document]:
    splitter = TextSplitter(split_by=mode, split_length=length, split_overlap=overlap)
    return splitter.run(documents=[Document(content=text, meta={"source": "big.txt"})])["documents"]


def assert_covers(text: str, chunks: list[Document]) -> None:
    """Chunks are in order, their offsets match their text, and every character is in one."""
    covered = 0
    for c in chunks:
        assert text[c.meta["start"] : c.meta["end"]] == c.content
        assert not text[covered : c.meta["start"]].strip(), "text between chunks was dropped"
        covered = max(covered, c.meta["end"])
    assert covered == len(text.rstrip())


@pytest.mark.parametrize("mode", ["sentence", "word"])
def test_one_endless_sentence_is_cut_by_words(mode: str) -> None:
    text = " ".join(f"w{i % 997}" for i in range(200_000))  # ~1.2 MB, no sentence break
    start = time.perf_counter()
    chunks = split(text, mode)
    seconds = time.perf_counter() - start
    assert seconds < 20
    assert all(len(c.content.split()) <= 120 for c in chunks)
    assert len(chunks) >= 200_000 // 120
    assert_covers(text, chunks)


def test_long_sentence_between_normal_ones_keeps_the_normal_ones_whole() -> None:
    long = " ".join(["lorem"] * 500) + "."
    text = f"Short first one. {long} Short last one."
    chunks = split(text, length=50, overlap=5)
    assert chunks[0].content.startswith("Short first one.")
    assert chunks[-1].content.endswith("Short last one.")
    assert all(len(c.content.split()) <= 50 for c in chunks)
    assert_covers(text, chunks)


@pytest.mark.parametrize("mode", ["sentence", "word"])
def test_text_without_spaces_is_cut_by_characters(mode: str) -> None:
    text = "x" * 300_000
    chunks = split(text, mode)
    limit = 120 * MAX_WORD_CHARS
    assert all(len(c.content) <= limit for c in chunks), max(len(c.content) for c in chunks)
    assert len(chunks) >= len(text) // limit
    assert_covers(text, chunks)


def test_normal_text_chunks_are_unchanged() -> None:
    """Only over-long units are cut: ordinary prose splits exactly as before."""
    sentences = [
        f"Sentence number {i} talks about rivers and their long deltas." for i in range(60)
    ]
    text = " ".join(sentences)
    chunks = split(text, length=30, overlap=10)
    for c in chunks:
        assert c.content.startswith("Sentence number") and c.content.endswith("deltas.")
