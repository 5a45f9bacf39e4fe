"""The Adaptive-Note loop with a scripted generator and a scripted retriever: every stop rule,
the evidence cap, de-duplication, query truncation, bad judge output and generator errors."""

from __future__ import annotations

from typing import Any

import pytest

from ragkit.errors import InvalidParameter
from ragkit.notes.components import generator_llm
from ragkit.notes.loop import NoteSettings, Passage, run_adaptive_note
from ragkit.testing import ScriptedChatGenerator

QUESTION = "Where was the author of Dune born?"
YES = '{"status": "True"}'
NO = '{"status": "False"}'


class ScriptedRetriever:
    """Returns the next batch of passage ids per call; records the searches."""

    def __init__(self, *batches: list[str]) -> None:
        self.batches = list(batches)
        self.searches: list[str] = []

    def __call__(self, query: str, top_k: int) -> list[Passage]:
        self.searches.append(query)
        ids = self.batches.pop(0) if self.batches else []
        return [Passage(id=i, text=f"text of {i}", title=f"T{i}") for i in ids[:top_k]]


def ids(start: int, n: int) -> list[str]:
    return [f"p{i}" for i in range(start, start + n)]


def generator(verdicts: list[str], **extra_rules: Any) -> ScriptedChatGenerator:
    """Replies by role: numbered notes, fixed queries, verdicts from a queue, a fixed answer."""
    rules: list[dict[str, Any]] = list(extra_rules.get("rules", []))
    rules += [
        {"contains": "Task: write a note.", "reply": "note0 born in Tacoma?"},
        {
            "contains": "Task: plan new searches.",
            "reply": "1. Frank Herbert birthplace\n- Dune author",
        },
        {
            "contains": "Task: improve the note.",
            "replies": [f"note{i} more facts" for i in range(1, 9)],
        },
        {"contains": "Task: compare two notes.", "replies": verdicts},
        {"contains": "Task: answer.", "reply": "Tacoma"},
    ]
    return ScriptedChatGenerator(rules=rules)


def answer_prompt(gen: ScriptedChatGenerator) -> str:
    last = gen.prompts[-1]
    assert "Task: answer." in last[1].text
    return last[1].text


def test_all_refinements_kept_runs_max_steps_with_2_plus_3n_calls() -> None:
    gen = generator([YES, YES])
    retr = ScriptedRetriever(ids(0, 5), ids(5, 5), ids(10, 5))
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), retr, NoteSettings(max_step=2, max_top_k=50)
    )
    assert res.stop_reason == "max steps"
    assert res.answer == "Tacoma"
    assert len(gen.prompts) == 2 + 3 * 2 == res.trace["totals"]["llm_calls"]
    assert res.note == "note2 more facts"
    assert "Note: note2 more facts" in answer_prompt(gen)
    assert [p.id for p in res.passages] == ids(0, 15)
    assert [s["kept"] for s in res.trace["steps"]] == [True, True]
    assert res.trace["totals"]["prompt_tokens"] > 0


def test_rejected_refinement_spends_the_failure_budget_and_keeps_the_best_note() -> None:
    gen = generator([NO])
    retr = ScriptedRetriever(ids(0, 5), ids(5, 5))
    res = run_adaptive_note(QUESTION, generator_llm(gen), retr, NoteSettings(max_step=3))
    assert res.stop_reason == "failure budget"
    assert len(res.trace["steps"]) == 1 and res.trace["steps"][0]["kept"] is False
    assert res.note == "note0 born in Tacoma?"
    prompt = answer_prompt(gen)
    assert "note0 born in Tacoma?" in prompt and "note1" not in prompt


