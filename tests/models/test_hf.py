"""One tokenizer loader for every model name the registry knows (GGUF names included)."""

from __future__ import annotations

import pytest
from haystack import Document

from ragkit.models.chunked_gguf import CHUNKED_MODELS, MissingPartError
from ragkit.models.errors import ModelLoadError
from ragkit.models.hf import load_tokenizer
from ragkit.models.registry import known_model_names

TEXT = "Rivers carry sediment to the sea."


@pytest.mark.parametrize("name", known_model_names())
def test_every_registry_name_loads_a_tokenizer(name: str) -> None:
    try:
        tokenizer = load_tokenizer(name)
    except MissingPartError:
        assert name in CHUNKED_MODELS  # only opt-in chunked models may be absent
        pytest.skip(f"{name} is not fetched (ragkit models fetch {name})")
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert len(ids) > 3
    assert tokenizer.decode(ids).strip().lower() == TEXT.lower()
    offsets = tokenizer(TEXT, return_offsets_mapping=True, add_special_tokens=False)
    assert len(offsets["offset_mapping"]) == len(ids)


def test_token_splitter_accepts_a_gguf_model_name() -> None:
    from ragkit.indexing.splitter import TextSplitter

    splitter = TextSplitter(
        split_by="token", split_length=8, split_overlap=2, tokenizer=("smollm2-135m-instruct")
    )
    docs = splitter.run([Document(content=TEXT * 4, meta={"source": "a.txt"})])["documents"]
    assert len(docs) > 1
    assert all(d.content for d in docs)


def test_unloadable_tokenizer_names_the_model(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer"):
        load_tokenizer(str(tmp_path))
