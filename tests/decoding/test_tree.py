"""Tree drafting: trie building, greedy tree acceptance, the tree attention mask on SmolLM2.

The model tests check the two facts losslessness rests on: a node's logits under the tree mask
equal the logits of the chain from the root to it, and after ``keep_path`` the cache equals a
fresh prefill of the accepted text. Then tree speculative output must equal target-only greedy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ragkit.decoding import Draft, ModelDrafter
from ragkit.decoding.speculative import to_numpy
from ragkit.decoding.tree import (
    NgramTreeDrafter,
    TopKTreeDrafter,
    TreeDraft,
    TreeSpeculativeDecoder,
    accept_greedy,
    tree_from_paths,
)
from ragkit.errors import InvalidParameter
from ragkit.models.kv_cache import tree_mask

MODEL = "smollm2-135m-instruct"
DOCUMENT = (
    "The Lumen River rises in the Gray Hills and flows east for 212 kilometres to the port "
    "of Saltmere. The old stone bridge at Harwick was built in 1843 by the engineer Ada "
    "Quill. The new bridge at Harwick was built in 1990 by the firm of Bell and Quill."
)
QUESTION = "Who built the old stone bridge at Harwick, and when? Answer in one sentence."
FULL = [{"role": "user", "content": f"{DOCUMENT}\n\n{QUESTION}"}]


# ---------------------------------------------------------------------- pure logic


def test_paths_merge_into_a_trie_with_shared_prefixes() -> None:
    tree = tree_from_paths([[5, 6, 7], [5, 6, 9], [8]], max_nodes=10)
    assert tree.tokens == [5, 6, 7, 9, 8]
    assert tree.parents == [-1, 0, 1, 1, -1]
    assert tree.children(-1) == {5: 0, 8: 4}
    assert tree_from_paths([[1, 2, 3], [4, 5]], max_nodes=4).tokens == [1, 2, 3, 4]


def test_a_parent_must_come_before_its_child() -> None:
    with pytest.raises(ValueError, match="node 1: parent 1"):
        TreeDraft([1, 2], [-1, 1])


def _rows(best: list[int], vocab: int = 12) -> np.ndarray:
    rows = np.zeros((len(best), vocab))
    rows[np.arange(len(best)), best] = 1.0
    return rows


def test_greedy_acceptance_follows_the_targets_argmax_down_the_tree() -> None:
    tree = tree_from_paths([[5, 6, 7], [5, 3]], max_nodes=10)  # 5 -> {6 -> 7, 3}
    # rows: after pending, after 5, after 6, after 7, after 3
    path, token = accept_greedy(tree, _rows([5, 3, 0, 0, 11]))
    assert (path, token) == ([0, 3], 11)  # 5, then the second branch 3, then the target's 11
    path, token = accept_greedy(tree, _rows([5, 6, 7, 2, 0]))
    assert (path, token) == ([0, 1, 2], 2)  # the whole chain, then a bonus token
    assert accept_greedy(tree, _rows([4, 0, 0, 0, 0])) == ([], 4)  # nothing drafted was right


def test_tree_mask_lets_each_node_see_the_cache_and_its_ancestors_only() -> None:
    mask = tree_mask([-1, 0, 0, 2], base=3, width=9)[0, 0].numpy()
    assert mask.shape == (4, 9)
    assert mask[:, :3].all() and not mask[:, 7:].any()
    assert mask[3, 3:7].tolist() == [True, False, True, True]  # node 3: 0, 2 and itself
    assert mask[1, 3:7].tolist() == [True, True, False, False]


def test_ngram_tree_merges_the_continuations_of_several_occurrences() -> None:
    drafter = NgramTreeDrafter(max_ngram=2)
    drafter.start([1, 2, 3, 4, 9, 1, 2, 5, 6, 9, 1, 2, 3, 7])
    tree = drafter.propose_tree([8, 1, 2], depth=3, width=3)
    # "1 2" was followed by "3 7 8", "5 6 9" and "3 4 9", latest first, merged on "3"
    assert tree.tokens == [3, 7, 8, 5, 6, 9, 4, 9]
    assert tree.parents == [-1, 0, 1, -1, 3, 4, 0, 6]
    drafter.start([1, 2, 3])
    assert drafter.propose_tree([42], depth=3, width=3).tokens == []  # no earlier "42"


class _Chain:
    """A chain drafter with fixed tokens and distributions (the model drafter's Draft)."""

    name = "chain"

    def start(self, target_ids) -> None: ...
    def finish(self) -> None: ...

    def propose(self, generated, gamma, temperature, rng) -> Draft:
        probs = np.array([[0.1, 0.6, 0.3, 0.0], [0.5, 0.0, 0.2, 0.3]])
        return Draft([1, 0], probs)


def test_topk_tree_adds_the_runners_up_beside_each_chain_token() -> None:
    tree = TopKTreeDrafter(_Chain()).propose_tree([], depth=2, width=2)
    # depth 1: runner-up 2 and chain token 1; depth 2 (below 1): runner-up 3 and chain token 0
    assert tree.tokens == [2, 1, 3, 0]
    assert tree.parents == [-1, -1, 1, 1]


# ---------------------------------------------------------------------- SmolLM2


def _load(kv_cache: str = "dynamic"):
    from ragkit.models.causal_lm import CausalLM

    return CausalLM.load(
        MODEL,
        device="cpu",
        cache_dir=os.environ["RAGKIT_CACHE"],
        kv_cache=kv_cache,
        max_cache_tokens=512 if kv_cache == "static" else None,
    )


@pytest.fixture(scope="module", params=["dynamic", "static"])
def target(request: pytest.FixtureRequest):
    if (os.cpu_count() or 1) <= 2:
        import torch

        torch.set_num_threads(1)
    lm = _load(request.param)
    yield lm
    lm.close()


def test_tree_logits_equal_chain_logits_and_the_kept_path_equals_a_prefill(target) -> None:
    ids = target.apply_chat_template(FULL)
    a = target.encode(" The old bridge")
    b = target.encode(" Ada Quill built")
    tree = tree_from_paths([a, b], max_nodes=16)
    assert tree.children(-1) and len(tree.children(-1)) == 2  # two real branches
    with target.inference():
        target.reset()
        target.eval_last(ids[:-1])
        base = target.kv_length
        parents = [-1, *(p + 1 for p in tree.parents)]
        rows = to_numpy(target.eval_tree([ids[-1], *tree.tokens], parents))
        path = [tree.tokens.index(t) for t in b]  # b's nodes, in order
        target.keep_path(base, [0, *(n + 1 for n in path)])
        assert target.kv_tokens == [*ids, *b]
        probe = target.encode(" in")[0]
        kept = to_numpy(target.eval_last([probe]))
        target.reset()
        chain = to_numpy(target.eval_tokens([*ids, *b, probe]))
    target.reset()
    chain = chain[len(ids) - 1 :]
    # the pending token and every node of branch b score as in the plain chain
    np.testing.assert_allclose(rows[0], chain[0], atol=2e-3, rtol=1e-3)
    for depth, node in enumerate(path, start=1):
        np.testing.assert_allclose(rows[node + 1], chain[depth], atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(kept, chain[-1], atol=2e-3, rtol=1e-3)


def test_ngram_tree_greedy_is_token_identical(target) -> None:
    ids = target.apply_chat_template(FULL)
    plain = target.generate(ids, max_new_tokens=24)
    drafter = NgramTreeDrafter([target.encode(DOCUMENT)])
    out = TreeSpeculativeDecoder(target, drafter, depth=6, width=3).generate(ids, max_new_tokens=24)
    assert len(plain.token_ids) > 10
    assert out.result.token_ids == plain.token_ids
    assert out.stats.drafted > 0 and out.stats.accepted > 0
    assert out.stats.target_calls < len(plain.token_ids)


def test_topk_tree_over_a_self_drafter_is_token_identical(target) -> None:
    ids = target.apply_chat_template(FULL)
    plain = target.generate(ids, max_new_tokens=16)
    draft_lm = _load()
    try:
        drafter = TopKTreeDrafter(ModelDrafter(draft_lm, target=target, confidence=0.0))
        out = TreeSpeculativeDecoder(target, drafter, depth=4, width=2).generate(
            ids, max_new_tokens=16
        )
    finally:
        draft_lm.close()
    assert out.result.token_ids == plain.token_ids
    assert out.stats.accepted > 0


def test_tree_decoding_refuses_sampling_and_backends_without_tree_passes(target) -> None:
    with pytest.raises(InvalidParameter, match="temperature: tree drafting verifies greedily"):
        TreeSpeculativeDecoder(target, NgramTreeDrafter()).generate("hi", temperature=0.7)
    with pytest.raises(InvalidParameter, match="depth"):
        TreeSpeculativeDecoder(target, NgramTreeDrafter(), depth=0)

    class _NoTree:
        pass

    with pytest.raises(InvalidParameter, match="_NoTree cannot verify a token tree"):
        TreeSpeculativeDecoder(_NoTree(), NgramTreeDrafter())  # type: ignore[arg-type]
