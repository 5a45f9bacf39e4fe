"""``ragkit eval --ray`` answers the same as a single-process run, and ``--resume`` still works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

from cli_run import ragkit  # noqa: E402

# retrieval as in pipelines/rag.yaml; the reader is scripted, so the test loads no LLM
PIPELINE = """
components:
  query_embedder:
    type: ragkit.retrieval.embedders.TextEmbedder
    init_parameters: {model: minilm}
  dense:
    type: ragkit.retrieval.components.DenseRetriever
    init_parameters: {top_k: 5}
  bm25:
    type: ragkit.retrieval.components.BM25Retriever
    init_parameters: {top_k: 5}
  joiner:
    type: haystack.components.joiners.document_joiner.DocumentJoiner
    init_parameters: {join_mode: reciprocal_rank_fusion, weights: [0.5, 0.5], top_k: 2}
  prompt_builder:
    type: haystack.components.builders.chat_prompt_builder.ChatPromptBuilder
    init_parameters:
      template: |
        {% message role="user" %}
        {% for doc in documents %}[{{ loop.index }}] {{ doc.content }}
        {% endfor %}Question: {{ question }}
        {% endmessage %}
  scripted:
    type: ragkit.testing.scripted.ScriptedChatGenerator
    init_parameters:
      rules:
        - {contains: "Question: Which planet", reply: "Neptune"}
        - {contains: "Question: Where is Etna", reply: "Sicily"}
  answer_builder:
    type: haystack.components.builders.answer_builder.AnswerBuilder
    init_parameters: {}
connections:
  - {sender: query_embedder.embedding, receiver: dense.query_embedding}
  - {sender: dense.documents, receiver: joiner.documents}
  - {sender: bm25.documents, receiver: joiner.documents}
  - {sender: joiner.documents, receiver: prompt_builder.documents}
  - {sender: prompt_builder.prompt, receiver: scripted.messages}
  - {sender: scripted.replies, receiver: answer_builder.replies}
  - {sender: joiner.documents, receiver: answer_builder.documents}
"""

# what may differ between two runs of the same questions: wall times
TIMES = ("seconds", "seconds_prefill", "seconds_decode")


def records(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_id = {r["id"]: {k: v for k, v in r.items() if k not in TIMES} for r in rows}
    assert len(by_id) == len(rows), "a question was recorded twice"
    return by_id


@pytest.mark.parametrize("mode", ["pooled", "per-question"])
def test_eval_on_ray_equals_a_single_process_run_and_resumes(
    mode: str, ray_cluster: str, mini_qa_file: Path, tmp_path: Path
) -> None:
    pipeline = tmp_path / "scripted_rag.yaml"
    pipeline.write_text(PIPELINE)
    common = ["eval", str(mini_qa_file), "--pipeline", str(pipeline), "--mode", mode, "--json"]
    code, out, err = ragkit(*common, "--out", str(tmp_path / "plain"))
    assert code == 0, err
    plain = json.loads(out)
    ray_args = ["--out", str(tmp_path / "ray"), "--ray", ray_cluster, "--ray-workers", "2"]
    code, out, err = ragkit(*common, *ray_args)
    assert code == 0, err
    on_ray = json.loads(out)
    assert on_ray["metrics"] == plain["metrics"] and on_ray["metrics"]["em"] == 1.0
    assert records(tmp_path / "ray") == records(tmp_path / "plain")

    # an interrupted run: the last record is lost; --resume makes only that answer again
    results = tmp_path / "ray" / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text(lines[0] + "\n")
    code, out, err = ragkit(*common, *ray_args, "--resume")
    assert code == 0, err
    again = results.read_text().splitlines()
    assert again[0] == lines[0] and len(again) == 2
    assert records(tmp_path / "ray") == records(tmp_path / "plain")
