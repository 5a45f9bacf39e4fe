"""Answering through the real CLI: local SmolLM2, an OpenAI-compatible HTTP server, and eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_run import ragkit

from ragkit.testing import OpenAICompatServer


def server_profile(tmp_path: Path, base_url: str) -> Path:
    profile = {
        "components": {
            "generator": {
                "type": "haystack.components.generators.chat.openai.OpenAIChatGenerator",
                "init_parameters": {
                    "api_base_url": base_url,
                    "model": "test",
                    "api_key": {
                        "type": "env_var",
                        "env_vars": ["RAGKIT_TEST_KEY"],
                        "strict": False,
                    },
                    "max_retries": 0,
                    "timeout": 10,
                },
            },
            "fitter": {"init_parameters": {"tokenizer": None}},
        }
    }
    path = tmp_path / "server-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_local_model_answer_streams_then_sources(sample_store: Path) -> None:
    code, out, err = ragkit(
        "query",
        "Which planet has the strongest winds?",
        "--store",
        str(sample_store),
        "--top-k",
        "3",
        "--profile",
        "cpu-small",  # the default profile's Qwen reader is fetched on request; CI has SmolLM2
    )
    assert code == 0, err
    assert out.startswith("answer: ")
    answer_part, sources_part = out.split("\nsources:\n", 1)
    assert len(answer_part) > len("answer: ") + 2
    assert "solar_system.md" in sources_part

    code, out, err = ragkit(
        "query", "Which planet has the strongest winds?", "--store", str(sample_store), "--json",
        "--profile", "cpu-small",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"]
    assert data["usage"]["prompt_tokens"] > 50 and data["usage"]["completion_tokens"] > 0
    assert data["timings"]["total_seconds"] > 0 and "generate_seconds" in data["timings"]
    assert data["passages"][0]["source"].endswith("solar_system.md")
    assert data["sources"]


def test_openai_compatible_server_route_with_streaming(
    sample_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")
    with OpenAICompatServer(lambda messages: "Neptune has the strongest winds [1]") as server:
        profile = server_profile(tmp_path, server.base_url)
        code, out, err = ragkit(
            "query",
            "Which planet has the strongest winds?",
            "--store",
            str(sample_store),
            "--profile",
            str(profile),
        )
        assert code == 0, err
        assert out.startswith("answer: Neptune has the strongest winds [1]\nsources:\n[1]")
        assert server.requests[-1]["stream"] is True  # the CLI streams
        prompt = json.dumps(server.requests[-1]["messages"])
        assert "Neptune" in prompt and "Which planet has the strongest winds?" in prompt
        code, out, err = ragkit(
            "query",
            "Which planet?",
            "--store",
            str(sample_store),
            "--profile",
            str(profile),
            "--json",
        )
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] == "Neptune has the strongest winds [1]"
        assert len(data["sources"]) == 1  # only the cited passage
        assert not server.requests[-1].get("stream")


def test_unreachable_server_is_one_line(
    sample_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")
    profile = server_profile(tmp_path, "http://127.0.0.1:9/v1")
    code, _, err = ragkit(
        "query", "Which planet?", "--store", str(sample_store), "--profile", str(profile)
    )
    assert code == 1
    assert err.strip().count("\n") == 0
    assert (
        "cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1/chat/completions" in err
    )


QA = [
    (
        "Who wrote Hamlet?",
        "William Shakespeare",
        "Hamlet",
        "Hamlet is a tragedy written by William Shakespeare around 1600.",
    ),
    (
        "What is the capital of Peru?",
        "Lima",
        "Peru",
        "Lima is the capital and largest city of Peru.",
    ),
    (
        "Which gas do plants absorb?",
        "carbon dioxide",
        "Photosynthesis",
        "Plants absorb carbon dioxide during photosynthesis.",
    ),
    (
        "Who painted the Mona Lisa?",
        "Leonardo da Vinci",
        "Mona Lisa",
        "The Mona Lisa was painted by Leonardo da Vinci.",
    ),
    (
        "How many legs does a spider have?",
        "eight",
        "Spider",
        "Spiders have eight legs and two body segments.",
    ),
]


def make_dataset(tmp_path: Path) -> Path:
    rows = []
    for q, a, title, text in QA:
        distractors = [{"title": t, "text": x} for _, _, t, x in QA if t != title][:2]
        rows.append(
            {
                "question": q,
                "answers": [a],
                "passages": [{"title": title, "text": text, "isgold": True}, *distractors],
            }
        )
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_metrics_resume_and_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")
    dataset = make_dataset(tmp_path)
    # the "model" knows three of the five answers
    known = {q: a for q, a, *_ in QA[:3]}

    def responder(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        return next((a for q, a in known.items() if q in str(user)), "no idea")

    with OpenAICompatServer(responder) as server:
        profile = server_profile(tmp_path, server.base_url)
        out_dir = tmp_path / "run"
        common = [
            "eval",
            str(dataset),
            "--pipeline",
            "rag",
            "--profile",
            str(profile),
            "--out",
            str(out_dir),
            "--json",
        ]
        code, out, err = ragkit(*common, "--limit", "2")
        assert code == 0, err
        assert json.loads(out)["count"] == 2
        calls = len(server.requests)
        code, out, err = ragkit(*common, "--resume")
        assert code == 0, err
        assert len(server.requests) - calls == 3  # only the three missing questions ran
        summary = json.loads(out)
        assert summary["count"] == 5
        assert summary["metrics"]["em"] == pytest.approx(0.6)
        assert summary["metrics"]["recall@1"] == pytest.approx(
            1.0
        )  # pooled: 5 distinct passages, easy
        records = [
            json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()
        ]
        assert len(records) == 5 and len({r["id"] for r in records}) == 5
        assert (out_dir / "summary.json").exists()

        code, out, err = ragkit("eval", str(dataset), "--pipeline", "rag", "--profile", str(profile),
                                "--out", str(tmp_path / "pq"), "--mode", "per-question", "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["metrics"]["em"] == pytest.approx(0.6)


def test_eval_bad_dataset_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answers": ["a"]}\n{"answers": ["b"]}\n')
    code, _, err = ragkit("eval", str(bad), "--pipeline", "rag")
    assert code == 2
    assert f"{bad}:2" in err and "question" in err


def test_haystack_transformers_chat_generator_plugs_in(sample_store: Path, tmp_path: Path) -> None:
    """Any Haystack chat generator drops in by profile: here transformers-haystack's, on SmolLM2."""
    from ragkit.models.gguf_cache import ensure_converted
    from ragkit.models.registry import resolve_model

    model_dir = ensure_converted(resolve_model("smollm2-135m-instruct").path)
    profile = tmp_path / "hf.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "generator": {
                        "type": "haystack_integrations.components.generators.transformers.TransformersChatGenerator",
                        "init_parameters": {
                            "model": str(model_dir),
                            "task": "text-generation",  # a local dir: no hub lookup
                            "generation_kwargs": {"max_new_tokens": 24},
                        },
                    }
                }
            }
        )
    )
    code, out, err = ragkit("query", "Which planet has the strongest winds?", "--store", str(sample_store),
                            "--profile", str(profile), "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"] and data["passages"][0]["source"].endswith("solar_system.md")


def test_unknown_model_name_lists_known_names(sample_store: Path, tmp_path: Path) -> None:
    profile = tmp_path / "bad-model.yaml"
    profile.write_text(
        yaml.safe_dump(
            {"components": {"generator": {"init_parameters": {"model": "no-such-model"}}}}
        )
    )
    code, _, err = ragkit(
        "query", "Which planet?", "--store", str(sample_store), "--profile", str(profile)
    )
    assert code == 1
    assert err.startswith("error: ") and err.strip().count("\n") == 0
    assert "no-such-model" in err and "smollm2-135m-instruct" in err and "minilm" in err
