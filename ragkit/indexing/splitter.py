"""Chunking: word, sentence or token windows that keep the source and character offsets.

Written here rather than taken from Haystack's DocumentSplitter because its sentence and token
modes fetch NLTK / tiktoken data from the network, which ragkit must never do.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from haystack import Document, component

from ragkit.errors import InvalidParameter, clip

_WORD = re.compile(r"\S+")
# a sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a blank line
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")

Span = tuple[int, int]
# a "word" longer than this (base64, minified code, a text without spaces) is cut into pieces of
# this many characters, each counted as one word, so no chunk grows beyond its window
MAX_WORD_CHARS = 32


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Character spans of whitespace-separated words in ``text[start:end]``.

    Words longer than :data:`MAX_WORD_CHARS` come back as consecutive pieces of that length.
    """
    spans: list[Span] = []
    for m in _WORD.finditer(text, start, len(text) if end is None else end):
        a, b = m.span()
        if b - a <= MAX_WORD_CHARS:
            spans.append((a, b))
        else:
            spans.extend((i, min(i + MAX_WORD_CHARS, b)) for i in range(a, b, MAX_WORD_CHARS))
    return spans


def sentence_spans(text: str) -> list[Span]:
    """Character spans of sentences, cut at terminal punctuation or blank lines."""
    spans: list[Span] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if text[start : m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def window_spans(units: list[Span], sizes: list[int], length: int, overlap: int) -> list[Span]:
    """Pack consecutive units into windows of about ``length`` size with ``overlap`` carried over.

    A unit larger than ``length`` becomes a window of its own, so nothing is ever dropped.
    """
    windows: list[Span] = []
    i = 0
    n = len(units)
    while i < n:
        j = i
        total = 0
        while j < n and (total + sizes[j] <= length or j == i):
            total += sizes[j]
            j += 1
        windows.append((units[i][0], units[j - 1][1]))
        if j >= n:
            break
        # step back so the next window starts with about `overlap` size of this one's tail
        back = j
        carried = 0
        while back - 1 > i and carried + sizes[back - 1] <= overlap:
            back -= 1
            carried += sizes[back]
        i = back
    return windows


def chunk_id(source: str, index: int, content: str) -> str:
    """Deterministic chunk id: re-indexing the same file yields the same ids (idempotent upserts)."""
    return hashlib.sha256(f"{source}\x00{index}\x00{content}".encode()).hexdigest()[:32]


@component
class TextSplitter:
    """Splits documents into overlapping chunks; ``meta`` keeps source, chunk index and offsets.

    ### Usage example
    ```python
    splitter = TextSplitter(split_by="sentence", split_length=120, split_overlap=20)
    chunks = splitter.run(documents=[Document(content=text, meta={"source": "a.txt"})])
    ```
    """

    def __init__(
        self,
        split_by: Literal["word", "sentence", "token"] = "sentence",
        split_length: int = 120,
        split_overlap: int = 20,
        tokenizer: str = "minilm",
    ) -> None:
        """Create a splitter.

        Args:
            split_by: unit of windows; ``sentence`` packs whole sentences up to ``split_length``
                words, ``token`` counts tokens of ``tokenizer`` (the embedding model's by default).
            split_length: window size in words (word, sentence) or tokens (token).
            split_overlap: how much of a window's tail the next one repeats, same unit.
            tokenizer: model name or directory whose tokenizer counts tokens in ``token`` mode.
        """
        if split_by not in ("word", "sentence", "token"):
            raise InvalidParameter(
                "split_by", f"must be word, sentence or token, not {clip(split_by)}"
            )
        if split_length < 1:
            raise InvalidParameter("split_length", f"must be at least 1, got {split_length}")
        if split_overlap < 0 or split_overlap >= split_length:
            raise InvalidParameter(
                "split_overlap",
                f"must be at least 0 and less than split_length ({split_length}), got "
                f"{split_overlap}",
            )
        self.split_by = split_by
        self.split_length = split_length
        self.split_overlap = split_overlap
        self.tokenizer = tokenizer
        self._tok: Any = None

    def warm_up(self) -> None:
        """Load the tokenizer for ``token`` mode."""
        if self.split_by == "token" and self._tok is None:
            from ragkit.models.hf import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer)

    def _spans(self, text: str) -> list[Span]:
        if self.split_by == "word":
            units = word_spans(text)
            sizes = [1] * len(units)
        elif self.split_by == "sentence":
            units, sizes = [], []
            for a, b in sentence_spans(text):
                words = word_spans(text, a, b)
                if len(words) <= self.split_length:
                    units.append((a, b))
                    sizes.append(max(1, len(words)))
                else:  # a sentence longer than the window is cut at word boundaries
                    units.extend(words)
                    sizes.extend([1] * len(words))
        else:
            self.warm_up()
            enc = self._tok(text, return_offsets_mapping=True, add_special_tokens=False)
            units = [tuple(o) for o in enc["offset_mapping"] if o[1] > o[0]]
            sizes = [1] * len(units)
        return window_spans(units, sizes, self.split_length, self.split_overlap)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Split every document; chunk ids are derived from source, position and text."""
        out: list[Document] = []
        for doc in documents:
            text = doc.content or ""
            source = str(doc.meta.get("source", doc.id))
            base = f"{source}#L{doc.meta['line']}" if "line" in doc.meta else source
            for idx, (start, end) in enumerate(self._spans(text)):
                content = text[start:end]
                meta = {**doc.meta, "chunk_index": idx, "start": start, "end": end}
                out.append(Document(id=chunk_id(base, idx, content), content=content, meta=meta))
        return {"documents": out}
