"""Drafters for :class:`~ragkit.decoding.speculative.SpeculativeDecoder`.

* :class:`ModelDrafter`: a second :class:`DecoderLM` (same vocabulary as the target) reading
  its OWN prompt, in RAPID the question over the retrieved chunks instead of the whole
  document. Its KV cache is rolled back with ``truncate`` to what it shares with the accepted
  text, never re-prefilled. Self-speculation (the target model over the short context) needs a
  second instance of the model, since each instance holds one live sequence.
* :class:`NgramDrafter`: prompt lookup. The last n-gram of the accepted text is looked up in the
  target prompt, the accepted completion and extra sources (retrieved passages, the document);
  the tokens that followed it are proposed. Nearly free, so it pays even on a CPU where
  verifying a block is not.
* :class:`FallbackDrafter`: the first drafter's draft, or the second's when the first proposes
  nothing (e.g. the model drafter's confidence was below the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragkit.decoding.speculative import (
    Draft,
    Drafter,
    check_same_vocabulary,
    target_probs,
    to_numpy,
)
from ragkit.errors import InvalidParameter
from ragkit.models.driver import DecoderLM, Prompt, common_prefix_length

__all__ = ["FallbackDrafter", "ModelDrafter", "NgramDrafter"]


class ModelDrafter:
    """A small (or the same) model drafting over its own, shorter context.

    Args:
        lm: The drafter model; a different object from the target (its own KV cache).
        prompt: The drafter's prompt (ids, chat messages or text); ``None`` drafts over the
            target's prompt. Settable per generation with :meth:`set_prompt`.
        confidence: A draft stops at the first position where the drafter's top probability
            is below this (RAPID: 0.1); 0 never stops early.
        target: When given, the vocabularies are checked (sizes, a text's tokens and a sample
            of token texts) and a mismatch is refused with an error naming both models.
    """

    def __init__(
        self,
        lm: DecoderLM,
        prompt: Prompt | None = None,
        *,
        confidence: float = 0.1,
        target: DecoderLM | None = None,
    ) -> None:
        if not 0 <= confidence < 1:
            raise InvalidParameter("confidence", f"must be in [0, 1), got {confidence!r}")
        if target is not None:
            if target is lm:
                raise InvalidParameter(
                    "lm",
                    "the drafter must be a separate model instance from the target (each holds "
                    "one KV cache); load the model twice for self-speculation",
                )
            check_same_vocabulary(target, lm)
        self.lm = lm
        self.name = f"model:{getattr(lm, 'name', type(lm).__name__)}"
        self.confidence = confidence
        self._prompt: Prompt | None = prompt
        self._prompt_ids: list[int] = []

    def set_prompt(self, prompt: Prompt | None) -> None:
        """The drafter's prompt for the next generations (``None``: the target's prompt)."""
        self._prompt = prompt

    def start(self, target_ids: Sequence[int]) -> None:
        """Encode the drafter's prompt (the target's when none was set)."""
        if self._prompt is None:
            self._prompt_ids = [int(t) for t in target_ids]
        else:
            self._prompt_ids = self.lm._prompt_ids(self._prompt)
        self._ctx = self.lm.inference()
        self._ctx.__enter__()

    def finish(self) -> None:
        """Leave the drafter's inference context and free its per-generation cache."""
        self._ctx.__exit__(None, None, None)
        self.lm._end_call()

    def propose(
        self, generated: Sequence[int], gamma: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        """Draft up to ``gamma`` tokens after the drafter prompt + ``generated``.

        Greedy (``temperature == 0``) takes the drafter's argmax; sampled mode samples from
        ``q = softmax(z / temperature)`` and returns the ``q`` rows for the acceptance test.
        """
        lm = self.lm
        context = [*self._prompt_ids, *generated]
        if len(context) + gamma > lm.context_length:  # type: ignore[attr-defined]
            return Draft([])
        keep = min(common_prefix_length(lm.kv_tokens, context), len(context) - 1)
        lm.truncate(keep)  # roll back drafted tokens the target rejected
        logits = to_numpy(lm.eval_last(context[keep:]))
        tokens: list[int] = []
        rows: list[np.ndarray] = []
        eos = lm.eos_token_ids
        for i in range(gamma):
            q = target_probs(logits, temperature if temperature > 0 else 1.0)
            # confidence = the top probability, decided BEFORE sampling: stopping on the
            # sampled token's own probability would draft from q restricted to confident
            # tokens, not from q, and sampled acceptance would no longer be lossless
            if q.max() < self.confidence:
                break
            token = int(np.argmax(q)) if temperature == 0 else int(rng.choice(len(q), p=q))
            tokens.append(token)
            rows.append(q)
            if token in eos or i == gamma - 1:
                break
            logits = to_numpy(lm.eval_last([token]))
        return Draft(tokens, np.stack(rows) if rows else None)


class _NgramIndex:
    """n-gram -> starts of the tokens that followed its latest occurrences (built incrementally).

    Each n-gram keeps its ``_KEEP`` most recent occurrences: the chain drafter continues the
    latest, the tree drafter merges several.
    """

    _KEEP = 8

    def __init__(self, min_n: int, max_n: int) -> None:
        self.min_n, self.max_n = min_n, max_n
        self.tokens: list[int] = []
        self.table: dict[tuple[int, ...], list[int]] = {}

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            j = len(self.tokens)  # index of the token being appended
            for n in range(self.min_n, self.max_n + 1):
                if j >= n:  # the n-gram ending just before j is followed by the new token
                    starts = self.table.setdefault(tuple(self.tokens[j - n : j]), [])
                    starts.append(j)
                    if len(starts) > self._KEEP:
                        del starts[0]
            self.tokens.append(int(token))

    def _copy(self, start: int, gamma: int, overlap: bool) -> list[int]:
        if not overlap:
            return self.tokens[start : start + gamma]
        # an overlapping copy (LZ77-style): a match near the end continues with the tokens it
        # is itself proposing, so a repeating pattern drafts a full block
        out: list[int] = []
        end = len(self.tokens)
        for i in range(start, start + gamma):
            out.append(self.tokens[i] if i < end else out[i - end])
        return out

    def lookup_all(
        self, tail: Sequence[int], gamma: int, overlap: bool, width: int
    ) -> list[list[int]]:
        """Continuations of the ``width`` latest occurrences of the longest matching n-gram."""
        for n in range(min(self.max_n, len(tail)), self.min_n - 1, -1):
            starts = self.table.get(tuple(tail[len(tail) - n :]))
            if starts:
                return [self._copy(s, gamma, overlap) for s in reversed(starts[-width:])]
        return []

    def lookup(self, tail: Sequence[int], gamma: int, overlap: bool) -> list[int]:
        found = self.lookup_all(tail, gamma, overlap, 1)
        return found[0] if found else []


class NgramDrafter:
    """Prompt-lookup drafting from the context and retrieved passages (no model call).

    Args:
        sources: Token-id sequences to search besides the prompt (passages, the document).
        max_ngram: Longest n-gram matched (longer matches are tried first).
        min_ngram: Shortest n-gram matched.
        search_prompt: Also search the target prompt and the accepted completion.
    """

    name = "ngram"

    def __init__(
        self,
        sources: Sequence[Sequence[int]] = (),
        *,
        max_ngram: int = 3,
        min_ngram: int = 1,
        search_prompt: bool = True,
    ) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise InvalidParameter(
                "min_ngram",
                f"need 1 <= min_ngram <= max_ngram, got min_ngram={min_ngram}, "
                f"max_ngram={max_ngram}",
            )
        self.min_n, self.max_n = min_ngram, max_ngram
        self.search_prompt = search_prompt
        self.set_sources(sources)
        self._context = _NgramIndex(min_ngram, max_ngram)
        self._prompt_len = 0

    def set_sources(self, sources: Sequence[Sequence[int]]) -> None:
        """Replace the extra sources (each indexed separately: no n-gram spans two)."""
        self._sources = []
        for source in sources:
            index = _NgramIndex(self.min_n, self.max_n)
            index.extend(source)
            self._sources.append(index)

    def start(self, target_ids: Sequence[int]) -> None:
        """Index the target prompt (searched first when ``search_prompt``)."""
        self._context = _NgramIndex(self.min_n, self.max_n)
        self._context.extend(target_ids)
        self._prompt_len = len(target_ids)

    def finish(self) -> None:
        """Nothing to free beyond the index, rebuilt on the next start."""

    def _indexes(self, generated: Sequence[int]) -> list[_NgramIndex]:
        """Bring the context index up to date with ``generated``; the indexes, in search order."""
        indexed = len(self._context.tokens) - self._prompt_len
        if indexed < len(generated):
            self._context.extend(generated[indexed:])
        return ([self._context] if self.search_prompt else []) + self._sources

    def propose(
        self, generated: Sequence[int], gamma: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        """The continuation of the latest earlier occurrence of the text's last n-gram."""
        indexes = self._indexes(generated)
        tail = self._context.tokens[-self.max_n :]
        for index in indexes:
            found = index.lookup(tail, gamma, overlap=index is self._context)
            if found:
                return Draft(found)
        return Draft([])

    def continuations(self, generated: Sequence[int], gamma: int, width: int) -> list[list[int]]:
        """Up to ``width`` distinct continuations of the text's last n-gram (tree drafting):
        the latest occurrences in the prompt and completion first, then in the sources."""
        indexes = self._indexes(generated)
        tail = self._context.tokens[-self.max_n :]
        paths: list[list[int]] = []
        for index in indexes:
            for path in index.lookup_all(tail, gamma, index is self._context, width):
                if path and path not in paths:
                    paths.append(path)
            if len(paths) >= width:
                break
        return paths[:width]


class FallbackDrafter:
    """The primary drafter's draft, or the fallback's when the primary proposes nothing."""

    def __init__(self, primary: Drafter, fallback: Drafter) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = f"{primary.name}+{fallback.name}"

    def start(self, target_ids: Sequence[int]) -> None:
        """Start both drafters."""
        self.primary.start(target_ids)
        self.fallback.start(target_ids)

    def finish(self) -> None:
        """Finish both drafters."""
        self.primary.finish()
        self.fallback.finish()

    def propose(
        self, generated: Sequence[int], gamma: int, temperature: float, rng: np.random.Generator
    ) -> Draft:
        """Primary first; the fallback only when the primary's draft is empty."""
        draft = self.primary.propose(generated, gamma, temperature, rng)
        if draft.tokens:
            return draft
        return self.fallback.propose(generated, gamma, temperature, rng)
