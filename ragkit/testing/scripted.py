"""A scripted Haystack chat generator for tests: replies by rule or from a queue, records prompts.

It is a real ``@component`` with the same ``run`` signature and reply meta (``usage``) as ragkit's
chat generators, so it drops into any pipeline or component that takes a generator, including
YAML pipelines (its init parameters are JSON-basic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk
from haystack.dataclasses.streaming_chunk import SyncStreamingCallbackT

from ragkit.errors import InvalidParameter

__all__ = ["ScriptedChatGenerator"]

_RULE_KEYS = {"contains", "reply", "replies", "error"}


class ScriptedGeneratorError(RuntimeError):
    """Raised by a rule with ``error`` (to test how callers survive a failing generator)."""


def _check_rules(rules: list[dict[str, Any]]) -> None:
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("contains"), str):
            raise InvalidParameter(where, "expected a mapping with a 'contains' string")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise InvalidParameter(
                f"{where}.{sorted(unknown)[0]}", f"unknown key; expected {_RULE_KEYS}"
            )
        if sum(k in rule for k in ("reply", "replies", "error")) != 1:
            raise InvalidParameter(where, "give exactly one of 'reply', 'replies', 'error'")


@component
class ScriptedChatGenerator:
    """Replies from rules (first match on prompt text) or a queue; records every call.

    A rule is ``{"contains": TEXT, "reply": TEXT}`` (always that reply), ``{"contains": TEXT,
    "replies": [...]}`` (one per match, in order; an exhausted rule no longer matches) or
    ``{"contains": TEXT, "error": MESSAGE}`` (raises). ``contains`` is searched in the text of all
    messages. Without a matching rule the next queued reply is used, then ``default_reply``;
    with none of these the call fails, naming the prompt, so a test never passes on a silent
    fallback. ``prompts`` holds each call's messages, ``calls`` its generation kwargs.

    ### Usage example
    ```python
    gen = ScriptedChatGenerator(rules=[{"contains": "compare", "reply": '{"status": "True"}'}],
                                replies=["first", "second"])
    gen.run([ChatMessage.from_user("hi")])["replies"][0].text  # "first"
    ```
    """

    def __init__(
        self,
        replies: list[str] | None = None,
        rules: list[dict[str, Any]] | None = None,
        default_reply: str | None = None,
        model: str = "scripted",
    ) -> None:
        """Create the generator.

        Args:
            replies: Queue of replies used in order when no rule matches.
            rules: Ordered rules (see the class docstring).
            default_reply: Reply when no rule matches and the queue is empty.
            model: Name reported in reply meta.
        """
        _check_rules(list(rules or []))
        self.replies = list(replies or [])
        self.rules = [dict(r) for r in rules or []]
        self.default_reply = default_reply
        self.model = model
        self._queue = list(self.replies)
        self._rule_queues = [list(r.get("replies", [])) for r in self.rules]
        self._respond: Callable[[list[ChatMessage]], str] | None = None
        self.prompts: list[list[ChatMessage]] = []
        self.calls: list[dict[str, Any]] = []

    @classmethod
    def from_function(
        cls, respond: Callable[[list[ChatMessage]], str], model: str = "scripted"
    ) -> ScriptedChatGenerator:
        """A generator whose reply is ``respond(messages)`` (raise inside it to simulate errors)."""
        instance = cls(model=model)
        instance._respond = respond
        return instance

    def _reply_for(self, messages: list[ChatMessage]) -> str:
        if self._respond is not None:
            return self._respond(messages)
        text = "\n".join(m.text or "" for m in messages)
        for rule, queue in zip(self.rules, self._rule_queues, strict=True):
            if rule["contains"] not in text:
                continue
            if "error" in rule:
                raise ScriptedGeneratorError(rule["error"])
            if "reply" in rule:
                return str(rule["reply"])
            if queue:
                return str(queue.pop(0))
        if self._queue:
            return self._queue.pop(0)
        if self.default_reply is not None:
            return self.default_reply
        snippet = " ".join(text.split())[-120:]
        raise ScriptedGeneratorError(f"no scripted reply left for prompt ending: {snippet!r}")

    @component.output_types(replies=list[ChatMessage])
    def run(
        self,
        messages: list[ChatMessage],
        generation_kwargs: dict[str, Any] | None = None,
        streaming_callback: SyncStreamingCallbackT | None = None,
    ) -> dict[str, list[ChatMessage]]:
        """Reply by script; usage counts whitespace-separated words as tokens.

        Args:
            messages: The conversation (recorded in ``prompts``).
            generation_kwargs: Recorded in ``calls``; ``max_tokens``/``max_new_tokens`` cut the
                reply to that many words, as a real token cap would.
            streaming_callback: Receives the reply as one chunk.

        Returns:
            ``{"replies": [ChatMessage]}`` with ``model``, ``finish_reason`` and ``usage`` meta.
        """
        self.prompts.append(list(messages))
        kwargs = dict(generation_kwargs or {})
        self.calls.append(kwargs)
        text = self._reply_for(list(messages))
        cap = kwargs.get("max_tokens", kwargs.get("max_new_tokens"))
        words = text.split(" ")
        finish = "stop"
        if isinstance(cap, int) and len(words) > cap:
            text, finish = " ".join(words[:cap]), "length"
        prompt_tokens = sum(len((m.text or "").split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        if streaming_callback is not None:
            streaming_callback(StreamingChunk(content=text, meta={"model": self.model}))
        meta = {"model": self.model, "index": 0, "finish_reason": finish, "usage": usage}
        return {"replies": [ChatMessage.from_assistant(text, meta=meta)]}
