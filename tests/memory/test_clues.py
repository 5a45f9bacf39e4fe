"""Clue parsing, the >3-word filter, de-duplication, fallbacks, and the union of hits."""

from __future__ import annotations

from haystack import Document

from ragkit.memory.clues import Query, build_clues, clue_lines, union_hits


def test_clue_lines_strip_markers_and_quotes() -> None:
    text = '1. "The Eiffel Tower was finished in 1889"\n\n - Clue 2: Gustave Eiffel built it\n* (3) x\n'
    assert clue_lines(text) == [
        "The Eiffel Tower was finished in 1889",
        "Gustave Eiffel built it",
        "x",
    ]
    assert clue_lines("") == [] and clue_lines("   \n\n") == []


def test_build_clues_filters_short_lines_and_duplicates_across_windows() -> None:
    spans = [
        (0, "1. The tower was finished in 1889\nSure!\nParis"),
        (1, "- the tower was FINISHED in 1889.\nIts designer was Gustave Eiffel"),
    ]
    surrogates = [(0, "When was the Eiffel Tower finished?\nWho designed the tower?")]
    clues = build_clues(
        "When was the Eiffel Tower finished?", spans, surrogates, draft="1889\nextra"
    )
    assert [q.text for q in clues.spans] == [
        "The tower was finished in 1889",
        "Its designer was Gustave Eiffel",
    ]
    assert [q.window for q in clues.spans] == [0, 1]
    # a surrogate equal to the question is not a second query; 4 words is kept (> 3)
    assert [q.text for q in clues.surrogates] == ["Who designed the tower?"]
    assert "Sure!" in clues.rejected and "Paris" in clues.rejected
    assert "the tower was FINISHED in 1889." in clues.rejected  # duplicate of window 0's span
    assert clues.draft == "1889" and not clues.fallback
    kinds = [(q.kind, q.text) for q in clues.queries()]
    assert kinds[-2:] == [("draft", "1889"), ("question", "When was the Eiffel Tower finished?")]
    assert len(kinds) == 5


def test_no_usable_line_falls_back_to_the_question() -> None:
    clues = build_clues("Who won?", [(0, "Yes.\nOK then")], [(0, "")], draft=None)
    assert clues.fallback
    assert [q.kind for q in clues.queries()] == ["question"]
    assert clues.as_dict()["rejected"] == ["Yes.", "OK then"]


def test_min_words_is_configurable() -> None:
    clues = build_clues("q?", [(0, "two words\nthree whole words")], [], min_words=2)
    assert [q.text for q in clues.spans] == ["three whole words"]


def _doc(i: str, source: str, start: int) -> Document:
    return Document(id=i, content=i, meta={"source": source, "start": start})


def test_union_orders_by_position_or_fused_score() -> None:
    a, b, c, d = _doc("a", "f1", 0), _doc("b", "f1", 500), _doc("c", "f2", 0), _doc("d", "f0", 9)
    hits = [
        (Query("span", "s1"), [c, b]),
        (Query("surrogate", "s2"), [c, a]),
        (Query("question", "q"), [d, c]),
    ]
    docs, trace = union_hits(hits, order="position")
    assert [x.id for x in docs] == ["d", "a", "b", "c"]  # f0 < f1@0 < f1@500 < f2
    by_id = {x.id: x for x in docs}
    assert by_id["c"].meta["found_by"] == [0, 1, 2]
    assert by_id["a"].meta["found_by"] == [1]
    assert trace[0] == {"kind": "span", "query": "s1", "window": None, "found": ["c", "b"]}
    scored, _ = union_hits(hits, order="score")
    assert scored[0].id == "c"  # found by every query
    assert scored[0].score > scored[1].score
    assert "found_by" not in (a.meta or {})  # inputs are not mutated


def test_union_uses_passage_position_meta() -> None:
    docs = [
        Document(id=f"p{i}", content="x", meta={"source": "ds", "position": i}) for i in range(3)
    ]
    out, _ = union_hits([(Query("question", "q"), [docs[2], docs[0], docs[1]])])
    assert [d.id for d in out] == ["p0", "p1", "p2"]
