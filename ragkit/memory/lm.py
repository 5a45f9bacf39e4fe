"""The narrow model interface the memory algorithms use, and adapters onto ragkit's model layer.

Memory code needs five things from a model: count tokens, read a context once into a reusable
state (``prefill``), answer an instruction from that state (``ask``), answer a plain prompt
(``complete``, for gist compression), and persist states. :class:`MemoryLM` is that interface;
the adapters below map it onto :class:`ragkit.models.LlamaCppLM`, :class:`ragkit.models.CausalLM`
and any Haystack chat generator (OpenAI-compatible servers: the state is the text itself). A
change in the model layer touches only this module.

The memory prompt is ``[user: CONTEXT_WRAP(context), assistant: ACK, user: instruction]``. It is
rendered with a placeholder instruction and cut where the placeholder starts, so the prefix ids
(everything before the instruction) are identical for every instruction and can be prefilled once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ragkit.memory.prompts import ACK, CONTEXT_WRAP

__all__ = [
    "CausalMemoryLM",
    "ChatMemoryLM",
    "LlamaCppMemoryLM",
    "MemoryLM",
    "MemoryState",
    "load_memory_lm",
]

_MARKER = "\u2063RAGKIT-INSTRUCTION\u2063"


@dataclass
class MemoryState:
    """A context read by the memory model: the backend's state object plus its size.

    Attributes:
        num_tokens: Tokens the context occupies (prefix of every memory prompt).
        payload: Backend state (``LlamaPrefixState``, ``PrefixCache`` or the text itself).
        prefix_ids: Token ids of the prefix (empty for text-only backends).
    """

    num_tokens: int
    payload: Any
    prefix_ids: list[int]


@runtime_checkable
class MemoryLM(Protocol):
    """What the memory backends need from a model."""

    name: str

    @property
    def context_length(self) -> int:
        """Tokens one prompt (prefix + instruction + answer) may hold."""
        ...

    def identity(self) -> dict[str, str]:
        """Backend, model name and weights hash: recorded in memory manifests."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``."""
        ...

    def prefill(self, context: str) -> MemoryState:
        """Read ``context`` once (inside the memory prompt) into a reusable state."""
        ...

    def ask(self, state: MemoryState, instruction: str, max_new_tokens: int) -> str:
        """Answer ``instruction`` from a prefilled context (the state is not changed)."""
        ...

    def ask_cold(self, context: str, instruction: str, max_new_tokens: int) -> str:
        """Answer ``instruction`` re-reading ``context`` from scratch (the baseline)."""
        ...

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        """Answer a single user message (no memory prefix)."""
        ...

    def save_state(self, state: MemoryState, directory: Path) -> None:
        """Persist a state into ``directory`` (created; must not exist)."""
        ...

    def load_state(self, directory: Path) -> MemoryState:
        """Load a state saved by :meth:`save_state`, verified against this model."""
        ...


def _messages(context: str, instruction: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": CONTEXT_WRAP.format(context=context)},
        {"role": "assistant", "content": ACK},
        {"role": "user", "content": instruction},
    ]


class _TemplateLM:
    """Shared prompt splitting for the two local backends (both have ``chat_template_text``)."""

    def __init__(self, lm: Any) -> None:
        """Wrap a loaded ``LlamaCppLM`` or ``CausalLM``: both prefill a prefix into a reusable state."""
        self.lm = lm
        self.name = str(lm.name)

    def prefill(self, context: str) -> MemoryState:
        """Read ``context`` once (inside the memory prompt) into a reusable state."""
        ids = self._prefix_ids(context)
        return MemoryState(len(ids), self.lm.prefill(ids), ids)

    def ask(self, state: MemoryState, instruction: str, max_new_tokens: int) -> str:
        """Answer ``instruction`` from a prefilled context (the state is not changed)."""
        ids = state.prefix_ids + self._suffix_ids(instruction)
        out = self.lm.generate(ids, max_new_tokens=max_new_tokens, prefix_cache=state.payload)
        return str(out.text).strip()

    def _split_text(self, context: str) -> tuple[str, str]:
        text = self.lm.chat_template_text(_messages(context, _MARKER))
        cut = text.index(_MARKER)
        return text[:cut], text[cut:]

    def _prefix_ids(self, context: str) -> list[int]:
        return list(self.lm.encode(self._split_text(context)[0]))

    def _suffix_ids(self, instruction: str) -> list[int]:
        _, suffix = self._split_text("")
        return list(self.lm.encode(suffix.replace(_MARKER, instruction)))

    @property
    def context_length(self) -> int:
        return int(self.lm.context_length)

    def count_tokens(self, text: str) -> int:
        return int(self.lm.count_tokens(text))

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        ids = self.lm.apply_chat_template([{"role": "user", "content": prompt}])
        return str(self.lm.generate(ids, max_new_tokens=max_new_tokens).text).strip()


