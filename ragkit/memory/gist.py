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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ragkit.memory import prompts
from ragkit.memory.backend import MemoryUnit
from ragkit.memory.kv import WindowedMemory

__all__ = ["GistMemory"]

logger = logging.getLogger(__name__)


class GistMemory(WindowedMemory):
    """Memory over model-written gists of the corpus (MemoRAG-Lite)."""

    kind = "gist"

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
            gist = self.lm.complete(
                prompts.GIST.format(text=chunk.text), self.settings.gist_tokens
            ).strip()
            self.llm_calls += 1
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
