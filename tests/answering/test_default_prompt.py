"""The default answering pipeline's prompt keeps the layout that matched a plain-RAG reference.

On HotpotQA with Qwen2.5-Coder-1.5B, one user turn (instruction, titled passages separated by
blank lines, question last) answered better than a system message asking for the answer alone
plus citations (README, Evaluation); these tests pin that layout so an edit cannot undo it unseen.
"""

from __future__ import annotations

from pathlib import Path

from haystack import Document
from haystack.dataclasses import ChatRole

from ragkit.pipeline import load_pipeline

RAG = Path(__file__).resolve().parents[2] / "pipelines" / "rag.yaml"


def render(question: str, docs: list[Document]) -> list:
    builder = load_pipeline(RAG).get_component("prompt_builder")
    return builder.run(question=question, documents=docs)["prompt"]


def test_one_user_turn_instruction_passages_question_last() -> None:
    docs = [
        Document(content="Rush\nRush is a Canadian rock band."),
        Document(content="Neil Peart\nNeil Peart was Rush's drummer."),
    ]
    (message,) = render("Which band had Neil Peart as drummer?", docs)
    assert message.role == ChatRole.USER  # the reader's own system prompt stays in place
    text = message.text
    assert text.startswith(
        "Answer the question using the passages. Reply with a short answer only."
    )
    assert (
        "\n\n[1] Rush\nRush is a Canadian rock band.\n\n"
        "[2] Neil Peart\nNeil Peart was Rush's drummer.\n\n" in text
    )
    assert text.endswith("Question: Which band had Neil Peart as drummer?")


def test_no_passages_still_asks_the_question() -> None:
    (message,) = render("Why?", [])
    assert message.text.endswith("Question: Why?") and "[1]" not in message.text
