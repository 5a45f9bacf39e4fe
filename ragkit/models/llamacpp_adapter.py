"""The one place ragkit touches llama-cpp-python below its documented ``Llama`` methods.

ragkit's llama.cpp backend needs a few things ``Llama`` has no method for: rolling the KV cache
back to ``n`` tokens (speculative decoding, prefix reuse), logits of every position of a batch
without allocating ``n_ctx x vocab`` scores, the raw context state without ``save_state``'s
score copy, the vocabulary's end-of-generation set and token texts. Where llama.cpp's public C
API (bound 1:1 in ``llama_cpp``: ``llama_memory_seq_rm``, ``llama_batch_init``,
``llama_decode``, ``llama_get_logits``, ``llama_state_get_data``...) has it, that is used, through
``Llama``'s public ``ctx``/``model`` handles. What remains is ``Llama``'s own bookkeeping of
the evaluated tokens (``n_tokens``, ``input_ids``: public attributes without setter methods, and
the private ``_requires_eval`` flag), which must follow any KV change ragkit makes.

That contract is specific to a llama-cpp-python release, so it is pinned: :data:`PINNED_VERSION`
is the version it was written and tested against (``tests/models/test_llamacpp_adapter.py``
checks it and each behaviour), and :func:`check_contract` refuses a ``Llama`` object that lacks
any attribute relied on, naming it, instead of corrupting a generation later.
"""

from __future__ import annotations

import ctypes
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragkit.models.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

__all__ = ["PINNED_VERSION", "LlamaAdapter", "check_contract"]

PINNED_VERSION = "0.3.36"
"""llama-cpp-python release this adapter was written and tested against (``pyproject`` pin)."""

_REQUIRED_ATTRIBUTES = ("n_tokens", "input_ids", "n_batch", "ctx", "model", "eval", "reset")
_REQUIRED_FUNCTIONS = (
    "llama_batch_init",
    "llama_batch_free",
    "llama_decode",
    "llama_get_logits",
    "llama_get_logits_ith",
    "llama_get_memory",
    "llama_memory_seq_rm",
    "llama_model_get_vocab",
    "llama_model_n_ctx_train",
    "llama_model_is_recurrent",
    "llama_model_is_hybrid",
    "llama_state_get_size",
    "llama_state_get_data",
    "llama_token_to_piece",
    "llama_vocab_get_text",
    "llama_vocab_is_eog",
    "LlamaState",
    "LLAMA_DEFAULT_SEED",
)


def check_contract(llama_cpp: Any, llm: Any) -> None:
    """Refuse a llama-cpp-python whose API differs from what the adapter relies on.

    Warns (once per model) when the version is not :data:`PINNED_VERSION`; raises when an
    attribute or function the adapter uses is missing.

    Raises:
        ModelLoadError: The missing names, and the pinned version to install.
    """
    missing = [f"llama_cpp.{n}" for n in _REQUIRED_FUNCTIONS if not hasattr(llama_cpp, n)]
    missing += [f"Llama.{n}" for n in _REQUIRED_ATTRIBUTES if not hasattr(llm, n)]
    version = str(getattr(llama_cpp, "__version__", "unknown"))
    if missing:
        raise ModelLoadError(
            f"llama-cpp-python {version} lacks {', '.join(missing)}, which ragkit's llama.cpp "
            f"backend uses; install the pinned llama-cpp-python=={PINNED_VERSION}"
        )
    if version != PINNED_VERSION:
        warnings.warn(
            f"llama-cpp-python {version} is not the pinned {PINNED_VERSION}; ragkit's llama.cpp "
            "adapter may misbehave (run tests/models/test_llamacpp_adapter.py)",
            RuntimeWarning,
            stacklevel=3,
        )


