"""MemoRAG prompt roles, paraphrased from the upstream ``memorag/prompt.py`` (English only).

The memory model reads the corpus once inside ``CONTEXT_WRAP`` followed by a canned assistant
reply; every task (clue spans, surrogate questions, draft answer, key points) is then a new user
turn after that fixed prefix, so the prefix's KV state is computed once and reused.
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "CONTEXT_WRAP",
    "GIST",
    "QA",
    "SPAN",
    "SUM",
    "SUR",
]

CONTEXT_WRAP = (
    "Here is a long article. Read it carefully and remember it: questions and tasks about it "
    "will follow.\n\nArticle:\n{context}"
)
ACK = "I have read the article and will use it to answer your questions."

SPAN = (
    "You have a general understanding of the article above. To find the evidence for the "
    "question below, recall specific text spans from the article that would help locate it. "
    "Write only the clue texts, one per line, nothing else.\n\nQuestion: {question}"
)
SUR = (
    "You have a general understanding of the article above. The question below may be vague or "
    "need several facts. Write precise questions, one per line, whose answers in the article "
    "would give the evidence for it. Write only the questions, nothing else.\n\n"
    "Question: {question}"
)
QA = (
    "Answer the question below using the article above. Give only the answer, nothing else."
    "\n\nQuestion: {question}"
)
SUM = (
    "Summarize the article above as brief numbered key points, one per line. Write only the "
    "key points."
)
GIST = (
    "Compress the following text into a short note. Keep every key fact: names, dates, numbers "
    "and relations. Plain sentences, no formatting, no commentary.\n\nText:\n{text}"
)
