"""Gist memory over a plain chat generator (the OpenAI-compatible path): no KV state needed."""

from __future__ import annotations

from pathlib import Path

from haystack.dataclasses import ChatMessage

from ragkit.memory.backend import MemorySettings, MemoryUnit
from ragkit.memory.gist import GistMemory
from ragkit.memory.lm import ChatMemoryLM
from ragkit.memory.loader import load_memory
from ragkit.testing.memory import task_of


class FakeChatGenerator:
    """Answers like a chat server: sees the whole conversation every call."""

    model = "fake-server-model"

    def __init__(self) -> None:
        self.seen: list[list[ChatMessage]] = []

    def run(self, messages: list[ChatMessage], generation_kwargs: dict | None = None) -> dict:
        self.seen.append(messages)
        task, arg = task_of(messages[-1].text)
        if task == "gist":
            reply = "Note: " + arg.split(".")[0]
        elif task == "span":
            memory = messages[0].text
            reply = "\n".join(line for line in memory.split("\n") if line.startswith("Note:"))
        else:
            reply = "none"
        return {"replies": [ChatMessage.from_assistant(reply)]}


def test_gist_memory_over_a_chat_server_saves_and_reloads(tmp_path: Path) -> None:
    gen = FakeChatGenerator()
    lm = ChatMemoryLM(gen)
    memory = GistMemory(lm, MemorySettings(kind="gist", gist_chunk_tokens=16))
    memory.memorize(
        [
            MemoryUnit("a", "a.txt", "The bridge opened in 1932 after six years of work on it."),
            MemoryUnit("b", "b.txt", "The tunnel under the river was dug by hand in 1890 or so."),
        ]
    )
    assert [g.text for g in memory.gists] == [
        "Note: The bridge opened in 1932 after six years of work on it",
        "Note: The tunnel under the river was dug by hand in 1890 or so",
    ]
    clues = memory.recall_clues("When did the bridge open?")
    # the server saw the gists as the memory prefix, then the task
    assert "Note: The bridge opened" in gen.seen[-2][0].text
    assert [q.text for q in clues.spans] == [g.text for g in memory.gists]
    memory.save(tmp_path / "m")
    again = load_memory(tmp_path / "m", ChatMemoryLM(FakeChatGenerator()))
    assert [q.text for q in again.recall_clues("When did the bridge open?").spans] == [
        q.text for q in clues.spans
    ]