class LlamaAdapter:
    """KV rollback, batched logits, state bytes and vocabulary queries for one ``Llama``."""

    def __init__(self, llama_cpp: Any, llm: Llama) -> None:
        check_contract(llama_cpp, llm)
        self.lib = llama_cpp
        self.llm = llm
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_vocab = int(llm.n_vocab())
        self.can_truncate = not (
            llama_cpp.llama_model_is_recurrent(llm.model)
            or llama_cpp.llama_model_is_hybrid(llm.model)
        )
        self._piece_buf = (ctypes.c_char * 64)()
        self._batch: Any = None
        self._batch_size = 0

    def close(self) -> None:
        """Free the batch buffer (before the ``Llama`` is closed)."""
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self._batch = None

    # ------------------------------------------------------------------ vocabulary

    def n_ctx_train(self) -> int:
        """The context the model was trained with."""
        return int(self.lib.llama_model_n_ctx_train(self.llm.model))

    def eog_tokens(self) -> frozenset[int]:
        """End-of-generation token ids (EOS, ``<|im_end|>``, ``<|endoftext|>``...)."""
        is_eog = self.lib.llama_vocab_is_eog
        return frozenset(t for t in range(self.n_vocab) if is_eog(self.vocab, t))

    def token_text(self, token: int) -> str:
        """A token's text as stored in the vocabulary (special tokens included)."""
        if token < 0:
            return ""
        raw = self.lib.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def piece(self, token: int) -> bytes:
        """Bytes of one token, special tokens rendered empty."""
        buf = self._piece_buf
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = (ctypes.c_char * -n)()
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return bytes(buf[:n])

    # ------------------------------------------------------------------ the live sequence

    @property
    def n_tokens(self) -> int:
        """Tokens held in the KV cache."""
        return int(self.llm.n_tokens)

    def tokens(self) -> list[int]:
        """The tokens held in the KV cache, in order."""
        return self.llm.input_ids[: self.llm.n_tokens].tolist()

    def truncate(self, n: int) -> None:
        """Drop KV cells from position ``n`` on (``llama_memory_seq_rm``) and tell ``Llama``.

        Recurrent/hybrid models cannot drop a suffix: they are reset to empty instead.
        """
        llm = self.llm
        if n >= llm.n_tokens:
            return
        if n <= 0 or not self.can_truncate:
            llm.reset()
            return
        memory = self.lib.llama_get_memory(llm.ctx)
        if not self.lib.llama_memory_seq_rm(memory, 0, n, -1):
            llm.reset()
            return
        llm.n_tokens = n
        llm._requires_eval = True  # noqa: SLF001 - the held logits are stale (pinned contract)

    def eval_last(self, ids: Sequence[int]) -> np.ndarray:
        """``Llama.eval`` the tokens; a copy of the last position's logits."""
        import numpy as np

        self.llm.eval(list(ids))
        ptr = self.lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def eval_tokens(self, ids: Sequence[int]) -> np.ndarray:
        """Decode ``ids`` with logits at every position; ``[len(ids), vocab]`` float32.

        ``Llama.eval`` keeps logits of every position only when the model was built with
        ``logits_all`` (an ``n_ctx x vocab`` array); this decodes its own batches instead.
        """
        import numpy as np

        llm, lib = self.llm, self.lib
        ids = [int(t) for t in ids]
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
        lib.llama_memory_seq_rm(lib.llama_get_memory(llm.ctx), 0, llm.n_tokens, -1)
        step = max(1, int(llm.n_batch))
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            batch = self._batch_for(len(chunk))
            n_past = int(llm.n_tokens)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            batch.n_tokens = len(chunk)
            status = lib.llama_decode(llm.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode failed with status {status}")
            ptr = lib.llama_get_logits(llm.ctx)
            out[start : start + len(chunk)] = np.ctypeslib.as_array(
                ptr, shape=(len(chunk), self.n_vocab)
            )
            llm.input_ids[n_past : n_past + len(chunk)] = chunk
            llm.n_tokens = n_past + len(chunk)
        return out

    def _batch_for(self, size: int) -> Any:
        if self._batch is None or size > self._batch_size:
            self.close()
            self._batch_size = max(size, int(self.llm.n_batch))
            self._batch = self.lib.llama_batch_init(self._batch_size, 0, 1)
        return self._batch

    # ------------------------------------------------------------------ state

    def state_bytes(self) -> bytes:
        """The context state (``llama_state_get_data``), without ``save_state``'s score copy."""
        ctx = self.llm.ctx
        size = int(self.lib.llama_state_get_size(ctx))
        buf = (ctypes.c_uint8 * size)()
        written = int(self.lib.llama_state_get_data(ctx, buf, size))
        if written > size:
            raise RuntimeError("llama.cpp failed to copy its state")
        return bytes(memoryview(buf)[:written])

    def load_state(self, token_ids: Sequence[int], state: bytes) -> None:
        """Restore a state from :meth:`state_bytes` that holds ``token_ids`` (``Llama.load_state``)."""
        import numpy as np

        llm = self.llm
        n = len(token_ids)
        input_ids = np.zeros((llm.n_ctx(),), dtype=np.intc)
        input_ids[:n] = token_ids
        llm.load_state(
            self.lib.LlamaState(
                input_ids=input_ids,
                scores=np.zeros((1, self.n_vocab), dtype=np.single),  # broadcast; never read
                n_tokens=n,
                llama_state=state,
                llama_state_size=len(state),
                seed=self.lib.LLAMA_DEFAULT_SEED,
            )
        )
