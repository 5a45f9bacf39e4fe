"""Helpers over Haystack ``Document`` metadata that several layers share.

:func:`document_position` is the corpus order MemoRAG's clue union and its memory use, and the
order in which the speculative drafters read retrieved chunks; it lives here so that neither
method imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haystack import Document

__all__ = ["document_position"]


def document_position(doc: Document) -> tuple[str, int, int, str]:
    """Where a chunk sits in the corpus: (source, position, start offset, id).

    ``position`` is set on evaluation passages (their order in the question's context); indexed
    chunks carry ``source`` and ``start`` (character offset in the file).
    """
    meta = doc.meta or {}

    def num(value: Any) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0

    return (
        str(meta.get("source", "")),
        num(meta.get("position")),
        num(meta.get("start")),
        str(doc.id),
    )
