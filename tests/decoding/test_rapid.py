"""RAPID long-document QA: chunks, retrieval, the truncation policy, the prompt split, the
document prefix on disk, the component and ``ragkit query --pipeline rapid --document``.

Pure functions run on a character-level fake tokenizer; the component and the CLI run on the
packaged SmolLM2 through llama.cpp (fast), where greedy output must equal the target's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_run import runner

from ragkit.decoding.rapid import (
    DocumentPrefixStore,
    build_rapid_prompt,
    chunk_document,
    fit_document,
    rag_tokens,
    retrieve_chunks,
    split_prompt,
)
from ragkit.errors import InvalidParameter
from ragkit.models.errors import ContextLengthError

MODEL = "smollm2-135m-instruct"
REPO = Path(__file__).resolve().parents[2]


class CharLM:
    """One token per character: token counts are visible in the text itself."""

    name = "chars"

    def __init__(self, context_length: int = 10_000) -> None:
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(i) for i in ids)

    def chat_template_text(self, messages) -> str:
        return f"<user>{messages[0]['content']}<assistant>"


def paragraphs(n: int) -> str:
    return "\n\n".join(
        f"Paragraph {i} is about the town of Place{i}, founded in year {1000 + i}."
        for i in range(n)
    )


# ---------------------------------------------------------------------- pure functions


def test_chunks_cover_the_document_in_order() -> None:
    text = paragraphs(20)
    chunks = chunk_document(CharLM(), text, chunk_tokens=50)
    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens <= 50 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_rag_context_size_is_rapids_rule() -> None:
    assert rag_tokens(8192, 1024, 32) == 1024  # budget wins at 8k
    assert rag_tokens(65536, 1024, 32) == 2048  # L/32 wins at 64k
    assert rag_tokens(500, 1024, 32) == 500  # a short document is read whole


def test_retrieval_finds_the_relevant_chunk_and_keeps_document_order() -> None:
    text = paragraphs(30)
    chunks = chunk_document(CharLM(), text, chunk_tokens=80)
    picked = retrieve_chunks(chunks, "When was Place17 founded? And Place3?", 2)
    assert [c.index for c in picked] == sorted(c.index for c in picked)
    joined = " ".join(c.text for c in picked)
    assert "Place17" in joined and "Place3," in joined
    assert all(c.score and c.score > 0 for c in picked)
    # no term in common: the leading chunks, so the drafter still has context
    assert [c.index for c in retrieve_chunks(chunks, "zzz qqq", 3)] == [0, 1, 2]


def test_prefix_is_the_same_for_every_question() -> None:
    lm = CharLM()
    p1, s1 = split_prompt(lm, "Answer.", "the document", "first question?")
    p2, s2 = split_prompt(lm, "Answer.", "the document", "another one?")
    assert p1 == p2
    assert s1 != s2
    assert lm.decode(p1 + s1).endswith("Question: first question?<assistant>")
    assert "the document" in lm.decode(p1)


def test_a_document_that_fits_is_not_cut() -> None:
    text = paragraphs(5)
    fitted, n, cut = fit_document(CharLM(), text, instruction="Answer.", reserve_tokens=50)
    assert (fitted, n, cut) == (text, len(text), None)


def test_middle_truncation_keeps_both_ends_and_says_so() -> None:
    lm = CharLM(context_length=600)
    text = paragraphs(40)
    fitted, n, cut = fit_document(lm, text, instruction="Answer.", reserve_tokens=100)
    prefix, suffix = split_prompt(lm, "Answer.", fitted, "q?")
    assert len(prefix) + 100 <= 600  # question and answer still fit
    assert fitted.startswith("Paragraph 0 ") and fitted.endswith("year 1039.")
    assert "Place20" not in fitted and "tokens omitted" in fitted
    assert cut is not None and cut.policy == "middle"
    assert cut.document_tokens == len(text) and cut.kept_tokens < len(text)
    assert cut.dropped[0] < cut.dropped[1]
    assert str(len(text)) in cut.message() and "truncation: middle" in cut.message()


def test_head_truncation_and_refusal() -> None:
    lm = CharLM(context_length=600)
    text = paragraphs(40)
    fitted, _, cut = fit_document(lm, text, instruction="A.", reserve_tokens=100, policy="head")
    assert text.startswith(fitted) and cut is not None and cut.dropped[1] == len(text)
    with pytest.raises(ContextLengthError, match="truncation"):
        fit_document(lm, text, instruction="A.", reserve_tokens=100, policy="error")


def test_build_prompt_gives_the_drafter_only_retrieved_chunks() -> None:
    lm = CharLM()
    text = paragraphs(60)
    prompt = build_rapid_prompt(
        lm, text, "When was Place42 founded?", chunk_tokens=100, budget_tokens=300, ratio=32
    )
    draft_text = lm.decode(prompt.draft_ids)
    assert "Place42" in draft_text
    assert len(prompt.draft_ids) < len(prompt.target_ids) / 3
    assert prompt.rag_tokens <= 300 and prompt.total_chunks > len(prompt.chunks)
    assert prompt.info()["truncation"] is None


def test_prefix_key_depends_on_the_model_and_the_content(tmp_path: Path) -> None:
    class Gguf(CharLM):
        def __init__(self, sha: str, n_ctx: int = 4096) -> None:
            super().__init__(n_ctx)
            self.model_sha256 = sha
            self.llama_cpp_version = "0.3.36"

    store = DocumentPrefixStore(tmp_path)
    a, b = Gguf("aa"), Gguf("bb")
    key = store.key(a, [1, 2, 3])
    assert key == store.key(Gguf("aa"), [1, 2, 3])  # same model file, same document
    assert key != store.key(a, [1, 2, 4])  # other content
    assert key != store.key(b, [1, 2, 3])  # other weights
    assert key != store.key(Gguf("aa", n_ctx=8192), [1, 2, 3])  # other context allocation
    assert store.path_for(a, [1, 2, 3]) == tmp_path / key
    assert DocumentPrefixStore(None).path_for(a, [1]) is None


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"speculation": {"gamma": 0}}, "speculation.gamma"),
        ({"speculation": {"eta": -0.5}}, "speculation.eta"),
        ({"speculation": {"alpha": 0.0}}, "speculation.alpha"),
        ({"speculation": {"alpha": 1.5}}, "speculation.alpha"),
        ({"context": {"truncation": "cut"}}, "context.truncation"),
        ({"context": {"chunk_tokens": 0}}, "context.chunk_tokens"),
        ({"context": {"chunk_tokens": 0.5}}, "context.chunk_tokens"),
        ({"drafter": {"name": "x", "backend": "transformers"}}, "drafter.backend"),
        ({"target": {"nme": "x"}}, "target.nme"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict, parameter: str) -> None:
    from ragkit.decoding.components import RapidReader

    with pytest.raises(InvalidParameter) as err:
        RapidReader(**kwargs)
    assert err.value.parameter == parameter


def test_nested_settings_load_from_the_shipped_yaml_and_round_trip() -> None:
    import yaml
    from haystack.core.serialization import component_from_dict, component_to_dict

    from ragkit.decoding.components import RapidReader
    from ragkit.pipeline import load_pipeline

    reader = load_pipeline(REPO / "pipelines" / "rapid.yaml").get_component("rapid")
    shipped = yaml.safe_load((REPO / "pipelines" / "rapid.yaml").read_text())
    given = shipped["components"]["rapid"]["init_parameters"]
    assert reader.target.model_dump(include=set(given["target"])) == given["target"]
    assert reader.drafter.name == "qwen2.5-coder-0.5b-instruct"
    assert reader.drafter.n_ctx == reader.target.n_ctx == 16384  # left out: the target's
    assert reader.speculation.fallback is not None and reader.context.ratio == 32
    data = component_to_dict(reader, "rapid")
    assert component_to_dict(component_from_dict(RapidReader, data, "rapid"), "rapid") == data


def test_the_flat_form_loads_with_a_warning_naming_the_new_key(tmp_path: Path, caplog) -> None:
    import logging

    from ragkit.pipeline import load_pipeline

    flat = tmp_path / "flat.yaml"
    flat.write_text(
        "components:\n  rapid:\n    type: ragkit.decoding.components.RapidReader\n"
        "    init_parameters:\n      model: qwen2.5-coder-1.5b-instruct\n"
        "      drafter: model+ngram\n      draft_model: qwen2.5-coder-0.5b-instruct\n"
        "      budget_tokens: 512\n      n_ctx: 4096\nconnections: []\n"
    )
    with caplog.at_level(logging.WARNING), pytest.warns(DeprecationWarning, match="budget_tokens"):
        reader = load_pipeline(flat).get_component("rapid")
    assert reader.context.budget_tokens == 512 and reader.target.n_ctx == 4096
    assert reader.drafter.name == "qwen2.5-coder-0.5b-instruct"
    assert reader.speculation.fallback is not None
    logged = caplog.text
    assert f"{flat}: components.rapid: RapidReader: init parameter 'budget_tokens'" in logged
    assert "use 'context.budget_tokens'" in logged and "use 'target.n_ctx'" in logged
    bad = tmp_path / "bad.yaml"
    bad.write_text(flat.read_text().replace("budget_tokens: 512", "budget_tokens: 0"))
    from ragkit.pipeline import validate_pipeline_file

    with pytest.warns(DeprecationWarning):
        problems = validate_pipeline_file(bad)
    assert problems == [
        f"{bad}: components.rapid.init_parameters.context.budget_tokens: must be >= 1, got 0"
    ]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        (
            "gamma: 10 ",
            "gamma: 0 ",
            "components.rapid.init_parameters.speculation.gamma: must be a positive",
        ),
        (
            "eta: 0.0 ",
            "eta: -1.0 ",
            "components.rapid.init_parameters.speculation.eta: must be >= 0",
        ),
        (
            "alpha: 0.1 ",
            "alpha: 2.0 ",
            "components.rapid.init_parameters.speculation.alpha: must be in (0, 1]",
        ),
        ("ratio: 32", "ratio: 0", "components.rapid.init_parameters.context.ratio: must be >= 1"),
        (
            "n_ctx: 16384",
            "n_ctx: lots",
            "components.rapid.init_parameters.target.n_ctx: input should be a valid integer",
        ),
    ],
)
def test_rapid_yaml_errors_name_the_yaml_path(tmp_path: Path, old: str, new: str, path: str):
    from ragkit.pipeline import validate_pipeline_file

    shipped = (REPO / "pipelines" / "rapid.yaml").read_text()
    assert validate_pipeline_file(REPO / "pipelines" / "rapid.yaml") == []
    assert old in shipped
    bad = tmp_path / "bad.yaml"
    bad.write_text(shipped.replace(old, new))
    problems = validate_pipeline_file(bad)
    assert len(problems) == 1 and path in problems[0]


# ---------------------------------------------------------------------- real model (llama.cpp)


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("llama_cpp")
    from ragkit.models.llamacpp import LlamaCppLM

    target = LlamaCppLM.load(MODEL, n_ctx=2048, n_threads=1)
    draft = LlamaCppLM.load(MODEL, n_ctx=2048, n_threads=1)
    yield target, draft
    target.close()
    draft.close()


DOC = (
    "\n\n".join(
        f"Station {i} of the survey lies {3 * i + 2} kilometres north of the river mouth and "
        f"records a mean depth of {40 + i} metres."
        for i in range(40)
    )
    + "\n\nThe survey was led by the hydrographer Mira Olsen in the summer of 1911."
)
QUESTION = "Who led the survey, and in which year?"


def _reader(target, draft, tmp_path: Path, **kwargs):
    from ragkit.decoding.components import RapidReader

    settings = {
        "cache_dir": str(tmp_path / "rapid"),
        "context": {"budget_tokens": 256},
        "generation_kwargs": {"max_new_tokens": 24},
        **kwargs,
    }
    return RapidReader.from_models(target, draft, **settings)


SELF_NGRAM = {"drafter": {}, "speculation": {"fallback": {"kind": "ngram"}}}
"""A second instance of the target drafts, n-gram lookup where it is not confident."""


@pytest.fixture(scope="module")
def plain_greedy(smol):
    """The target's own greedy reply to a prompt, from an empty cache: the reference every
    drafter must reproduce. Each prompt is decoded once per module (llama.cpp greedy is
    deterministic), not once per drafter."""
    target, _ = smol
    replies: dict[tuple[int, ...], Any] = {}

    def reply(ids: list[int]):
        if tuple(ids) not in replies:
            target.truncate(0)
            replies[tuple(ids)] = target.generate(ids, max_new_tokens=24)
        return replies[tuple(ids)]

    return reply


@pytest.mark.parametrize("drafter", [{"drafter": "ngram"}, SELF_NGRAM], ids=["ngram", "self+ngram"])
def test_greedy_answer_is_the_targets_and_the_prefix_is_reused_from_disk(
    smol, plain_greedy, tmp_path: Path, drafter: dict
) -> None:
    target, draft = smol
    target.truncate(0)
    reader = _reader(target, draft, tmp_path, **drafter)
    first = reader.run(question=QUESTION, document=DOC)
    trace = first["trace"]
    assert trace["prefix_cache"]["source"] == "computed"
    saved = Path(trace["prefix_cache"]["path"])
    assert (saved / "manifest.json").is_file()
    assert trace["rapid"]["truncation"] is None and trace["warnings"] == []
    assert trace["rapid"]["rag_tokens"] <= 256 + 128
    assert trace["rapid"]["document_tokens"] > 4 * trace["rapid"]["rag_tokens"]
    docs = first["documents"]
    assert docs and [d.meta["chunk"] for d in docs] == sorted(d.meta["chunk"] for d in docs)

    prompt = build_rapid_prompt(target, DOC, QUESTION, budget_tokens=256, reserve_tokens=256)
    plain = plain_greedy(prompt.target_ids)
    assert first["replies"][0].text == plain.text
    assert first["replies"][0].meta["speculative"]["emitted"] >= len(plain.token_ids)

    # a second question in a "new process": caches emptied, the document prefix comes from disk
    target.truncate(0)
    draft.truncate(0)
    again = _reader(target, draft, tmp_path, **drafter)
    second = again.run(question="How deep is station 7?", document=DOC)
    assert second["trace"]["prefix_cache"]["source"] == "disk"
    assert second["trace"]["prefix_cache"]["path"] == str(saved)
    p2 = build_rapid_prompt(
        target, DOC, "How deep is station 7?", budget_tokens=256, reserve_tokens=256
    )
    assert p2.prefix_ids == prompt.prefix_ids
    assert second["replies"][0].text == plain_greedy(p2.target_ids).text


def test_a_too_long_document_is_cut_with_a_warning(smol, tmp_path: Path) -> None:
    target, draft = smol
    long_doc = "\n\n".join([DOC] * 4)  # ~4x the 2048-token context's room
    reader = _reader(target, draft, tmp_path, drafter="ngram", persist_prefix=False)
    out = reader.run(question=QUESTION, document=long_doc)
    cut = out["trace"]["rapid"]["truncation"]
    assert cut["policy"] == "middle"
    assert cut["document_tokens"] > cut["kept_tokens"] and cut["context_tokens"] == 2048
    assert out["trace"]["warnings"] and "left out" in out["trace"]["warnings"][0]
    assert out["trace"]["prefix_cache"]["path"] is None
    assert out["trace"]["rapid"]["target_prompt_tokens"] + 24 <= 2048


def test_a_drafter_with_another_vocabulary_is_refused_naming_both(smol, tmp_path: Path) -> None:
    target, _ = smol

    class OtherVocab:
        name = "other-model"
        vocab_size = 1000

    reader = _reader(target, OtherVocab(), tmp_path, drafter={"name": "other-model"})
    with pytest.raises(InvalidParameter) as err:
        reader.run(question=QUESTION, document=DOC)
    assert "other-model" in str(err.value) and MODEL in str(err.value)
    assert not list(tmp_path.rglob("manifest.json"))  # refused before the document prefill


# ---------------------------------------------------------------------- the CLI


def _cli(*args: str):
    from ragkit.cli import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_document_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    code, _, err = _cli("query", "q?", "--pipeline", "rapid", "--document", str(tmp_path / "no"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "--document" in err and "does not exist" in err
    code, _, err = _cli("query", "q?", "--pipeline", "rapid")
    assert code == 2 and "give --document FILE" in err
    doc = tmp_path / "doc.txt"
    doc.write_text("some text")
    code, _, err = _cli("query", "q?", "--pipeline", "rag", "--document", str(doc))
    assert code == 2 and "no 'document' input" in err


def test_query_document_answers_and_reports_truncation_in_json(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    import yaml

    pipeline = tmp_path / "rapid_small.yaml"
    data = yaml.safe_load((REPO / "pipelines" / "rapid.yaml").read_text())
    params = data["components"]["rapid"]["init_parameters"]
    params["target"] = {"name": MODEL, "backend": "llama.cpp", "n_ctx": 1024, "n_threads": 1}
    params["drafter"] = "ngram"
    del params["speculation"]["fallback"]
    params["cache_dir"] = str(tmp_path)
    params["generation_kwargs"] = {"max_new_tokens": 16}
    pipeline.write_text(yaml.safe_dump(data))
    doc = tmp_path / "survey.txt"
    doc.write_text(DOC)
    args = ["query", QUESTION, "--pipeline", str(pipeline), "--document", str(doc)]
    code, out, err = _cli(*args, "--json", "--profile", "cpu-small")
    assert code == 0, err
    data = json.loads(out)
    trace = data["trace"]["rapid"]
    assert data["answer"]
    assert trace["rapid"]["truncation"]["policy"] == "middle"
    assert trace["prefix_cache"]["source"] == "computed"
    assert "warning: the document has" in err
    code, out, err = _cli(*args, "--profile", "cpu-small")  # the saved prefix is reused
    assert code == 0 and out.startswith("answer: ")
    assert "warning: the document has" in err
