"""MemoRAG: a global memory of the corpus writes clues; the clues drive retrieval.

Layout: :mod:`~ragkit.memory.lm` (the narrow model interface and its adapters),
:mod:`~ragkit.memory.backend` (interface, settings, manifest, errors), :mod:`~ragkit.memory.kv`
and :mod:`~ragkit.memory.gist` (the two backends), :mod:`~ragkit.memory.loader` (the one dispatch from
a kind to its backend), :mod:`~ragkit.memory.clues` (parsing,
filtering, union), :mod:`~ragkit.memory.store` (lifecycle beside a store, per-question cache),
:mod:`~ragkit.memory.components` (Haystack components) and :mod:`~ragkit.memory.run` (one call
per ``ragkit memory`` command). Names load lazily.
"""

from __future__ import annotations

from ragkit._lazy import lazy_exports

_EXPORTS = {
    "ClueRetriever": "components",
    "MemoryRecall": "components",
    "ClueSet": "clues",
    "build_clues": "clues",
    "clue_lines": "clues",
    "union_hits": "clues",
    "CorruptMemoryError": "backend",
    "EmptyCorpusError": "backend",
    "GlobalMemoryError": "backend",
    "MemoryBackend": "backend",
    "MemoryMismatchError": "backend",
    "MemorySettings": "backend",
    "MemoryUnit": "backend",
    "NoMemoryError": "backend",
    "StaleMemoryError": "backend",
    "GistMemory": "gist",
    "KVMemory": "kv",
    "load_memory": "loader",
    "new_memory": "loader",
    "CausalMemoryLM": "lm",
    "ChatMemoryLM": "lm",
    "LlamaCppMemoryLM": "lm",
    "MemoryLM": "lm",
    "load_memory_lm": "lm",
    "MemorySpec": "store",
    "build_memory": "store",
    "cached_memory": "store",
    "drop_memory": "store",
    "memory_info": "store",
    "open_memory": "store",
    "update_memory": "store",
    "MemoryAddResult": "run",
    "add_to_memory": "run",
    "build_store_memory": "run",
    "drop_store_memory": "run",
    "store_memory_info": "run",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