class LlamaCppMemoryLM(_TemplateLM):
    """A :class:`ragkit.models.LlamaCppLM` as memory model (states via ``LlamaPrefixState``)."""

    def identity(self) -> dict[str, str]:
        return {"backend": "llama.cpp", "model": self.name, "sha256": self.lm.model_sha256}

    def ask_cold(self, context: str, instruction: str, max_new_tokens: int) -> str:
        ids = self._prefix_ids(context) + self._suffix_ids(instruction)
        self.lm.reset()  # llama.cpp would otherwise keep the previous call's KV cache
        return str(self.lm.generate(ids, max_new_tokens=max_new_tokens).text).strip()

    def save_state(self, state: MemoryState, directory: Path) -> None:
        state.payload.save(directory, self.lm)

    def load_state(self, directory: Path) -> MemoryState:
        from ragkit.models.llamacpp import LlamaPrefixState

        payload = LlamaPrefixState.load(directory, self.lm)
        return MemoryState(len(payload.token_ids), payload, list(payload.token_ids))


class CausalMemoryLM(_TemplateLM):
    """A :class:`ragkit.models.CausalLM` (transformers) as memory model (``PrefixCache``)."""

    def identity(self) -> dict[str, str]:
        return {
            "backend": "transformers",
            "model": self.name,
            "sha256": str(self.lm.fingerprint),
            "dtype": self.lm.dtype_name,
        }

    def ask_cold(self, context: str, instruction: str, max_new_tokens: int) -> str:
        ids = self._prefix_ids(context) + self._suffix_ids(instruction)
        return str(self.lm.generate(ids, max_new_tokens=max_new_tokens).text).strip()

    def save_state(self, state: MemoryState, directory: Path) -> None:
        state.payload.save(directory)

    def load_state(self, directory: Path) -> MemoryState:
        from ragkit.models.causal_lm import PrefixCache

        payload = PrefixCache.load(directory, self.lm)
        return MemoryState(len(payload.token_ids), payload, list(payload.token_ids))


class ChatMemoryLM:
    """Any Haystack chat generator (e.g. ``OpenAIChatGenerator`` on a vLLM server) as memory model.

    There is no KV state to keep on the client: the state is the context text, sent with every
    instruction (servers with prefix caching, such as vLLM, reuse it on their side). Tokens are
    estimated at 4 characters each unless ``count_tokens`` is given.
    """

    def __init__(
        self,
        generator: Any,
        *,
        name: str | None = None,
        context_length: int = 32768,
        count_tokens: Any = None,
    ) -> None:
        """Wrap a chat generator whose ``run(messages=...)`` returns ``{"replies": [...]}``."""
        self.generator = generator
        self.name = name or str(getattr(generator, "model", type(generator).__name__))
        self._context_length = context_length
        self._count = count_tokens

    @property
    def context_length(self) -> int:
        return self._context_length

    def identity(self) -> dict[str, str]:
        return {"backend": "chat", "model": self.name, "sha256": ""}

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return int(self._count(text))
        return -(-len(text) // 4)

    def _chat(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        from haystack.dataclasses import ChatMessage

        chat = []
        for m in messages:
            if m["role"] == "assistant":
                chat.append(ChatMessage.from_assistant(m["content"]))
            else:
                chat.append(ChatMessage.from_user(m["content"]))
        try:
            result = self.generator.run(
                messages=chat, generation_kwargs={"max_tokens": max_new_tokens}
            )
        except TypeError:
            result = self.generator.run(messages=chat)
        replies = result.get("replies") or []
        return (getattr(replies[0], "text", None) or "").strip() if replies else ""

    def prefill(self, context: str) -> MemoryState:
        return MemoryState(self.count_tokens(context), context, [])

    def ask(self, state: MemoryState, instruction: str, max_new_tokens: int) -> str:
        return self._chat(_messages(str(state.payload), instruction), max_new_tokens)

    def ask_cold(self, context: str, instruction: str, max_new_tokens: int) -> str:
        return self._chat(_messages(context, instruction), max_new_tokens)

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        return self._chat([{"role": "user", "content": prompt}], max_new_tokens)

    def save_state(self, state: MemoryState, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "context.txt").write_text(str(state.payload), encoding="utf-8")

    def load_state(self, directory: Path) -> MemoryState:
        text = (directory / "context.txt").read_text(encoding="utf-8")
        return self.prefill(text)


def load_memory_lm(
    model: str,
    model_backend: str = "llamacpp",
    n_ctx: int = 8192,
    n_threads: int | None = None,
) -> MemoryLM:
    """Load a memory model by packaged name or path on the chosen backend.

    Args:
        model: Packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-0.5b-instruct``) or path.
        model_backend: ``llamacpp`` (GGUF, fast on CPU) or ``transformers``.
        n_ctx: Context window for llama.cpp (memory window = this minus the task's room).
        n_threads: llama.cpp threads (``None``: llama.cpp's choice).

    Returns:
        The adapter over the loaded model.
    """
    started = time.perf_counter()
    if model_backend == "llamacpp":
        from ragkit.models.llamacpp import LlamaCppLM

        lm: MemoryLM = LlamaCppMemoryLM(LlamaCppLM.load(model, n_ctx=n_ctx, n_threads=n_threads))
    elif model_backend == "transformers":
        from ragkit.models.causal_lm import CausalLM

        lm = CausalMemoryLM(CausalLM.load(model, device="cpu"))
    else:
        raise ValueError(
            f"model_backend must be 'llamacpp' or 'transformers', not {model_backend!r}"
        )
    lm.load_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return lm
