"""Haystack components on the real packaged models (and a tiny random cross-encoder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Document, Pipeline
from haystack.core.serialization import component_to_dict
from haystack.dataclasses import ChatMessage, StreamingChunk

from ragkit.models.components import (
    CrossEncoderScorer,
    EmbeddingSimilarityScorer,
    LLMRelevanceScorer,
    LocalChatGenerator,
)
from ragkit.models.errors import ModelLoadError

QUESTION = "What is the capital of France?"
RELEVANT = "Paris is the capital and largest city of France."
IRRELEVANT = "Bananas are a good source of potassium and fibre."


def _docs() -> list[Document]:
    return [Document(content=IRRELEVANT), Document(content=RELEVANT)]


def test_local_chat_generator_in_pipeline(model_cache_dir: Path) -> None:
    generator = LocalChatGenerator(
        device="cpu", generation_kwargs={"max_new_tokens": 12}, cache_dir=str(model_cache_dir)
    )
    pipeline = Pipeline()
    pipeline.add_component("llm", generator)
    restored = Pipeline.loads(pipeline.dumps())  # default YAML serialization round-trips
    assert restored.get_component("llm").generation_kwargs == {"max_new_tokens": 12}

    chunks: list[StreamingChunk] = []
    out = pipeline.run(
        {
            "llm": {
                "messages": [ChatMessage.from_user(QUESTION)],
                "streaming_callback": chunks.append,
            }
        }
    )
    reply = out["llm"]["replies"][0]
    assert reply.text
    meta = reply.meta
    assert meta["model"] == "smollm2-135m-instruct"
    assert meta["finish_reason"] in {"stop", "length"}
    assert 0 < meta["usage"]["completion_tokens"] <= 12
    assert (
        meta["usage"]["total_tokens"]
        == meta["usage"]["prompt_tokens"] + meta["usage"]["completion_tokens"]
    )
    assert meta["timings"]["first_token_seconds"] <= meta["timings"]["seconds"]
    assert "".join(c.content for c in chunks) == reply.text
    assert chunks[0].start and chunks[-1].finish_reason == meta["finish_reason"]
    assert chunks[0].component_info is not None and chunks[0].component_info.name == "llm"
    generator.close()


def test_local_chat_generator_rejects_unknown_kwargs() -> None:
    with pytest.raises(ValueError, match="unknown generation kwarg 'beams'"):
        LocalChatGenerator(generation_kwargs={"beams": 3})


def test_llm_relevance_scorer_ranks_relevant_first(lm) -> None:
    scorer = LLMRelevanceScorer.from_model(lm, batch_size=2)
    docs = scorer.run(query=QUESTION, documents=_docs())["documents"]
    assert docs[0].content == RELEVANT
    assert docs[0].meta["relevance"] > docs[1].meta["relevance"]
    assert all(0.0 <= d.meta["relevance"] <= 1.0 for d in docs)
    assert (
        component_to_dict(scorer, "scorer")["init_parameters"]["model"] == "smollm2-135m-instruct"
    )


def test_embedding_scorer_ranks_relevant_first() -> None:
    scorer = EmbeddingSimilarityScorer(device="cpu")
    docs = scorer.run(query=QUESTION, documents=_docs())["documents"]
    assert [d.content for d in docs] == [RELEVANT, IRRELEVANT]
    assert docs[0].meta["relevance"] > 0.5 > docs[1].meta["relevance"]
    assert scorer.score(QUESTION, []) == []


def test_cross_encoder_missing_model_is_a_clear_error() -> None:
    scorer = CrossEncoderScorer(model="nobody/no-such-cross-encoder", device="cpu")
    with pytest.raises(
        ModelLoadError, match="cannot load cross-encoder 'nobody/no-such-cross-encoder'"
    ):
        scorer.warm_up()


def test_cross_encoder_with_tiny_local_model(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *["what", "is", "the", "capital", "of", "france", "paris", "bananas"],
    ]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words))
    model_dir = tmp_path / "tiny-ce"
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(model_dir)
    BertTokenizer(str(vocab)).save_pretrained(model_dir)
    scorer = CrossEncoderScorer(model=str(model_dir), device="cpu", batch_size=2)
    docs = scorer.run(query=QUESTION, documents=_docs())["documents"]
    scores = [d.meta["relevance"] for d in docs]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
    assert component_to_dict(scorer, "scorer")["init_parameters"] == {
        "model": str(model_dir),
        "device": "cpu",
        "batch_size": 2,
        "top_k": None,
    }
