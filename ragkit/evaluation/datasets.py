"""Loaders for QA evaluation sets (HotpotQA/2Wiki, BEIR, simple JSONL, NQ-open) into one model.

Every loader accepts a JSON array or JSON Lines (optionally gzipped) whatever the file is named,
because the shared research files are JSON Lines named `.json`. Passage ids are content hashes,
so the same paragraph shared by several questions gets one id and a pooled store dedupes it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from ragkit.errors import InvalidInputError

__all__ = [
    "DATA_ENV",
    "SHORT_NAMES",
    "SOURCES",
    "Dataset",
    "DatasetError",
    "Passage",
    "QAExample",
    "load_beir",
    "load_dataset",
    "load_hotpot",
    "load_simple_jsonl",
    "data_dir_source",
    "passage_id",
    "shared_data_dir",
]

#: Environment variable naming the folder that holds the short-named sets.
DATA_ENV = "RAGKIT_DATA"

#: Short names for the shared evaluation sets, relative to `shared_data_dir()`.
SHORT_NAMES: dict[str, str] = {
    "hotpotqa": "hotpotqa-migres/hotpot.json",
    "hotpotqa-dev100": "hotpotqa-amor/dev.json",
    "hotpotqa-fullwiki": "hotpotqa-amor/test.json",
    "2wiki": "2wikimultihopqa-migres/wikihop.json",
    "nq-open": "nq-open-oracle/nq-open-oracle.jsonl.gz",
}

#: Where each short-named set comes from: (repository, file in it); the files are used unchanged.
SOURCES: dict[str, tuple[str, str]] = {
    "hotpotqa": ("https://github.com/AdelWang/MIGRES", "data/hotpot.json"),
    "hotpotqa-dev100": ("https://github.com/JianGuanTHU/AMOR", "data/hotpotqa/dev.json"),
    "hotpotqa-fullwiki": ("https://github.com/JianGuanTHU/AMOR", "data/hotpotqa/test.json"),
    "2wiki": ("https://github.com/AdelWang/MIGRES", "data/wikihop.json"),
    "nq-open": (
        "https://github.com/nelson-liu/lost-in-the-middle",
        "qa_data/nq-open-oracle.jsonl.gz",
    ),
}


class DatasetError(InvalidInputError, ValueError):
    """A dataset file is malformed; the message names the file, line and field to fix."""


class Passage(BaseModel):
    """A retrievable passage; `text` excludes the title so embedders can choose how to use it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    text: str


