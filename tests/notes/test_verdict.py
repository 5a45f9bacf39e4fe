"""The reviewer's verdict parser: strict JSON, tolerant fallbacks, and "not better" by default."""

from __future__ import annotations

import pytest

from ragkit.notes.verdict import parse_verdict


@pytest.mark.parametrize(
    ("text", "better", "source"),
    [
        ('{"status": "True"}', True, "json"),
        ('{"status": "False"}', False, "json"),
        ('{"status": true}', True, "json"),
        ('```json\n{"Status": "false"}\n```', False, "json"),
        ('Sure. {"reason": "adds the year"} and then {"status": "True"}', True, "json"),
        ("{'status': 'True'}", True, "keyword"),  # single quotes: not JSON, status regex
        ('{"status": True', True, "keyword"),  # truncated JSON
        ("True", True, "keyword"),
        ("No, note 2 only repeats note 1.", False, "keyword"),
        ("yes", True, "keyword"),
    ],
)
def test_parses_json_then_keywords(text: str, better: bool, source: str) -> None:
    verdict = parse_verdict(text)
    assert (verdict.better, verdict.source) == (better, source)
    assert verdict.raw == text


@pytest.mark.parametrize("text", ["", "Note 2 looks more complete overall.", '{"status": "maybe"}'])
def test_no_verdict_word_counts_as_not_better(text: str) -> None:
    verdict = parse_verdict(text)
    assert verdict.better is False
    assert verdict.source == "unparsed"


def test_words_inside_other_words_do_not_count() -> None:
    # "untrue"/"nothing"/"another" contain verdict letters but no verdict word
    assert parse_verdict("untrue nothing another").source == "unparsed"
