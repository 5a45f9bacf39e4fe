"""A ragkit pipeline as a Hayhooks ``PipelineWrapper``: REST run, OpenAI chat, MCP tool.

Hayhooks turns a wrapper's ``run_api_async`` into ``POST /<name>/run`` and an MCP tool, and its
``run_chat_completion_async`` into ``POST /v1/chat/completions`` with ``model=<name>``. The
wrapper does no pipeline work itself: it checks the request against the server's caps and hands
the question to the :class:`~ragkit.serve.engine.Engine`, which runs ragkit's own answering (the
profile, validation and citation logic stay in one place). Failures become an ``HTTPException``
carrying the CLI's one-line message (:func:`ragkit.failures.describe_failure`), never a trace.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from fastapi_openai_compat import ChatCompletion, Choice, Message
from hayhooks import BasePipelineWrapper

from ragkit.errors import InvalidInputError, clip_line
from ragkit.serve.engine import Cancelled, Engine

if TYPE_CHECKING:
    from haystack import Document

    from ragkit.answering.run import QueryResult

__all__ = ["RagkitPipelineWrapper", "failure_status", "http_failure"]

logger = logging.getLogger(__name__)

#: The longest error line sent to a client (a message may echo a user's value).
MAX_MESSAGE_CHARS = 500


def failure_status(exc: BaseException) -> tuple[int, str]:
    """HTTP status and one-line message for a failure, as the CLI would word it.

    Invalid input (CLI exit status 2) is 422, a question over the cap 413, anything else ragkit
    knows 500 with its line; an unexpected error is logged here with its trace and reaches the
    client as one line that names only its type.
    """
    from ragkit.failures import describe_failure, root_cause
    from ragkit.models.errors import ContextLengthError

    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    cause = root_cause(exc)
    known = describe_failure(exc)
    if known is not None:
        line, code = known
        if isinstance(getattr(cause, "http_status", None), int):
            status = cause.http_status  # type: ignore[attr-defined]
        elif code == 2 or isinstance(cause, ContextLengthError):
            status = 422
        else:
            status = 500
        return status, clip_line(" ".join(line.split()), MAX_MESSAGE_CHARS)
    logger.error("unexpected failure while serving a request", exc_info=exc)
    return 500, f"internal error ({type(cause).__name__}); the server log has the details"


def http_failure(exc: BaseException) -> HTTPException:
    """The :class:`HTTPException` a handler raises for ``exc`` (see :func:`failure_status`)."""
    status, line = failure_status(exc)
    return HTTPException(status_code=status, detail=line)


def question_of(messages: list[dict[str, Any]]) -> str:
    """The last user message's text: the question of a multi-turn chat.

    Earlier turns are not sent to the pipeline: a RAG pipeline answers one question from the
    store, and its prompt has no room for a conversation.

    Raises:
        InvalidInputError: No user message, or one without text.
    """
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "\n".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        if not isinstance(content, str):
            raise InvalidInputError("the last user message has no text content")
        return content
    raise InvalidInputError("the messages hold no user message; the last one is the question")


def source_of(doc: Document, rank: int) -> dict[str, Any]:
    """A passage as ``ragkit query --json`` lists it (rank, id, score, source, offsets, text)."""
    return {
        "rank": doc.meta.get("source_index", rank),
        "id": doc.id,
        "score": doc.score,
        "source": doc.meta.get("source"),
        "title": doc.meta.get("title"),
        "start": doc.meta.get("start"),
        "end": doc.meta.get("end"),
        "content": doc.content,
    }


def reply_text(result: QueryResult) -> str:
    """What a chat client shows: the answer, or the ranked passages of a retrieval pipeline.

    The no-answer cases use ``ragkit query``'s words.
    """
    if result.empty_store:
        return "no passages found: the store is empty; add files with `ragkit index PATH`"
    if result.reader_skipped:
        why = (
            "retrieval returned nothing for this question"
            if not result.ranked
            else f"none of the {len(result.ranked)} retrieved passages reached the reader"
        )
        return f"no passages found: {why}, so the reader was not asked"
    if result.answer is not None:
        return result.answer
    if not result.ranked:
        return "no passages found"
    lines = []
    for i, doc in enumerate(result.ranked, 1):
        where = doc.meta.get("title") or doc.meta.get("source")
        score = f"{doc.score:.4f}" if doc.score is not None else "-"
        snippet = " ".join((doc.content or "").split())
        lines.append(f"[{doc.meta.get('source_index', i)}] {score} {where}: {snippet}")
    return "\n".join(lines)


def _usage(result: QueryResult) -> dict[str, int] | None:
    """OpenAI's usage object from the reader's token counts (None for retrieval)."""
    usage = result.usage or {}
    if "prompt_tokens" not in usage:
        return None
    return {
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
        "total_tokens": int(usage.get("total_tokens", 0)),
    }


def _sources(result: QueryResult) -> list[dict[str, Any]]:
    docs = result.sources if result.answer is not None else result.ranked
    return [source_of(d, i + 1) for i, d in enumerate(docs)]


class RagkitPipelineWrapper(BasePipelineWrapper):
    """One served ragkit pipeline; every request goes to the shared :class:`Engine`."""

    def __init__(self, engine: Engine, name: str) -> None:
        super().__init__()
        self.engine = engine
        self.name = name
        self.pipeline = engine.pipeline(name).pipe
        self.skip_a2a = True
        # what Hayhooks' module loader sets for wrappers it loads from files
        self._is_run_api_async_implemented = True
        self._is_run_chat_completion_async_implemented = True

    def setup(self) -> None:
        """Nothing to do: the engine loaded and warmed the pipeline once, at startup."""

    async def run_api_async(self, question: str, top_k: int | None = None) -> dict[str, Any]:
        """Answer a question from the store; returns what `ragkit query --json` prints.

        Args:
            question: The question.
            top_k: How many passages retrieval hands on; default: the pipeline's.

        Returns:
            The answer (null for retrieval-only pipelines), sources and ranked passages with
            scores and character offsets, seconds, token usage and timings.
        """
        try:
            question, top_k = self.engine.check_question(question, top_k)
            future = self.engine.submit(self.name, question, top_k)
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            raise http_failure(exc) from None
        return {
            "question": question,
            "pipeline": self.name,
            **result.as_dict(),
            "warnings": result.warnings,
        }

    async def run_chat_completion_async(
        self, model: str, messages: list[dict[str, Any]], body: dict[str, Any]
    ) -> ChatCompletion | AsyncGenerator[ChatCompletion, None]:
        """OpenAI chat: the last user message is the question; ``top_k`` may ride in the body.

        Streaming sends the answer token by token, then one last chunk with ``sources`` (and
        ``usage``); a client that disconnects stops the generation at its next token.
        """
        try:
            question, top_k = self.engine.check_question(question_of(messages), body.get("top_k"))
        except Exception as exc:
            raise http_failure(exc) from None
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.get("stream"):
            return self._stream(completion_id, model, question, top_k)
        try:
            result = await asyncio.wrap_future(self.engine.submit(self.name, question, top_k))
        except Exception as exc:
            raise http_failure(exc) from None
        return ChatCompletion(
            id=completion_id,
            object="chat.completion",
            created=int(time.time()),
            model=model,
            choices=[
                Choice(
                    index=0,
                    message=Message(role="assistant", content=reply_text(result)),
                    finish_reason="stop",
                )
            ],
            usage=_usage(result),
            sources=_sources(result),
            warnings=result.warnings,
        )

    async def _stream(
        self, completion_id: str, model: str, question: str, top_k: int | None
    ) -> AsyncGenerator[ChatCompletion, None]:
        """Chunks as the reader makes them; the run stops when this generator is closed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        created = int(time.time())
        streamed = False

        def put(item: str | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (server shutting down)
                cancel.set()

        def on_chunk(chunk: Any) -> None:
            if chunk.content:
                put(chunk.content)

        def chunk(**fields: Any) -> ChatCompletion:
            delta = Message(role="assistant", content=fields.pop("content", ""))
            reason = fields.pop("finish_reason", None)
            return ChatCompletion(
                id=completion_id,
                object="chat.completion.chunk",
                created=created,
                model=model,
                choices=[Choice(index=0, delta=delta, finish_reason=reason)],
                **fields,
            )

        future = self.engine.submit(self.name, question, top_k, on_chunk, cancel)
        future.add_done_callback(lambda _: put(None))
        try:
            while (text := await queue.get()) is not None:
                streamed = True
                yield chunk(content=text)
            try:
                result = future.result()
            except Cancelled:
                return
            except Exception as exc:
                status, line = failure_status(exc)
                yield chunk(error={"message": line, "type": "ragkit_error", "code": status})
                return
            text = "" if streamed else reply_text(result)
            yield chunk(
                content=text,
                finish_reason="stop",
                usage=_usage(result),
                sources=_sources(result),
                warnings=result.warnings,
            )
        finally:
            cancel.set()  # the client went away (or the stream ended): stop generating
            future.cancel()
