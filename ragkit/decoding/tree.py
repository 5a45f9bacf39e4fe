"""Tree drafting (LongSpec-style): verify a whole tree of drafts in one target pass.

A chain draft is wasted from its first wrong token on. A tree keeps alternatives: at each depth
the drafter's next most likely tokens (:class:`TopKTreeDrafter`), or the continuations of every
earlier occurrence of the text's last n-gram merged into a trie (:class:`NgramTreeDrafter`).
The target reads the pending token and all tree nodes in one forward pass under a tree
attention mask: each node attends to the accepted text and to its own ancestors only, at the
position its depth gives, so its logits are exactly those of the chain from the root to it.

Verification is greedy and lossless: from the root, follow the child whose token is the
target's argmax; where no child matches, emit the argmax (a correction, or a bonus token after
a leaf). The emitted tokens are therefore the target's own greedy tokens, as with chain drafts.
The target then keeps only the accepted path in its KV cache (``keep_path``), its other nodes
are dropped. Sampled tree verification (SpecInfer's multi-draft rejection sampling) is not
implemented: the decoder refuses ``temperature > 0``.

The target backend needs ``eval_tree(ids, parents)`` and ``keep_path(base, nodes)``: the
transformers backend (:class:`~ragkit.models.causal_lm.CausalLM`) has them; llama.cpp's public
API would need one sequence id per branch and is not supported (refused by name).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ragkit.decoding.drafters import NgramDrafter
from ragkit.decoding.speculative import (
    Drafter,
    SpeculativeResult,
    SpeculativeStats,
    speculate,
    to_numpy,
)
from ragkit.errors import InvalidParameter
from ragkit.models.driver import DecoderLM, Decoding, Prompt

__all__ = [
    "NgramTreeDrafter",
    "TopKTreeDrafter",
    "TreeDraft",
    "TreeDrafter",
    "TreeSpeculativeDecoder",
    "accept_greedy",
    "tree_from_paths",
]


@dataclass
class TreeDraft:
    """Drafted tokens arranged as a tree below the pending token.

    Attributes:
        tokens: Node tokens, parents before children.
        parents: For each node, the index of its parent in ``tokens``, or ``-1`` for a child
            of the root (the pending token, the last one the target has not read yet).
    """

    tokens: list[int]
    parents: list[int]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.parents):
            raise ValueError("a tree draft needs one parent per token")
        for i, parent in enumerate(self.parents):
            if not -1 <= parent < i:
                raise ValueError(f"node {i}: parent {parent} must come before it (or be -1)")

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> dict[int, int]:
        """Token -> node index of ``node``'s children (``-1``: the root's)."""
        return {
            t: i
            for i, (t, p) in enumerate(zip(self.tokens, self.parents, strict=True))
            if p == node
        }


def tree_from_paths(paths: Sequence[Sequence[int]], max_nodes: int) -> TreeDraft:
    """Merge token paths into a trie of at most ``max_nodes`` nodes, earlier paths first."""
    tokens: list[int] = []
    parents: list[int] = []
    index: dict[tuple[int, int], int] = {}
    for path in paths:
        node = -1
        for token in path:
            key = (node, int(token))
            if key not in index:
                if len(tokens) >= max_nodes:
                    break
                index[key] = len(tokens)
                tokens.append(int(token))
                parents.append(node)
            node = index[key]
    return TreeDraft(tokens, parents)


def accept_greedy(tree: TreeDraft, rows: np.ndarray) -> tuple[list[int], int]:
    """The accepted path (node indices) and the token the target emits after it.

    ``rows[0]`` holds the target's logits after the pending token, ``rows[1 + i]`` those after
    node ``i`` (read with the tree mask, i.e. after the path from the root to ``i``).
    """
    path: list[int] = []
    node = -1
    while True:
        best = int(np.argmax(rows[node + 1]))
        child = tree.children(node).get(best)
        if child is None:
            return path, best
        path.append(child)
        node = child


class TreeDrafter(Protocol):
    """Proposes a tree of continuations of the accepted text."""

    name: str

    def start(self, target_ids: Sequence[int]) -> None:
        """Begin a generation whose target prompt is ``target_ids``."""

    def propose_tree(self, generated: Sequence[int], depth: int, width: int) -> TreeDraft:
        """A tree at most ``depth`` deep with at most ``width`` alternatives per level."""
        ...

    def finish(self) -> None:
        """The generation is over."""


class NgramTreeDrafter:
    """Prompt lookup as a tree: the continuations of the ``width`` latest occurrences of the
    text's last n-gram (in the prompt and completion, then in the passages), merged.

    Args:
        sources: Token-id sequences to search besides the prompt (passages, the document).
        max_ngram: Longest n-gram matched (the longest n with any occurrence is used).
        min_ngram: Shortest n-gram matched.
    """

    name = "ngram-tree"

    def __init__(
        self, sources: Sequence[Sequence[int]] = (), *, max_ngram: int = 3, min_ngram: int = 1
    ) -> None:
        # the chain drafter's settings checks and token handling, reused
        self._chain = NgramDrafter(sources, max_ngram=max_ngram, min_ngram=min_ngram)

    def start(self, target_ids: Sequence[int]) -> None:
        """Index the target prompt."""
        self._chain.start(target_ids)

    def finish(self) -> None:
        """Nothing to free."""

    def propose_tree(self, generated: Sequence[int], depth: int, width: int) -> TreeDraft:
        """Up to ``width`` continuations of ``depth`` tokens, most recent occurrence first."""
        paths = self._chain.continuations(generated, depth, width)
        return tree_from_paths(paths, max_nodes=depth * width)


class TopKTreeDrafter:
    """A model drafter's greedy chain plus, at each depth, its next most likely tokens.

    The chain comes from ``drafter`` (a :class:`~ragkit.decoding.drafters.ModelDrafter`,
    whose draft carries the drafter's distribution at each position); the ``width - 1``
    runners-up at each depth become leaves beside the chain token, so a wrong chain token can
    still be replaced by the target's choice among them at no extra drafter cost.
    """

    def __init__(self, drafter: Drafter) -> None:
        self.drafter = drafter
        self.name = f"{drafter.name}-tree"
        self._rng = np.random.default_rng(0)

    def start(self, target_ids: Sequence[int]) -> None:
        """Start the chain drafter."""
        self.drafter.start(target_ids)

    def finish(self) -> None:
        """Finish the chain drafter."""
        self.drafter.finish()

    def propose_tree(self, generated: Sequence[int], depth: int, width: int) -> TreeDraft:
        """The greedy chain with ``width - 1`` runner-up leaves at each of its depths."""
        chain = self.drafter.propose(generated, depth, 0.0, self._rng)
        tokens: list[int] = []
        parents: list[int] = []
        node = -1
        for i, token in enumerate(chain.tokens):
            if chain.probs is not None and width > 1:
                ranked = [int(t) for t in np.argsort(-np.asarray(chain.probs[i]))[:width]]
                for alt in [t for t in ranked if t != int(token)][: width - 1]:
                    tokens.append(alt)
                    parents.append(node)
            tokens.append(int(token))
            parents.append(node)
            node = len(tokens) - 1
        return TreeDraft(tokens, parents)


class TreeSpeculativeDecoder:
    """Greedy speculative generation with tree drafts (output identical to target-only greedy).

    Args:
        target: The verifying model; needs ``eval_tree`` and ``keep_path`` (transformers).
        drafter: A :class:`TreeDrafter`.
        depth: Deepest path drafted per step (like gamma for chains).
        width: Alternatives per level (the tree has at most ``depth * width`` nodes).
        clock: Time source.

    Raises:
        InvalidParameter: ``depth`` or ``width`` below 1, or a target without tree support.
    """

    def __init__(
        self,
        target: DecoderLM,
        drafter: TreeDrafter,
        *,
        depth: int = 6,
        width: int = 3,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if depth < 1:
            raise InvalidParameter("depth", f"must be >= 1, got {depth}")
        if width < 1:
            raise InvalidParameter("width", f"must be >= 1, got {width}")
        if not hasattr(target, "eval_tree"):
            raise InvalidParameter(
                "target",
                f"{type(target).__name__} cannot verify a token tree in one pass; tree "
                "drafting needs the transformers backend (CausalLM)",
            )
        self.target, self.drafter = target, drafter
        self.depth, self.width, self.clock = depth, width, clock
        self.policy = None  # trees are verified at a fixed size (no adaptive policy)

    def generate(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        prefix_cache: Any | None = None,
    ) -> SpeculativeResult:
        """Generate greedily, drafting and verifying a tree per target call.

        Same arguments as :meth:`~ragkit.decoding.SpeculativeDecoder.generate`; ``top_p`` and
        ``seed`` only matter for sampling, which tree verification does not do.

        Raises:
            InvalidParameter: ``temperature`` other than 0 (tree verification is greedy).
        """
        if temperature != 0:
            raise InvalidParameter(
                "temperature", "tree drafting verifies greedily; use temperature 0"
            )
        return speculate(
            self.target,
            self.drafter,
            lambda pending, decoding, stats: self._loop(pending[0], decoding, stats),
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            top_p=1.0,
            seed=None,
            stop=stop,
            on_token=on_token,
            prefix_cache=prefix_cache,
            clock=self.clock,
        )

    def _loop(self, pending: int, decoding: Decoding, stats: SpeculativeStats) -> None:
        """Invariant: the target cache holds everything emitted except ``pending``."""
        target: Any = self.target
        while not decoding.done:
            depth = max(0, min(self.depth, decoding.limit - len(decoding.token_ids) - 1))
            tree = TreeDraft([], [])
            if depth > 0:
                t0 = self.clock()
                tree = self.drafter.propose_tree(decoding.token_ids, depth, self.width)
                stats.draft_seconds += self.clock() - t0
            base = target.kv_length
            t0 = self.clock()
            # the pending token is node 0 of the pass; tree nodes shift by one
            parents = [-1, *(p + 1 for p in tree.parents)]
            rows = to_numpy(target.eval_tree([pending, *tree.tokens], parents))
            path, token = accept_greedy(tree, rows)
            target.keep_path(base, [0, *(n + 1 for n in path)])
            stats.target_seconds += self.clock() - t0
            stats.target_calls += 1
            stats.drafted += len(tree)
            stats.accepted += len(path)
            stats.bonus += int(bool(path) and not tree.children(path[-1]))
            emitted = 0
            for t in [*(tree.tokens[n] for n in path), token]:
                emitted += 1
                if decoding.add(t):
                    break
            stats.emitted += emitted
            pending = token