@pytest.mark.parametrize(
    ("fail_count", "stop", "steps"),
    [("consecutive", "max steps", 4), ("total", "failure budget", 3)],
)
def test_consecutive_versus_total_failure_counting(fail_count: str, stop: str, steps: int) -> None:
    gen = generator([NO, YES, NO, YES])
    retr = ScriptedRetriever(*[ids(5 * i, 5) for i in range(6)])
    settings = NoteSettings(max_step=4, max_fail_step=2, max_top_k=100, fail_count=fail_count)  # type: ignore[arg-type]
    res = run_adaptive_note(QUESTION, generator_llm(gen), retr, settings)
    assert res.stop_reason == stop
    assert len(res.trace["steps"]) == steps
    assert [s["fails"] for s in res.trace["steps"]] == (
        [1, 0, 1, 0] if fail_count == "consecutive" else [1, 1, 2]
    )


def test_evidence_cap_limits_passages_read_and_stops() -> None:
    gen = generator([YES] * 5)
    retr = ScriptedRetriever(*[ids(5 * i, 5) for i in range(6)])
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), retr, NoteSettings(max_step=5, top_k=5, max_top_k=12)
    )
    assert res.stop_reason == "evidence cap"
    assert len(res.passages) == 12
    assert [len(s["retrieved"]) for s in res.trace["steps"]] == [5, 2]
    refine_2 = [p for p in gen.prompts if "Task: improve the note." in p[1].text][1][1].text
    assert "text of p10" in refine_2 and "text of p11" in refine_2 and "text of p12" not in refine_2
    assert len(gen.prompts) == 2 + 3 * 2  # the third round never starts


def test_always_dedup_skips_passages_already_read() -> None:
    gen = generator([YES, YES])
    retr = ScriptedRetriever(ids(0, 5), ["p3", "p4", "p5", "p6", "p0"])
    res = run_adaptive_note(QUESTION, generator_llm(gen), retr, NoteSettings(max_step=1))
    step = res.trace["steps"][0]
    assert [r["id"] for r in step["retrieved"]] == ["p5", "p6"]
    assert step["skipped_seen"] == 3
    refine = [p for p in gen.prompts if "Task: improve the note." in p[1].text][0][1].text
    assert "text of p3" not in refine and "text of p5" in refine
    assert [p.id for p in res.passages] == [*ids(0, 5), "p5", "p6"]


def test_near_cap_dedup_rereads_far_from_the_cap_and_dedups_near_it() -> None:
    gen = generator([YES, YES])
    retr = ScriptedRetriever(ids(0, 5), ["p3", "p4", "p5", "p6", "p0"], ["p1", "p7", "p8"])
    settings = NoteSettings(max_step=2, top_k=5, max_top_k=11, dedup="near_cap")
    res = run_adaptive_note(QUESTION, generator_llm(gen), retr, settings)
    first, second = res.trace["steps"]
    # 5 read + 5 <= 11: no dedup, the already-read p3, p4, p0 are handed to the refiner again
    assert [r["id"] for r in first["retrieved"]] == ["p3", "p4", "p5", "p6", "p0"]
    assert first["skipped_seen"] == 0
    # 7 read + 5 > 11: dedup and cut to the 4 free places
    assert [r["id"] for r in second["retrieved"]] == ["p7", "p8"]
    assert second["skipped_seen"] == 1
    assert len(res.passages) == 9


def test_search_is_new_questions_plus_question_cut_to_query_max_chars() -> None:
    long_queries = "x" * 700
    gen = generator([YES], rules=[{"contains": "Task: plan new searches.", "reply": long_queries}])
    retr = ScriptedRetriever(ids(0, 5), ids(5, 5))
    run_adaptive_note(QUESTION, generator_llm(gen), retr, NoteSettings(max_step=1))
    assert retr.searches[0] == QUESTION
    assert retr.searches[1] == ("x" * 500)
    gen2 = generator([YES])
    retr2 = ScriptedRetriever(ids(0, 5), ids(5, 5))
    run_adaptive_note(QUESTION, generator_llm(gen2), retr2, NoteSettings(max_step=1))
    assert retr2.searches[1] == f"Frank Herbert birthplace\nDune author\n{QUESTION}"


