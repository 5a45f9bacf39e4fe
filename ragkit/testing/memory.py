"""A scripted memory model for tests of memory code (no weights, deterministic, call log).

:class:`ScriptedMemoryLM` implements :class:`ragkit.memory.lm.MemoryLM`: tokens are words, a
"state" is the context text, and every task's output comes from a script function given the
task name (``span``, ``surrogate``, ``draft``, ``summary``, ``gist``), the context the state holds
and the question. Every prefill and generation is logged, so tests can assert what was re-read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.memory import prompts
from ragkit.memory.lm import MemoryState

__all__ = ["ScriptedMemoryLM", "task_of"]

Script = Callable[[str, str, str], str]

_TASKS = {
    "span": prompts.SPAN,
    "surrogate": prompts.SUR,
    "draft": prompts.QA,
    "summary": prompts.SUM,
    "gist": prompts.GIST,
}


def task_of(instruction: str) -> tuple[str, str]:
    """Which memory prompt ``instruction`` was made from, and its question (or text)."""
    for task, template in _TASKS.items():
        head, _, tail = template.partition("{")
        if instruction.startswith(head):
            if "{" not in template:
                return task, ""
            end = tail.partition("}")[2]
            body = instruction[len(head) :]
            return task, body[: len(body) - len(end)] if end else body
    raise ValueError(f"not a memory prompt: {instruction[:60]!r}")


@dataclass
class ScriptedMemoryLM:
    """A fake memory model whose outputs a test scripts.

    Attributes:
        script: ``script(task, context, question) -> output``; for ``gist`` the context is the
            text to compress and the question is empty.
        name: Model name (part of the identity recorded in manifests).
        context_tokens: Context length in words.
        prefills: Contexts prefilled, in order.
        calls: ``(task, question)`` per generation.
    """

    script: Script
    name: str = "scripted-memory"
    context_tokens: int = 4096
    prefills: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def context_length(self) -> int:
        return self.context_tokens

    def identity(self) -> dict[str, str]:
        return {
            "backend": "scripted",
            "model": self.name,
            "sha256": hashlib.sha256(self.name.encode()).hexdigest(),
        }

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, context: str) -> MemoryState:
        self.prefills.append(context)
        return MemoryState(self.count_tokens(context), context, [])

    def _run(self, context: str, instruction: str) -> str:
        task, question = task_of(instruction)
        self.calls.append((task, question))
        if task == "gist":
            return self.script(task, question, "")
        return self.script(task, context, question)

    def ask(self, state: MemoryState, instruction: str, max_new_tokens: int) -> str:
        return self._run(str(state.payload), instruction)

    def ask_cold(self, context: str, instruction: str, max_new_tokens: int) -> str:
        self.prefills.append(context)
        return self._run(context, instruction)

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        return self._run("", prompt)

    def save_state(self, state: MemoryState, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "state.json").write_text(
            json.dumps({"model": self.name, "context": state.payload}), encoding="utf-8"
        )

    def load_state(self, directory: Path) -> MemoryState:
        data = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        if data["model"] != self.name:
            raise ValueError(f"state of {data['model']!r}")
        return MemoryState(self.count_tokens(data["context"]), data["context"], [])
