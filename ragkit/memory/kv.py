"""KV memory: the memory model reads the corpus once; its KV state per window is the memory.

A corpus that fits the model's context is one window: one prefill, one saved state, restored for
every question and never mutated. A longer corpus is cut into windows at chunk boundaries (a
single over-long chunk is split by tokens); each window is prefilled and saved separately, each
task runs once per window and the clue lines of all windows are merged and de-duplicated. The
cost per question is therefore ``windows x tasks`` short generations (2 tasks, 3 with the draft
answer), each starting from a restored state instead of re-reading its window.

``add`` memorizes new chunks into new windows: windows already built are never re-read.
``remove_sources`` rebuilds only the windows that held a removed or changed file.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.memory import prompts
from ragkit.memory.backend import (
    MEMORY_FORMAT,
    CorruptMemoryError,
    EmptyCorpusError,
    GlobalMemoryError,
    MemorySettings,
    MemoryUnit,
)
from ragkit.memory.clues import ClueSet, build_clues, clue_lines

if TYPE_CHECKING:
    from ragkit.memory.lm import MemoryLM, MemoryState

__all__ = ["BACKEND_VERSION", "KVMemory", "WindowedMemory"]

BACKEND_VERSION = 1
_UNITS = "units.json"
_SEP = "\n\n"
_HASH_LIMIT = 16 << 20


class _Window:
    """Units memorized together, and the model state after reading them."""

    def __init__(self, units: list[MemoryUnit], state: MemoryState) -> None:
        self.units = units
        self.state = state

    @property
    def text(self) -> str:
        return _SEP.join(u.text for u in self.units)


class WindowedMemory:
    """Units packed into context-sized windows, each prefilled once; tasks run per window."""

    kind = "windowed"

    def __init__(
        self, lm: MemoryLM, settings: MemorySettings | None = None, *, progress: bool = True
    ) -> None:
        """Create an empty memory over ``lm``.

        Args:
            lm: The memory model (see :mod:`ragkit.memory.lm`).
            settings: Window size, task lengths, clue filter.
            progress: Show a progress bar on stderr while reading (or gisting) two or more
                windows (chunks): a pooled corpus is minutes to hours of prefill on a CPU.
        """
        self.lm = lm
        self.progress = progress
        self.settings = settings or MemorySettings(kind=self.kind)  # type: ignore[arg-type]
        self.windows: list[_Window] = []
        self.meta: dict[str, Any] = {}
        self.build_seconds = 0.0
        self.llm_calls = 0

    # ------------------------------------------------------------------ sizing

    @property
    def window_tokens(self) -> int:
        """Tokens of corpus text one window may hold."""
        room = self.lm.context_length - self.settings.reserve_tokens - self.settings.task_tokens
        limit = self.settings.window_tokens or room
        if min(limit, room) < 64:
            raise GlobalMemoryError(
                f"the memory model's context ({self.lm.context_length} tokens) leaves no room for "
                "a memory window; load it with a larger n_ctx"
            )
        return min(limit, room)

    @property
    def num_tokens(self) -> int:
        """Prefix tokens held over all windows."""
        return sum(w.state.num_tokens for w in self.windows)

    def _split_unit(self, unit: MemoryUnit, budget: int) -> list[MemoryUnit]:
        """Cut a unit longer than a window into word-bounded pieces that fit."""
        words = unit.text.split()
        pieces: list[MemoryUnit] = []
        lo = 0
        while lo < len(words):
            # grow a piece geometrically then back off: O(log) token counts per piece
            n = min(len(words) - lo, max(1, budget // 2))
            while (
                lo + n < len(words)
                and self.lm.count_tokens(" ".join(words[lo : lo + 2 * n])) <= budget
            ):
                n = min(len(words) - lo, 2 * n)
            while n > 1 and self.lm.count_tokens(" ".join(words[lo : lo + n])) > budget:
                n = max(1, int(n * 0.8))
            text = " ".join(words[lo : lo + n])
            pieces.append(MemoryUnit(f"{unit.key}#{len(pieces)}", unit.source, text))
            lo += n
        return pieces

    def _pack(self, units: Sequence[MemoryUnit]) -> list[list[MemoryUnit]]:
        """Consecutive units grouped into windows of at most ``window_tokens`` tokens."""
        budget = self.window_tokens
        sep = self.lm.count_tokens(_SEP)
        groups: list[list[MemoryUnit]] = []
        current: list[MemoryUnit] = []
        used = 0
        for unit in units:
            n = self.lm.count_tokens(unit.text)
            pieces = [unit] if n <= budget else self._split_unit(unit, budget)
            for piece in pieces:
                size = n if piece is unit else self.lm.count_tokens(piece.text)
                if current and used + sep + size > budget:
                    groups.append(current)
                    current, used = [], 0
                current.append(piece)
                used += size + (sep if len(current) > 1 else 0)
        if current:
            groups.append(current)
        return groups

    def _steps(self, items: Sequence[Any], desc: str, unit: str) -> Any:
        """``items``, behind a progress bar when there are several and progress is on."""
        if not self.progress or len(items) < 2:
            return items
        import sys

        from tqdm import tqdm

        return tqdm(items, desc=desc, unit=unit, file=sys.stderr, leave=False)

    def _read(self, groups: list[list[MemoryUnit]]) -> list[_Window]:
        started = time.perf_counter()
        windows = [
            _Window(g, self.lm.prefill(_SEP.join(u.text for u in g)))
            for g in self._steps(groups, "memorizing", "window")
        ]
        self.build_seconds += time.perf_counter() - started
        return windows

    # ------------------------------------------------------------------ building

    def _prepare(self, units: Sequence[MemoryUnit]) -> list[MemoryUnit]:
        """What the windows hold for these corpus units (the units themselves here)."""
        return [u for u in units if u.text.strip()]

    def memorize(self, units: Sequence[MemoryUnit]) -> None:
        """Read the corpus into fresh windows (previous content is dropped)."""
        self.windows = []
        self.build_seconds = 0.0
        if not any(u.text.strip() for u in units):
            raise EmptyCorpusError(
                "the corpus is empty: nothing to memorize (index some files first)"
            )
        self.windows = self._read(self._pack(self._prepare(units)))

    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Memorize new units into new windows; existing windows are not re-read."""
        prepared = self._prepare(units)
        if prepared:
            self.windows.extend(self._read(self._pack(prepared)))

    def remove_sources(self, sources: Sequence[str]) -> None:
        """Drop these files' units; windows that held them are re-read without them."""
        gone = set(sources)
        kept: list[_Window] = []
        for window in self.windows:
            if not any(u.source in gone for u in window.units):
                kept.append(window)
                continue
            rest = [u for u in window.units if u.source not in gone]
            if rest:
                kept.extend(self._read([rest]))
        self.windows = kept

    @property
    def sources(self) -> set[str]:
        """Source files with at least one memorized unit."""
        return {u.source for w in self.windows for u in w.units}

    # ------------------------------------------------------------------ tasks

    def _require(self) -> None:
        if not self.windows:
            raise EmptyCorpusError("the memory is empty: memorize a corpus first")

    def ask_all(self, instruction: str, max_new_tokens: int | None = None) -> list[tuple[int, str]]:
        """Run one task on every window from its restored state; ``(window, output)`` pairs."""
        self._require()
        limit = max_new_tokens or self.settings.task_tokens
        out = []
        for i, window in enumerate(self.windows):
            out.append((i, self.lm.ask(window.state, instruction, limit)))
            self.llm_calls += 1
        return out

    def ask_all_cold(self, instruction: str, max_new_tokens: int | None = None) -> list[str]:
        """The same task re-reading every window from scratch (the no-memory baseline)."""
        self._require()
        limit = max_new_tokens or self.settings.task_tokens
        return [self.lm.ask_cold(w.text, instruction, limit) for w in self.windows]

    def recall_clues(self, question: str, *, draft: bool = False) -> ClueSet:
        """Clue spans + surrogate questions from every window, merged (and the draft answer)."""
        started = time.perf_counter()
        calls = self.llm_calls
        spans = self.ask_all(prompts.SPAN.format(question=question))
        surrogates = self.ask_all(prompts.SUR.format(question=question))
        answer = self.draft_answer(question) if draft else None
        clues = build_clues(question, spans, surrogates, answer, min_words=self.settings.min_words)
        clues.llm_calls = self.llm_calls - calls
        clues.seconds = time.perf_counter() - started
        return clues

    def draft_answer(self, question: str) -> str:
        """The memory's short answer; over several windows the most frequent non-empty one."""
        answers = []
        for _, text in self.ask_all(prompts.QA.format(question=question)):
            lines = clue_lines(text)
            if lines:
                answers.append(lines[0])
        if not answers:
            return ""
        counts = Counter(a.lower() for a in answers)
        best = max(counts.values())
        return next(a for a in answers if counts[a.lower()] == best)

    def key_points(self) -> list[str]:
        """Key points of each window, in corpus order, duplicates removed."""
        points: list[str] = []
        seen: set[str] = set()
        for _, text in self.ask_all(prompts.SUM, max_new_tokens=512):
            for line in clue_lines(text):
                if line.lower() not in seen:
                    seen.add(line.lower())
                    points.append(line)
        return points

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path, meta: dict[str, Any] | None = None) -> Path:
        """Write units, window states and manifest atomically (temp dir, then rename).

        Args:
            directory: Target directory (replaced as a whole if it exists).
            meta: Extra manifest fields (corpus hash, per-source hashes, store path).

        Returns:
            ``directory``.
        """
        from ragkit.models.artifact import write_verified

        self._require()
        if meta:
            self.meta.update(meta)
        units = [
            {"key": u.key, "source": u.source, "text": u.text, "window": i}
            for i, w in enumerate(self.windows)
            for u in w.units
        ]
        files: dict[str, bytes | Callable[[Path], None]] = {
            _UNITS: json.dumps(units, ensure_ascii=False).encode("utf-8")
        }
        windows = []
        for i, w in enumerate(self.windows):
            name = f"window-{i:03d}"
            files[name] = partial(self.lm.save_state, w.state)
            windows.append({"dir": name, "num_tokens": w.state.num_tokens, "units": len(w.units)})
        manifest = {
            "format": MEMORY_FORMAT,
            "kind": self.kind,
            "backend_version": BACKEND_VERSION,
            "model": self.lm.identity(),
            "settings": self.settings.model_dump(),
            "num_tokens": self.num_tokens,
            "windows": windows,
            "build_seconds": round(self.build_seconds, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.meta,
        }
        # state blobs carry their own sha256; the manifest hashes only the small files
        return write_verified(directory, files, manifest, recursive=True, hash_limit=_HASH_LIMIT)

    def _restore(self, directory: Path, manifest: dict[str, Any]) -> None:
        try:
            units = json.loads((directory / _UNITS).read_text(encoding="utf-8"))
            by_window: dict[int, list[MemoryUnit]] = {}
            for u in units:
                by_window.setdefault(int(u["window"]), []).append(
                    MemoryUnit(str(u["key"]), str(u["source"]), str(u["text"]))
                )
            windows = []
            for i, entry in enumerate(manifest["windows"]):
                state = self.lm.load_state(directory / entry["dir"])
                if state.num_tokens != entry["num_tokens"]:
                    raise ValueError(
                        f"window {i} holds {state.num_tokens} tokens, not {entry['num_tokens']}"
                    )
                windows.append(_Window(by_window.get(i, []), state))
        except GlobalMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable part means the memory is unusable
            raise CorruptMemoryError(
                f"memory at {directory} is corrupt ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); not loaded"
            ) from None
        self.windows = windows
        self.meta = {
            k: manifest[k] for k in ("corpus_hash", "sources", "store", "spec") if k in manifest
        }
        self.build_seconds = float(manifest.get("build_seconds") or 0.0)


class KVMemory(WindowedMemory):
    """MemoRAG's memory: the model's KV state over the raw corpus, one state per window."""

    kind = "kv"