def test_queries_are_conditioned_on_best_note_and_past_queries() -> None:
    gen = generator([YES, YES])
    retr = ScriptedRetriever(ids(0, 5), ids(5, 5), ids(10, 5))
    run_adaptive_note(QUESTION, generator_llm(gen), retr, NoteSettings(max_step=2, max_top_k=50))
    plans = [p[1].text for p in gen.prompts if "Task: plan new searches." in p[1].text]
    assert "note0 born in Tacoma?" in plans[0] and "(none)" in plans[0]
    assert "note1 more facts" in plans[1] and "Frank Herbert birthplace" in plans[1]


def test_empty_first_retrieval_stops_with_no_evidence() -> None:
    gen = generator([])
    res = run_adaptive_note(QUESTION, generator_llm(gen), ScriptedRetriever([]), NoteSettings())
    assert res.stop_reason == "no evidence"
    assert len(gen.prompts) == 1  # only the answer
    assert "Note: (empty)" in answer_prompt(gen)
    assert res.passages == []


def test_empty_and_all_seen_retrieval_mid_loop() -> None:
    gen = generator([])
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), ScriptedRetriever(ids(0, 5), []), NoteSettings()
    )
    assert res.stop_reason == "no evidence"
    gen = generator([])
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), ScriptedRetriever(ids(0, 5), ids(0, 5)), NoteSettings()
    )
    assert res.stop_reason == "no new evidence"
    assert not any("Task: improve the note." in p[1].text for p in gen.prompts)


def test_judge_without_json_or_verdict_word_counts_as_not_better_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gen = generator(["Note 2 seems more complete overall."])
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), ScriptedRetriever(ids(0, 5), ids(5, 5)), NoteSettings()
    )
    step = res.trace["steps"][0]
    assert step["verdict"]["source"] == "unparsed" and step["kept"] is False
    assert res.stop_reason == "failure budget"
    assert res.note == "note0 born in Tacoma?"
    assert any("no verdict" in w for w in res.trace["warnings"])
    assert "no verdict" in caplog.text


def test_generator_error_mid_loop_keeps_best_note_and_still_answers() -> None:
    gen = generator(
        [YES, YES],
        rules=[{"contains": "Task: compare two notes.", "replies": [YES]}],
    )
    # second refinement raises: after one kept refinement the best note is note1
    gen = ScriptedChatGenerator(
        rules=[
            {"contains": "Task: write a note.", "reply": "note0"},
            {"contains": "Task: plan new searches.", "reply": "q"},
            {"contains": "Task: improve the note.", "replies": ["note1"]},
            {"contains": "Task: improve the note.", "error": "backend died"},
            {"contains": "Task: compare two notes.", "reply": YES},
            {"contains": "Task: answer.", "reply": "Tacoma"},
        ]
    )
    retr = ScriptedRetriever(ids(0, 5), ids(5, 5), ids(10, 5))
    res = run_adaptive_note(QUESTION, generator_llm(gen), retr, NoteSettings(max_step=3))
    assert res.stop_reason == "generator error"
    assert res.note == "note1" and res.answer == "Tacoma"
    assert "Note: note1" in answer_prompt(gen)
    assert any("backend died" in w for w in res.trace["warnings"])


def test_token_caps_are_passed_per_role() -> None:
    gen = generator([YES])
    settings = NoteSettings(max_step=1, note_max_tokens=3, query_max_tokens=7, verdict_max_tokens=5)
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), ScriptedRetriever(ids(0, 5), ids(5, 5)), settings
    )
    assert [c["max_tokens"] for c in gen.calls] == [3, 7, 3, 5, 64]
    assert res.trace["initial"]["note"] == "note0 born in"  # cut at 3 "tokens" by the cap


