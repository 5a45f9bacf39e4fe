"""Metrics against hand-computed values."""

from __future__ import annotations

import pytest

from ragkit.evaluation.metrics import (
    accuracy,
    answer_metrics,
    exact_match,
    f1,
    normalize_answer,
    recall_at_k,
    rouge_l,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Cat!", "cat"),
        ("  An apple,  a day\tkeeps ", "apple day keeps"),
        ("theater", "theater"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer_squad_rules(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_exact_match_takes_best_gold() -> None:
    assert exact_match("the Eiffel Tower.", ["Louvre", "Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("Paris", "paris") == 1.0  # a bare string is one gold, not characters
    assert exact_match("x", []) == 0.0


def test_f1_partial_overlap() -> None:
    # pred tokens [big, cat], gold [cat]: P = 1/2, R = 1 -> F1 = 2/3
    assert f1("the big cat", ["cat"]) == pytest.approx(2 / 3)
    # best over golds
    assert f1("the big cat", ["dog", "big cat"]) == pytest.approx(1.0)
    assert f1("nothing shared", ["cat"]) == 0.0


def test_f1_yes_no_rule() -> None:
    assert f1("no", ["no idea"]) == 0.0  # prediction is special and differs
    assert f1("yes it is", ["yes"]) == 0.0  # gold is special and differs
    assert f1("Yes.", ["yes"]) == 1.0
    assert f1("noanswer", ["no answer"]) == 0.0


def test_accuracy_is_containment() -> None:
    assert accuracy("It was built in Paris, France.", ["Paris"]) == 1.0
    assert accuracy("Lyon", ["Paris", "lyon"]) == 1.0
    assert accuracy("Berlin", ["Paris"]) == 0.0
    assert accuracy("anything", ["The"]) == 0.0  # empty normalized gold never matches


def test_rouge_l_known_values() -> None:
    # [police, killed, gunman] vs [police, kill, gunman]: LCS 2, P = R = 2/3
    assert rouge_l("police killed the gunman", ["police kill the gunman"]) == pytest.approx(2 / 3)
    # [w, x, y, z] vs [w, y, q]: LCS 2, P = 1/2, R = 2/3 -> F = 4/7
    assert rouge_l("w x y z", ["w y q"]) == pytest.approx(4 / 7)
    assert rouge_l("w x y z", ["nope", "w x y z"]) == pytest.approx(1.0)
    assert rouge_l("", ["a b"]) == 0.0


def test_recall_at_k() -> None:
    retrieved = ["a", "b", "c", "a"]
    assert recall_at_k(retrieved, {"a", "c"}, 1) == 0.5
    assert recall_at_k(retrieved, {"a", "c"}, 2) == 0.5
    assert recall_at_k(retrieved, {"a", "c"}, 3) == 1.0
    assert recall_at_k(retrieved, {"a", "c"}, 10) == 1.0
    assert recall_at_k([], {"a"}, 5) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(retrieved, set(), 5)
    with pytest.raises(ValueError):
        recall_at_k(retrieved, {"a"}, 0)


def test_answer_metrics_keys() -> None:
    assert answer_metrics("Paris", ["paris"]) == {
        "em": 1.0,
        "f1": 1.0,
        "accuracy": 1.0,
        "rouge_l": 1.0,
    }
