"""Dataset loaders on the shared files and on small generated files in both JSON forms."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from ragkit.evaluation.datasets import (
    SHORT_NAMES,
    DatasetError,
    load_beir,
    load_dataset,
    load_hotpot,
    load_simple_jsonl,
    passage_id,
    shared_data_dir,
)

HOTPOT_ROWS: list[dict[str, Any]] = [
    {
        "_id": "q1",
        "question": "Which city?",
        "answer": "Paris",
        "supporting_facts": [["Paris", 0], ["France", 1]],
        "context": [
            ["Paris", ["Paris is a city.", " It is in France."]],
            ["France", ["France is a country.", " Its capital is Paris."]],
            ["Berlin", ["Berlin is in Germany."]],
        ],
    },
    {
        "_id": "q2",
        "question": "Which country?",
        "answer": "France",
        # AMOR's rewritten form: [title, [idxs], [sentences], {dpr passage}]
        "supporting_facts": [
            [
                "France",
                [0, 1],
                ["France is a country."],
                {"id": "9", "title": "France", "text": "x"},
            ]
        ],
        "context": [
            ["France", ["France is a country.", " Its capital is Paris."]],
            ["Rome", ["Rome is in Italy."]],
        ],
    },
    # 2Wiki-style demonstration row without context: skipped and counted
    {"_id": "demo", "question": "?", "answer": "x", "qa_pairs": []},
]


def _write(path: Path, rows: list[dict[str, Any]], form: str) -> Path:
    if form == "array":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if path.suffix == ".gz":
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("form", ["array", "jsonl"])
def test_load_hotpot_both_forms(tmp_path: Path, form: str) -> None:
    ds = load_hotpot(_write(tmp_path / "h.json", HOTPOT_ROWS, form))
    assert ds.name == "h"
    assert [e.id for e in ds.examples] == ["q1", "q2"]
    assert ds.skipped == 1
    q1, q2 = ds.examples
    assert q1.answers == ["Paris"]
    assert [p.title for p in q1.passages] == ["Paris", "France", "Berlin"]
    assert q1.passages[0].text == "Paris is a city. It is in France."
    assert q1.passages[0].id == passage_id("Paris", "Paris is a city. It is in France.")
    assert q1.gold_passage_ids == [q1.passages[0].id, q1.passages[1].id]
    assert q2.gold_passage_ids == [q2.passages[0].id]
    # The shared France paragraph has one id, so the pooled store holds it once.
    assert q1.passages[1].id == q2.passages[0].id
    assert [p.title for p in ds.pooled_passages()] == ["Paris", "France", "Berlin", "Rome"]


@pytest.mark.parametrize("form", ["array", "jsonl"])
def test_load_simple_both_forms(tmp_path: Path, form: str) -> None:
    rows = [
        {"id": "a", "question": "Q1?", "answers": ["x", "y"], "passages": ["p one", "p two"]},
        {"question": "Q2?", "answers": "z", "passages": [{"title": "T", "text": "body"}]},
        {
            "question": "Q3?",
            "answers": ["w"],
            "ctxs": [
                {"title": "G", "text": "gold", "isgold": True},
                {"title": "D", "text": "distractor", "isgold": False},
            ],
        },
    ]
    path = _write(tmp_path / "s.jsonl", rows, form)
    ds = load_simple_jsonl(path)
    a, b, c = ds.examples
    assert (
        a.id == "a"
        and a.answers == ["x", "y"]
        and [p.text for p in a.passages] == ["p one", "p two"]
    )
    assert b.answers == ["z"] and b.passages[0].title == "T" and b.id.startswith("s-")
    assert c.gold_passage_ids == [passage_id("G", "gold")]
    assert load_dataset(path).examples == ds.examples  # auto-detected as simple


def test_gzipped_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.jsonl.gz", HOTPOT_ROWS, "jsonl")
    ds = load_dataset(path)
    assert ds.name == "h" and len(ds) == 2 and ds.skipped == 1


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"question": "ok", "answers": ["a"]}\n\n{"answers": ["b"]}\n', encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3: missing required field 'question'"):
        load_simple_jsonl(path)


def test_missing_field_in_json_array_names_line(tmp_path: Path) -> None:
    rows = [{"question": "ok", "answers": ["a"]}, {"question": "no answers"}]
    path = _write(tmp_path / "bad.json", rows, "array")
    # json.dumps(indent=2): "[" then row 1 on lines 2-7, row 2 opens on line 8
    with pytest.raises(DatasetError, match=r"bad\.json:8: missing required field 'answer'"):
        load_simple_jsonl(path)


def test_bad_json_line_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"question": "a", "answers": []}\n{"question": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"broken\.json:2: invalid JSON"):
        load_dataset(path)
    msg = ""
    try:
        load_dataset(path)
    except DatasetError as exc:
        msg = str(exc)
    assert "\n" not in msg


def test_hotpot_bad_context_entry(tmp_path: Path) -> None:
    rows = [{"_id": "x", "question": "q", "answer": "a", "context": [["T", "not a list"]]}]
    with pytest.raises(DatasetError, match=r"h\.jsonl:1: 'context\[0\]'"):
        load_hotpot(_write(tmp_path / "h.jsonl", rows, "jsonl"))


def test_load_beir(tmp_path: Path) -> None:
    root = tmp_path / "scifact"
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "One", "text": "first doc"},
        {"_id": "d2", "title": "Two", "text": "second doc"},
        {"_id": "d3", "text": "third doc"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q1", "text": "find one"}, {"_id": "q2", "text": "no qrels"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\nq1\td2\t0\n"
    )
    ds = load_beir(root)
    assert ds.name == "scifact" and ds.skipped == 1
    (q1,) = ds.examples
    assert q1.question == "find one" and q1.answers == [] and q1.gold_passage_ids == ["d1", "d3"]
    assert [p.id for p in ds.pooled_passages()] == ["d1", "d2", "d3"]
    assert load_dataset(root).examples == ds.examples


def test_unknown_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- shared data

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(
    not (SHARED / SHORT_NAMES["hotpotqa"]).is_file(), reason=f"shared data not found at {SHARED}"
)


@needs_shared
@pytest.mark.parametrize(
    ("name", "count", "skipped"),
    [
        ("hotpotqa", 200, 0),
        ("hotpotqa-dev100", 100, 0),
        ("hotpotqa-fullwiki", 500, 0),
        ("2wiki", 164, 36),
        ("nq-open", 2655, 0),
    ],
)
def test_shared_datasets(name: str, count: int, skipped: int) -> None:
    ds = load_dataset(name)
    assert ds.name == name
    assert len(ds) == count and ds.skipped == skipped
    assert len({e.id for e in ds.examples}) == count
    assert all(e.question and e.answers for e in ds.examples)
    pooled = ds.pooled_passages()
    assert len({p.id for p in pooled}) == len(pooled)
    for e in ds.examples:
        ids = {p.id for p in e.passages}
        assert set(e.gold_passage_ids) <= ids


@needs_shared
def test_shared_details() -> None:
    hotpot = load_dataset("hotpotqa")
    assert all(len(e.gold_passage_ids) == 2 for e in hotpot.examples)
    dev = load_dataset("hotpotqa-dev100")  # AMOR's supporting_facts format
    assert all(len(e.gold_passage_ids) >= 2 for e in dev.examples)
    full = load_dataset("hotpotqa-fullwiki")
    assert sum(1 for e in full.examples if not e.passages) == 2
    nq = load_dataset("nq-open")
    assert all(len(e.passages) == 1 and len(e.gold_passage_ids) == 1 for e in nq.examples)
    # Shared paragraphs collapse in the pooled view.
    assert len(nq.pooled_passages()) < len(nq)


def test_short_name_resolves_through_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "nq-open-oracle"
    folder.mkdir()
    rows = [
        {
            "question": "who?",
            "answers": ["me"],
            "ctxs": [{"title": "t", "text": "x", "isgold": True}],
        }
    ]
    _write(folder / "nq-open-oracle.jsonl.gz", rows, "jsonl")
    monkeypatch.delenv("RAGKIT_SHARED_DATA", raising=False)
    monkeypatch.setenv("RAGKIT_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # not where ../shared/data is
    assert shared_data_dir() == tmp_path
    ds = load_dataset("nq-open")
    assert ds.name == "nq-open" and ds.examples[0].id == "nq-open-oracle-1"
    # a missing set: where it looked, why there, where to get it and how to point at it
    with pytest.raises(DatasetError) as err:
        load_dataset("2wiki")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"expects {tmp_path / '2wikimultihopqa-migres' / 'wikihop.json'} ($RAGKIT_DATA)" in msg
    assert "https://github.com/AdelWang/MIGRES" in msg and "data/wikihop.json" in msg
    assert "set RAGKIT_DATA=<folder>" in msg and "pass the file's path" in msg
    # the former variable name still works; RAGKIT_DATA wins over it
    monkeypatch.setenv("RAGKIT_SHARED_DATA", str(tmp_path / "old"))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("RAGKIT_DATA")
    assert shared_data_dir() == tmp_path / "old"


def test_short_name_default_folder_is_relative_to_the_cwd_not_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGKIT_DATA", raising=False)
    monkeypatch.delenv("RAGKIT_SHARED_DATA", raising=False)
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    assert shared_data_dir() == tmp_path / "shared" / "data"
    with pytest.raises(DatasetError, match=r"\(\$RAGKIT_DATA is not set\).*lost-in-the-middle"):
        load_dataset("nq-open")


def test_json_array_line_numbers_are_exact(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answers": ["a"]} for i in range(50)] + [{"answers": ["b"]}]
    path = tmp_path / "many.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"many\.json:52: missing required field 'question'"):
        load_simple_jsonl(path)
