"""File loading: turns txt, md, html, jsonl (and pdf with the extra) into Haystack Documents.

Every failure becomes one line naming the file (and line, for jsonl) in the ``errors`` output,
so one bad file never stops the good files of the same run from being indexed. Files that could
not be loaded at all are also listed, as data, in ``failed_sources``: the indexer keeps their
earlier chunks instead of taking them for empty files.

A file that has content but yields no text (a jsonl whose every line is malformed, an HTML page
with no visible text, a PDF without a text layer) has failed to load, not become empty: only a
file whose own bytes are blank is empty, and only then are its earlier chunks removed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from haystack import Document, component

from ragkit.errors import RagkitError

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES | PDF_SUFFIXES


logger = logging.getLogger(__name__)


class LoadError(RagkitError, ValueError):
    """One file (or jsonl line) could not be loaded; the message names it."""


def is_supported(path: Path) -> bool:
    """Whether ragkit knows how to load this file type."""
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def _read_text(path: Path, raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise LoadError(f"{path}: binary file (NUL bytes), not text; skipped")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"{path}: not UTF-8 (bad byte at offset {exc.start}); convert it, e.g. "
            f"`iconv -f latin1 -t utf-8`; skipped"
        ) from None


def _html_to_text(path: Path, text: str) -> str:
    from haystack.components.converters import HTMLToDocument
    from haystack.dataclasses import ByteStream

    try:
        docs = HTMLToDocument().run(sources=[ByteStream.from_string(text)])["documents"]
    except Exception as exc:  # noqa: BLE001 - a broken extractor must not stop the run
        logger.warning("%s: main-content extraction failed (%s); using all visible text", path, exc)
        docs = []
    if docs and docs[0].content and docs[0].content.strip():
        return docs[0].content
    # trafilatura drops pages it judges to be boilerplate; fall back to all visible text
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    return soup.get_text(" ", strip=True)


def _pdf_to_text(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise LoadError(f"{path}: PDF support needs `pip install 'ragkit[pdf]'`; skipped") from None
    try:
        reader = PdfReader(str(path))
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
        raise LoadError(f"{path}: unreadable PDF ({type(exc).__name__}); skipped") from None
    if not text.strip():
        raise LoadError(
            f"{path}: no text layer in this PDF ({len(reader.pages)} pages; scanned images?); "
            "run OCR on it first (e.g. ocrmypdf); skipped"
        )
    return text


def load_file(
    path: Path, text_field: str = "text", max_bytes: int = 20 * 2**20
) -> tuple[list[Document], list[str]]:
    """Load one file into documents (several for jsonl) plus per-line error messages.

    Raises:
        LoadError: the whole file is unusable (missing, too large, binary, not UTF-8, ...).
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"{path}: unsupported file type {suffix or '(none)'}; skipped")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LoadError(f"{path}: file not found") from None
    if size > max_bytes:
        raise LoadError(
            f"{path}: {size / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit "
            "(raise indexing.max_file_mb in the profile); skipped"
        )
    if suffix in PDF_SUFFIXES:
        if size == 0:
            return [], []
        return [Document(content=_pdf_to_text(path), meta={"source": source})], []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: cannot read ({exc.strerror}); skipped") from None
    text = _read_text(path, raw)
    if not text.strip():
        return [], []  # the file itself is blank: it has no chunks now
    if suffix in HTML_SUFFIXES:
        text = _html_to_text(path, text)
        if not text.strip():
            raise LoadError(f"{path}: no visible text in this HTML page; skipped")
    if suffix in JSONL_SUFFIXES:
        docs, errors = _load_jsonl(path, text, text_field)
        if not docs:
            raise LoadError(
                f"{path}: no usable line ({len(errors)} malformed or without a string field "
                f"{text_field!r}; first: line {errors[0].removeprefix(str(path) + ':')}); is it a JSON "
                "array or another format? ragkit reads one JSON object per line"
            )
        return docs, errors
    return [Document(content=text, meta={"source": source})], []


def _load_jsonl(path: Path, text: str, text_field: str) -> tuple[list[Document], list[str]]:
    docs: list[Document] = []
    errors: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{lineno}: malformed JSON ({exc.msg}); line skipped")
            continue
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
            errors.append(f"{path}:{lineno}: no string field {text_field!r}; line skipped")
            continue
        meta = {k: v for k, v in row.items() if k != text_field and _is_basic(v)}
        meta.update({"source": str(path), "line": lineno})
        docs.append(Document(content=row[text_field], meta=meta))
    return docs, errors


def _is_basic(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


@component
class FileLoader:
    """Loads files of the supported types into Documents with ``meta.source`` set.

    ### Usage example
    ```python
    loader = FileLoader()
    result = loader.run(sources=["notes.md", "faq.jsonl"])
    result["documents"], result["errors"]
    ```
    """

    def __init__(self, text_field: str = "text", max_file_mb: float = 20.0) -> None:
        """Create a loader.

        Args:
            text_field: field holding the text in jsonl rows.
            max_file_mb: files above this size are skipped with a message.
        """
        self.text_field = text_field
        self.max_file_mb = max_file_mb

    @component.output_types(documents=list[Document], errors=list[str], failed_sources=list[str])
    def run(self, sources: list[str]) -> dict[str, list]:
        """Load ``sources``; failures go to ``errors`` and never stop the other files.

        Returns:
            ``documents``; ``errors`` (one line per problem); ``failed_sources``, the sources
            exactly as given that could not be loaded at all (a jsonl file with some bad lines
            is not failed).
        """
        documents: list[Document] = []
        errors: list[str] = []
        failed: list[str] = []
        limit = int(self.max_file_mb * 2**20)
        for src in sources:
            try:
                docs, errs = load_file(Path(src), self.text_field, limit)
            except LoadError as exc:
                errors.append(str(exc))
                failed.append(src)
                continue
            documents.extend(docs)
            errors.extend(errs)
        return {"documents": documents, "errors": errors, "failed_sources": failed}
