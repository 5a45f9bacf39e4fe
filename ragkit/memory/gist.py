"""Gist memory (MemoRAG-Lite): the model compresses corpus chunks into gist notes; the notes are the memory.

Each file's chunks are packed into pieces of about ``gist_chunk_tokens`` tokens and compressed
by the GIST prompt (greedy, at most ``gist_tokens`` new tokens). The gists are stored as plain
text in the memory directory, so they are portable and readable; their concatenation is the
memory prefix, prefilled and saved like a KV memory (one window unless the gists themselves
overflow the context). Any chat model works, an OpenAI-compatible server included
(:class:`ragkit.memory.lm.ChatMemoryLM`), since a gist is just generated text.

``add`` gists only the new chunks, then re-reads the (short) gist prefix; ``remove_sources``
drops a file's gists. The cost is one generation per gist chunk at build time, and per question
the same tasks as the KV memory over a much shorter prefix.

With a ``gist_cache`` directory each gist is also written there as it is made, keyed by the
model's identity (weights hash), the prompt, the length limit and the chunk's text: a pooled
corpus is hours of gisting on a CPU, and an interrupted build then resumes where it stopped,
and another store or a per-question memory with the same chunk reuses its gist. Models without
a weights hash (an OpenAI-compatible server, whose model may change behind its name) are not
cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.atomic import write_bytes_atomic
from ragkit.memory import prompts
from ragkit.memory.backend import MemorySettings, MemoryUnit
from ragkit.memory.kv import WindowedMemory

if TYPE_CHECKING:
    from ragkit.memory.lm import MemoryLM

__all__ = ["GistMemory"]

logger = logging.getLogger(__name__)


class GistMemory(WindowedMemory):
    """Memory over model-written gists of the corpus (MemoRAG-Lite)."""

    kind = "gist"

    def __init__(
        self,
        lm: MemoryLM,
        settings: MemorySettings | None = None,
        *,
        progress: bool = True,
        gist_cache: Path | None = None,
    ) -> None:
        """Create an empty gist memory.

        Args:
            lm: The memory model that writes and then reads the gists.
            settings: Window size, gist chunk size and length, task lengths.
            progress: Progress bar on stderr while gisting two or more chunks.
            gist_cache: Directory of gists by content hash (see the module docstring);
                ``None`` gists every chunk (benchmarks time the real work).
        """
        super().__init__(lm, settings, progress=progress)
        self.gist_cache = gist_cache
        self.gists_reused = 0

    def _cache_path(self, text: str) -> Path | None:
        identity = self.lm.identity()
        if self.gist_cache is None or not identity.get("sha256"):
            return None
        blob = json.dumps(
            {
                "model": identity,
                "prompt": prompts.GIST,
                "gist_tokens": self.settings.gist_tokens,
                "text": text,
            },
            sort_keys=True,
        )
        key = hashlib.sha256(blob.encode()).hexdigest()
        return self.gist_cache / key[:2] / f"{key}.txt"

    def _gist(self, chunk: MemoryUnit) -> str:
        """The chunk's gist: from the cache, else generated (and cached)."""
        path = self._cache_path(chunk.text)
        if path is not None and path.is_file():
            self.gists_reused += 1
            return path.read_text(encoding="utf-8")
        gist = self.lm.complete(
            prompts.GIST.format(text=chunk.text), self.settings.gist_tokens
        ).strip()
        self.llm_calls += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, gist.encode("utf-8"))
        return gist

    def _chunks(self, units: Sequence[MemoryUnit]) -> list[MemoryUnit]:
        """Consecutive units of one source packed into gist-sized chunks."""
        budget = min(self.settings.gist_chunk_tokens, self.window_tokens)
        chunks: list[MemoryUnit] = []
        current: list[MemoryUnit] = []
        used = 0

        def flush() -> None:
            if current:
                text = "\n\n".join(u.text for u in current)
                chunks.append(MemoryUnit(f"gist:{current[0].key}", current[0].source, text))
                current.clear()

        for unit in units:
            for piece in (
                [unit]
                if self.lm.count_tokens(unit.text) <= budget
                else self._split_unit(unit, budget)
            ):
                size = self.lm.count_tokens(piece.text)
                if current and (used + size > budget or piece.source != current[0].source):
                    flush()
                    used = 0
                current.append(piece)
                used += size
        flush()
        return chunks

    def _prepare(self, units: Sequence[MemoryUnit]) -> list[MemoryUnit]:
        """Gist every chunk of ``units`` (one generation each)."""
        started = time.perf_counter()
        gists = []
        chunks = self._chunks([u for u in units if u.text.strip()])
        for chunk in self._steps(chunks, "gisting", "chunk"):
            gist = self._gist(chunk)
            if len(gist.split()) < 3:  # nothing usable: keep the text itself rather than lose it
                logger.warning("gist of %s came out empty; memorizing the chunk as is", chunk.key)
                gist = chunk.text
            gists.append(MemoryUnit(chunk.key, chunk.source, gist))
        self.build_seconds += time.perf_counter() - started
        return gists

    @property
    def gists(self) -> list[MemoryUnit]:
        """The gist notes, in corpus order."""
        return [u for w in self.windows for u in w.units]

    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Gist only the new units, then re-read the whole (short) gist prefix."""
        new = self._prepare(units)
        if new:
            self.windows = self._read(self._pack([*self.gists, *new]))
