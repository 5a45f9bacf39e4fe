"""A bigram "model" over a tiny vocabulary implementing the DecoderLM token protocol in numpy.

Its next-token logits are ``table[previous token]``, so exact sequence probabilities are
computable by hand, and it counts the calls and tokens it evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.models.driver import DecoderLM, NumpySampler


class BigramLM(DecoderLM):
    """Next-token logits depend only on the previous token; no EOS unless ``eos`` is given."""

    def __init__(self, table: np.ndarray, name: str = "bigram", eos: int | None = None) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.name = name
        self.eos_token_ids = frozenset() if eos is None else frozenset({eos})
        self.cache: list[int] = []
        self.calls = 0
        self.evaluated = 0

    @property
    def vocab_size(self) -> int:
        return self.table.shape[1]

    @property
    def context_length(self) -> int:
        return 4096

    def encode(self, text: str) -> list[int]:
        return [int(c) if c.isdigit() else ord(c) % self.vocab_size for c in text]

    def _encode_text(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(str(t) for t in token_ids)

    def _render_chat(self, messages: list[dict[str, str]]) -> str | None:
        return None

    @property
    def kv_tokens(self) -> list[int]:
        return list(self.cache)

    def truncate(self, n: int) -> None:
        del self.cache[max(0, n) :]

    def eval_tokens(self, ids: Sequence[int]) -> np.ndarray:
        self.cache.extend(int(t) for t in ids)
        self.calls += 1
        self.evaluated += len(ids)
        return self.table[list(ids)].copy()

    def eval_last(self, ids: Sequence[int]) -> np.ndarray:
        return self.eval_tokens(ids)[-1]

    def make_sampler(self, temperature: float, top_p: float, seed: int | None) -> Any:
        return NumpySampler(temperature, top_p, seed)

    def check_prefix_owner(self, prefix: Any) -> None:
        return None

    def _load_prefix(self, prefix: Any, n: int) -> None:
        self.cache = list(prefix.token_ids[:n])

    def probs(self, previous: int) -> np.ndarray:
        row = np.exp(self.table[previous] - self.table[previous].max())
        return row / row.sum()
