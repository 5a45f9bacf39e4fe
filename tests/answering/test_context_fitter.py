"""Passages are cut to fit the reader's context; the question never is."""

from __future__ import annotations

import logging
import warnings

import pytest
from haystack import Document

from ragkit.answering.components import ContextFitter


@pytest.mark.parametrize("tokenizer", ["smollm2-135m-instruct", None])
def test_overflow_drops_and_trims_passages_with_warning(
    tokenizer: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    question = "Which river is the longest? " * 3
    docs = [
        Document(id=f"d{i}", content=f"Passage {i}. " + "The Nile is long. " * 60) for i in range(6)
    ]
    fitter = ContextFitter(tokenizer=tokenizer, context_tokens=1024, reserve_tokens=256)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        out = fitter.run(question=question, documents=docs)["documents"]
    assert 0 < len(out) < len(docs)
    assert [d.id for d in out] == [f"d{i}" for i in range(len(out))]  # best first, order kept
    assert out[-1].meta.get("trimmed") or len(out[-1].content) == len(docs[len(out) - 1].content)
    said = " ".join(str(w.message) for w in caught) + caplog.text
    assert "dropped" in said or "trimmed" in said or "truncat" in said


def test_everything_fits_untouched() -> None:
    docs = [Document(id="a", content="short passage")]
    out = ContextFitter(tokenizer=None, context_tokens=4096).run(question="q?", documents=docs)[
        "documents"
    ]
    assert out == docs


def test_strip_citations_for_scoring() -> None:
    from ragkit.answering.run import strip_citations

    assert strip_citations("Neptune [1]") == "Neptune"
    assert strip_citations("Paris [2, 3][4]. It is big [1-2].") == "Paris. It is big."
    assert strip_citations("the [note] stays") == "the [note] stays"