def test_context_fitter_trims_the_note_never_the_question() -> None:
    from ragkit.answering.components import ContextFitter
    from ragkit.notes.components import fitter_fit

    long_note = "factual " * 150  # 150 words (under the note cap), ~1200 chars
    gen = ScriptedChatGenerator(
        rules=[
            {"contains": "Task: write a note.", "reply": long_note},
            {"contains": "Task: answer.", "reply": "Tacoma"},
        ]
    )
    fitter = ContextFitter(tokenizer=None, context_tokens=300, reserve_tokens=100)  # ~3 chars/token
    with pytest.warns(RuntimeWarning, match="exceeds the 200-token budget"):
        res = run_adaptive_note(
            QUESTION,
            generator_llm(gen),
            ScriptedRetriever(ids(0, 5)),
            NoteSettings(max_step=0),
            fit=fitter_fit(fitter),
        )
    assert res.note.strip() == long_note.strip()  # the memory keeps the whole note
    prompt = answer_prompt(gen)
    note_part = prompt.split("Note: ", 1)[1]
    assert 0 < len(note_part) < 700
    assert QUESTION in gen.prompts[-1][0].text


def test_settings_reject_bad_values() -> None:
    with pytest.raises(InvalidParameter, match="max_top_k: must be an integer >= 1"):
        NoteSettings(max_top_k=0)
    with pytest.raises(InvalidParameter, match="dedup: must be"):
        NoteSettings(dedup="sometimes")  # type: ignore[arg-type]


def test_always_dedup_asks_for_enough_to_fill_top_k_with_unread_passages() -> None:
    gen = generator([YES])
    requested: list[int] = []
    corpus = ids(0, 30)

    def retrieve(query: str, top_k: int) -> list[Passage]:
        requested.append(top_k)
        return [Passage(id=i, text=f"text of {i}") for i in corpus[:top_k]]  # same ranking always

    res = run_adaptive_note(QUESTION, generator_llm(gen), retrieve, NoteSettings(max_step=1))
    assert requested == [5, 10]
    assert [r["id"] for r in res.trace["steps"][0]["retrieved"]] == ids(5, 5)


def one_step_generator(
    note: str, refined: str, verdict: str, answer: str = "Tacoma"
) -> ScriptedChatGenerator:
    """Fixed replies per role: the initial note, one refinement, the judge's verdict."""
    return ScriptedChatGenerator(
        rules=[
            {"contains": "Task: write a note.", "reply": note},
            {"contains": "Task: plan new searches.", "reply": "q"},
            {"contains": "Task: improve the note.", "reply": refined},
            {"contains": "Task: compare two notes.", "reply": verdict},
            {"contains": "Task: answer.", "reply": answer},
        ]
    )


def test_unchanged_refinement_is_not_better_without_asking_the_judge() -> None:
    gen = one_step_generator("same note", "Same  note", YES, answer="a")
    res = run_adaptive_note(
        QUESTION, generator_llm(gen), ScriptedRetriever(ids(0, 5), ids(5, 5)), NoteSettings()
    )
    assert res.trace["steps"][0]["verdict"]["source"] == "unchanged"
    assert res.stop_reason == "failure budget"
    assert not any("Task: compare two notes." in p[1].text for p in gen.prompts)
    assert len(gen.prompts) == 4


def test_a_note_after_an_empty_one_is_kept_without_asking_the_judge() -> None:
    gen = one_step_generator("   ", "Herbert was born in Tacoma.", NO)
    res = run_adaptive_note(
        QUESTION,
        generator_llm(gen),
        ScriptedRetriever(ids(0, 5), ids(5, 5)),
        NoteSettings(max_step=1),
    )
    assert res.trace["initial"]["note"] == ""
    step = res.trace["steps"][0]
    assert step["verdict"]["source"] == "first note" and step["kept"] is True
    assert res.note == "Herbert was born in Tacoma."
    assert not any("Task: compare two notes." in p[1].text for p in gen.prompts)
