"""The word tokenizer of the BM25 index: it lives in :mod:`ragkit.text` (every layer uses it).

This module keeps the import path the store's BM25 index, its benchmark and its tests use.
"""

from __future__ import annotations

from ragkit.text import STOPWORDS, tokenize, tokenize_many

__all__ = ["STOPWORDS", "tokenize", "tokenize_many"]
