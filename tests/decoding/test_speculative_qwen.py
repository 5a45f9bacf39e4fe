"""The natural CPU pair (slow; needs the Qwen2.5-Coder chunk wheels): Qwen2.5-Coder-1.5B target,
0.5B drafter through llama.cpp. Their vocabularies must be accepted as one, and greedy
speculative output must equal the target's own greedy output."""

from __future__ import annotations

import pytest

from ragkit.decoding import ModelDrafter, NgramDrafter, SpeculativeDecoder
from ragkit.models.errors import ModelLoadError

pytestmark = pytest.mark.slow

PROMPT = [
    {
        "role": "user",
        "content": "The bridge at Harwick was built in 1843 by the engineer Ada Quill. "
        "Who built the bridge at Harwick? Answer in one sentence.",
    }
]


@pytest.fixture(scope="module")
def qwen_pair():
    pytest.importorskip("llama_cpp")
    from ragkit.models.llamacpp import LlamaCppLM

    try:
        target = LlamaCppLM.load("qwen2.5-coder-1.5b-instruct", n_ctx=2048, n_threads=2)
        draft = LlamaCppLM.load("qwen2.5-coder-0.5b-instruct", n_ctx=2048, n_threads=2)
    except ModelLoadError as err:
        pytest.skip(f"Qwen2.5-Coder GGUFs not installed: {err}")
    yield target, draft
    target.close()
    draft.close()


@pytest.mark.parametrize("kind", ["model", "ngram"])
def test_qwen_pair_greedy_is_token_identical(qwen_pair, kind: str) -> None:
    target, draft = qwen_pair
    ids = target.apply_chat_template(PROMPT)
    plain = target.generate(ids, max_new_tokens=24)
    drafter = ModelDrafter(draft, target=target) if kind == "model" else NgramDrafter()
    out = SpeculativeDecoder(target, drafter).generate(ids, max_new_tokens=24)
    assert out.result.token_ids == plain.token_ids
    assert out.stats.accepted > 0


LONG_DOC = (
    "\n\n".join(
        f"Station {i} of the Lumen survey lies {3 * i + 2} kilometres north of the river mouth and "
        f"records a mean depth of {40 + i} metres and a salinity of {20 + i % 7} grams per litre."
        for i in range(30)
    )
    + "\n\nThe Lumen survey was led by the hydrographer Mira Olsen in the summer of 1911."
)


@pytest.mark.parametrize("kind", ["model", "ngram"])
def test_rapid_reader_on_the_qwen_pair_is_token_identical(qwen_pair, tmp_path, kind: str) -> None:
    """RAPID's shape: the 1.5B reads the whole document (prefix saved to disk), the 0.5B only the
    retrieved chunks; the greedy answer must be the 1.5B's own, first and second question."""
    from ragkit.decoding.components import RapidReader
    from ragkit.decoding.rapid import build_rapid_prompt

    target, draft = qwen_pair
    settings = {"context": {"budget_tokens": 256}, "generation_kwargs": {"max_new_tokens": 32}}
    for i, question in enumerate(
        ["Who led the Lumen survey, and when?", "How deep is station 12?"]
    ):
        target.truncate(0)
        draft.truncate(0)
        reader = RapidReader.from_models(
            target,
            draft,
            drafter="ngram" if kind == "ngram" else {"name": draft.name},
            speculation={"adaptive": False},
            cache_dir=str(tmp_path),
            **settings,
        )
        out = reader.run(question=question, document=LONG_DOC)
        assert out["trace"]["prefix_cache"]["source"] == ("computed" if i == 0 else "disk")
        assert (
            out["trace"]["rapid"]["draft_prompt_tokens"]
            < out["trace"]["rapid"]["target_prompt_tokens"] / 2
        )
        prompt = build_rapid_prompt(target, LONG_DOC, question, budget_tokens=256)
        target.truncate(0)
        plain = target.generate(prompt.target_ids, max_new_tokens=32)
        assert out["replies"][0].text == plain.text
        stats = out["replies"][0].meta["speculative"]
        assert stats["drafted"] > 0  # blocks were drafted and verified, not plain steps
        if kind == "model":
            assert stats["accepted"] > 0  # the 0.5B over the retrieved chunks agrees often