class QAExample(BaseModel):
    """One question with its reference answers, candidate passages and the gold passage ids."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    answers: list[str]
    passages: list[Passage]
    gold_passage_ids: list[str]


@dataclass
class Dataset:
    """A loaded evaluation set.

    Attributes:
        name: Short name or file stem, used in reports.
        examples: The usable questions.
        skipped: Rows left out (2Wiki rows without `context`, BEIR queries without qrels).
        corpus: A shared corpus (BEIR); None when passages come with each question.
    """

    name: str
    examples: list[QAExample]
    skipped: int = 0
    corpus: list[Passage] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def pooled_passages(self) -> list[Passage]:
        """All passages of the dataset, deduplicated by id in first-seen order, for one store."""
        if self.corpus is not None:
            source: Iterator[Passage] = iter(self.corpus)
        else:
            source = (p for ex in self.examples for p in ex.passages)
        seen: set[str] = set()
        out: list[Passage] = []
        for passage in source:
            if passage.id not in seen:
                seen.add(passage.id)
                out.append(passage)
        return out


def passage_id(title: str, text: str) -> str:
    """Stable content id (first 16 hex of sha1 of title and text) so shared paragraphs dedupe."""
    return hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]


def _make_passage(title: str, text: str) -> Passage:
    return Passage(id=passage_id(title, text), title=title, text=text)


# --------------------------------------------------------------------------- file reading


def _open_text(path: Path) -> IO[str]:
    """Open a text file, transparently decompressing `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _stem(path: Path) -> str:
    """File name without `.gz` and the format suffix (`nq-open-oracle.jsonl.gz` -> `nq-open-oracle`)."""
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0] if "." in name else name


def _iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from a JSON array or JSON Lines file, detected by content.

    Raises:
        DatasetError: On invalid JSON or a row that is not an object, naming file:line.
    """
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open: {exc}") from exc
    with fh:
        first = ""
        head: list[str] = []
        for line in fh:
            head.append(line)
            if line.strip():
                first = line.lstrip()[0]
                break
        if first == "[":
            text = "".join(head) + fh.read()
            yield from _iter_json_array(path, text)
            return
        for lineno, line in enumerate(_chain(head, fh), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
            yield lineno, _check_object(row, path, lineno)


def _chain(head: list[str], rest: IO[str]) -> Iterator[str]:
    yield from head
    yield from rest


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Decode a JSON array element by element so each row keeps its line number."""
    decoder = json.JSONDecoder()

    counted = [0, 1]  # [position, line number there]: count newlines incrementally, not O(n^2)

    def lineno_at(pos: int) -> int:
        if pos < counted[0]:
            return text.count("\n", 0, pos) + 1
        counted[1] += text.count("\n", counted[0], pos)
        counted[0] = pos
        return counted[1]

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0) + 1  # past "["
    pos = skip_ws(pos)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        yield lineno_at(pos), _check_object(row, path, lineno_at(pos))
        pos = skip_ws(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            if skip_ws(pos + 1) != len(text):
                raise DatasetError(f"{path}:{lineno_at(pos + 1)}: extra data after the JSON array")
            return
        raise DatasetError(f"{path}:{lineno_at(pos)}: invalid JSON: expected ',' or ']'")


def _check_object(row: Any, path: Path, lineno: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
    return row


def _require(row: dict[str, Any], key: str, path: Path, lineno: int) -> Any:
    if key not in row or row[key] is None:
        raise DatasetError(f"{path}:{lineno}: missing required field '{key}'")
    return row[key]


def _answers(row: dict[str, Any], path: Path, lineno: int) -> list[str]:
    """Read `answers` or `answer`, each a string or a list of strings."""
    key = "answers" if "answers" in row else "answer"
    value = _require(row, key, path, lineno)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return list(value)
    raise DatasetError(f"{path}:{lineno}: field '{key}' must be a string or a list of strings")


def _question(row: dict[str, Any], path: Path, lineno: int) -> str:
    value = _require(row, "question", path, lineno)
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{lineno}: field 'question' must be a string")
    return value


class _IdAllocator:
    """Gives each example an id: the row's own if present, else `<stem>-<line>`; always unique."""

    def __init__(self, stem: str) -> None:
        self.stem = stem
        self.seen: set[str] = set()

    def __call__(self, row: dict[str, Any], lineno: int) -> str:
        raw = row.get("_id", row.get("id"))
        base = str(raw) if raw is not None else f"{self.stem}-{lineno}"
        qid, n = base, 1
        while qid in self.seen:
            n += 1
            qid = f"{base}#{n}"
        self.seen.add(qid)
        return qid


# --------------------------------------------------------------------------- HotpotQA / 2Wiki


def _supporting_titles(row: dict[str, Any], path: Path, lineno: int) -> set[str]:
    """Titles of supporting facts, in official `[title, idx]` or AMOR's `[title, [idxs], ...]` form."""
    facts = row.get("supporting_facts") or []
    if not isinstance(facts, list):
        raise DatasetError(f"{path}:{lineno}: field 'supporting_facts' must be a list")
    titles: set[str] = set()
    for fact in facts:
        if not isinstance(fact, list) or not fact or not isinstance(fact[0], str):
            raise DatasetError(
                f"{path}:{lineno}: each 'supporting_facts' entry must be [title, ...], got {fact!r:.80}"
            )
        titles.add(fact[0])
    return titles


def _hotpot_example(row: dict[str, Any], path: Path, lineno: int, ids: _IdAllocator) -> QAExample:
    question = _question(row, path, lineno)
    answers = _answers(row, path, lineno)
    context = _require(row, "context", path, lineno)
    if not isinstance(context, list):
        raise DatasetError(f"{path}:{lineno}: field 'context' must be a list of [title, sentences]")
    gold_titles = _supporting_titles(row, path, lineno)
    passages: list[Passage] = []
    gold: list[str] = []
    for i, para in enumerate(context):
        if not (
            isinstance(para, list)
            and len(para) == 2
            and isinstance(para[0], str)
            and isinstance(para[1], list)
        ):
            raise DatasetError(f"{path}:{lineno}: 'context[{i}]' must be [title, [sentences]]")
        title, sentences = para
        text = " ".join(str(s).strip() for s in sentences if str(s).strip())
        passage = _make_passage(title, text)
        if any(p.id == passage.id for p in passages):
            continue
        passages.append(passage)
        if title in gold_titles:
            gold.append(passage.id)
    return QAExample(
        id=ids(row, lineno),
        question=question,
        answers=answers,
        passages=passages,
        gold_passage_ids=gold,
    )


def load_hotpot(path: str | Path, name: str | None = None) -> Dataset:
    """Load HotpotQA-format data (also 2WikiMultihopQA and AMOR's rewritten supporting facts).

    Each context paragraph becomes a passage (sentences joined, title kept apart); gold passages
    are the paragraphs whose title appears in `supporting_facts`. In fullwiki data a supporting
    title may be absent from the context, so gold ids list only the paragraphs present. Rows
    without `context` (2Wiki's few-shot demonstrations) are skipped and counted in `skipped`.

    Args:
        path: JSON array or JSON Lines file, optionally gzipped.
        name: Dataset name for reports; defaults to the file stem.

    Returns:
        The dataset.

    Raises:
        DatasetError: On malformed JSON or a missing field, naming file:line.
    """
    path = Path(path)
    rows = list(_iter_rows(path))
    return _hotpot_from_rows(rows, path, name or _stem(path))


def _hotpot_from_rows(rows: list[tuple[int, dict[str, Any]]], path: Path, name: str) -> Dataset:
    ids = _IdAllocator(_stem(path))
    examples: list[QAExample] = []
    skipped = 0
    for lineno, row in rows:
        if "context" not in row:
            skipped += 1
            continue
        examples.append(_hotpot_example(row, path, lineno, ids))
    return Dataset(name=name, examples=examples, skipped=skipped)


# --------------------------------------------------------------------------- simple JSONL / NQ


def _simple_passages(
    row: dict[str, Any], path: Path, lineno: int
) -> tuple[list[Passage], list[str]]:
    """Passages from `passages` (strings or {title, text}) or NQ-style `ctxs`; gold via `isgold`."""
    key = "passages" if "passages" in row else "ctxs" if "ctxs" in row else None
    if key is None or row[key] is None:
        return [], []
    items = row[key]
    if not isinstance(items, list):
        raise DatasetError(f"{path}:{lineno}: field '{key}' must be a list")
    passages: list[Passage] = []
    gold: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            title, text, is_gold = "", item, False
        elif isinstance(item, dict):
            if "text" not in item or not isinstance(item["text"], str):
                raise DatasetError(f"{path}:{lineno}: missing required field '{key}[{i}].text'")
            title = str(item.get("title") or "")
            text = item["text"]
            is_gold = bool(item.get("isgold", item.get("is_gold", item.get("gold", False))))
        else:
            raise DatasetError(
                f"{path}:{lineno}: '{key}[{i}]' must be a string or an object with 'text'"
            )
        passage = _make_passage(title, text)
        if all(p.id != passage.id for p in passages):
            passages.append(passage)
        if is_gold and passage.id not in gold:
            gold.append(passage.id)
    return passages, gold


def load_simple_jsonl(path: str | Path, name: str | None = None) -> Dataset:
    """Load simple QA rows: `question`, `answers` (list or str), optional `passages`/`ctxs`, `id`.

    `passages` may be strings or {title, text} objects; NQ-open-oracle's `ctxs` objects mark gold
    passages with `isgold`. Rows without an id get `<file stem>-<line>` so resume stays stable.

    Args:
        path: JSON array or JSON Lines file, optionally gzipped.
        name: Dataset name for reports; defaults to the file stem.

    Returns:
        The dataset.

    Raises:
        DatasetError: On malformed JSON or a missing field, naming file:line.
    """
    path = Path(path)
    rows = list(_iter_rows(path))
    return _simple_from_rows(rows, path, name or _stem(path))


def _simple_from_rows(rows: list[tuple[int, dict[str, Any]]], path: Path, name: str) -> Dataset:
    ids = _IdAllocator(_stem(path))
    examples: list[QAExample] = []
    for lineno, row in rows:
        question = _question(row, path, lineno)
        answers = _answers(row, path, lineno)
        passages, gold = _simple_passages(row, path, lineno)
        examples.append(
            QAExample(
                id=ids(row, lineno),
                question=question,
                answers=answers,
                passages=passages,
                gold_passage_ids=gold,
            )
        )
    return Dataset(name=name, examples=examples)


# --------------------------------------------------------------------------- BEIR


def _find_file(directory: Path, stem: str) -> Path:
    for suffix in (".jsonl", ".jsonl.gz", ".json", ".json.gz"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{directory}: no {stem}.jsonl (or .jsonl.gz) found; is this a BEIR folder?")


def _read_qrels(directory: Path) -> dict[str, list[str]]:
    """Positive qrels (score > 0) from qrels/test.tsv, else every qrels/*.tsv."""
    qrels_dir = directory / "qrels"
    files = [qrels_dir / "test.tsv"] if (qrels_dir / "test.tsv").is_file() else []
    if not files:
        files = sorted(qrels_dir.glob("*.tsv"))
    if not files:
        raise DatasetError(f"{directory}: no qrels/test.tsv or qrels/*.tsv found")
    qrels: dict[str, list[str]] = {}
    for qfile in files:
        with qfile.open(encoding="utf-8", newline="") as fh:
            for lineno, fields in enumerate(csv.reader(fh, delimiter="\t"), start=1):
                if not fields or not "".join(fields).strip():
                    continue
                if lineno == 1 and fields[0].strip() == "query-id":
                    continue
                if len(fields) < 3:
                    raise DatasetError(
                        f"{qfile}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score'"
                    )
                try:
                    score = float(fields[2])
                except ValueError as exc:
                    raise DatasetError(
                        f"{qfile}:{lineno}: score {fields[2]!r} is not a number"
                    ) from exc
                if score > 0:
                    golds = qrels.setdefault(fields[0].strip(), [])
                    cid = fields[1].strip()
                    if cid not in golds:
                        golds.append(cid)
    return qrels


def load_beir(directory: str | Path, name: str | None = None) -> Dataset:
    """Load a BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv (or qrels/*.tsv).

    BEIR has one shared corpus, so examples carry no passages of their own and `pooled_passages()`
    returns the corpus. Passage ids keep BEIR's `_id` so they match the qrels and other BEIR tools.
    Answers are empty (retrieval-only); queries without a positive qrel are counted in `skipped`.

    Args:
        directory: The BEIR dataset folder.
        name: Dataset name for reports; defaults to the folder name.

    Returns:
        The dataset, with `corpus` set.

    Raises:
        DatasetError: On a missing file, malformed JSON or a missing field, naming file:line.
    """
    directory = Path(directory)
    corpus_path = _find_file(directory, "corpus")
    queries_path = _find_file(directory, "queries")
    corpus: list[Passage] = []
    for lineno, row in _iter_rows(corpus_path):
        pid = str(_require(row, "_id", corpus_path, lineno))
        text = _require(row, "text", corpus_path, lineno)
        corpus.append(Passage(id=pid, title=str(row.get("title") or ""), text=str(text)))
    qrels = _read_qrels(directory)
    examples: list[QAExample] = []
    skipped = 0
    for lineno, row in _iter_rows(queries_path):
        qid = str(_require(row, "_id", queries_path, lineno))
        text = _require(row, "text", queries_path, lineno)
        if qid not in qrels:
            skipped += 1
            continue
        examples.append(
            QAExample(
                id=qid, question=str(text), answers=[], passages=[], gold_passage_ids=qrels[qid]
            )
        )
    return Dataset(name=name or directory.name, examples=examples, skipped=skipped, corpus=corpus)


# --------------------------------------------------------------------------- dispatch


def data_dir_source() -> tuple[Path, str]:
    """The folder of the short-named sets and how it was chosen (for messages).

    ``$RAGKIT_DATA`` when set (``$RAGKIT_SHARED_DATA``, its former name, still works), else
    ``../shared/data`` relative to the working directory (the development layout). Nothing depends
    on where ragkit itself is installed.
    """
    for var in (DATA_ENV, "RAGKIT_SHARED_DATA"):
        value = os.environ.get(var)
        if value:
            return Path(value).expanduser(), f"${var}"
    return Path.cwd().parent / "shared" / "data", f"${DATA_ENV} is not set"


def shared_data_dir() -> Path:
    """The folder holding the short-named evaluation sets (it may not exist)."""
    return data_dir_source()[0]


def _missing_short_name(key: str, path: Path) -> DatasetError:
    """The error for a short name whose file is absent: where it looked and how to get the set."""
    _, how = data_dir_source()
    repo, inside = SOURCES[key]
    return DatasetError(
        f"dataset '{key}' expects {path} ({how}), which does not exist; get {inside} from {repo}, "
        f"save it as <folder>/{SHORT_NAMES[key]} and set {DATA_ENV}=<folder>, "
        "or pass the file's path instead of the short name"
    )


def load_dataset(path_or_name: str | Path) -> Dataset:
    """Load a dataset by short name (see `SHORT_NAMES`) or path, detecting the format.

    A directory with corpus.jsonl is BEIR; a file whose rows have `context` is HotpotQA/2Wiki;
    anything else is simple QA JSONL (including NQ-open-oracle).

    Args:
        path_or_name: A short name such as "hotpotqa" or "nq-open", or a file/folder path.

    Returns:
        The dataset.

    Raises:
        DatasetError: If the name or path does not exist or the data is malformed.
    """
    key = str(path_or_name)
    if key in SHORT_NAMES:
        path = shared_data_dir() / SHORT_NAMES[key]
        if not path.is_file():
            raise _missing_short_name(key, path)
        name = key
    else:
        path = Path(path_or_name)
        if not path.exists():
            known = ", ".join(SHORT_NAMES)
            raise DatasetError(f"{path}: no such file or folder (short names: {known})")
        name = _stem(path) if path.is_file() else path.name
    if path.is_dir():
        return load_beir(path, name=name)
    rows = list(_iter_rows(path))
    if any("context" in row for _, row in rows):
        return _hotpot_from_rows(rows, path, name)
    return _simple_from_rows(rows, path, name)
