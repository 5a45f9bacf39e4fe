"""``ragkit bench reader``: settings parsing, the table against the baseline, the CLI's checks.

The timed run itself needs the HotpotQA data and a GGUF reader; it is one ``slow`` test on the
packaged SmolLM2 through llama.cpp. Timings are never asserted (they belong in the bench's
output, docs/benchmarks/reader.md), only their shape.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ragkit.bench.llamacpp_bench import (
    _reader_rows,
    _reader_summary,
    format_reader_table,
    parse_setting,
)
from ragkit.cli import app

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


def test_settings_parse_to_init_parameters() -> None:
    assert parse_setting("flash_attn=true") == {"flash_attn": True}
    assert parse_setting("n_batch=128+n_ubatch=64") == {"n_batch": 128, "n_ubatch": 64}
    assert parse_setting("n_threads=null") == {"n_threads": None}
    assert parse_setting(" reuse_prefix = FALSE ") == {"reuse_prefix": False}
    for bad, match in (
        ("n_batch", "key=value"),
        ("n_ctx=10", "not one of"),
        ("n_batch=lots", "takes an integer"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_setting(bad)


def _call(prompt: int, prefill: float, decode: float, text: str) -> dict[str, Any]:
    return {"round": 0, "prompt": prompt, "prefill_s": prefill, "decode_s": decode,
            "prompt_tokens": 600, "completion_tokens": 3, "prefix_tokens_reused": 41,
            "text": text}  # fmt: skip


def _result() -> dict[str, Any]:
    labels = ["baseline", "n_threads=1"]
    llama = {"n_ctx": 8192, "n_threads": 1, "n_threads_batch": 2, "n_batch": 512,
             "n_ubatch": 512, "flash_attn": False, "reuse_prefix": True}  # fmt: skip
    gens = {label: SimpleNamespace(_lm=SimpleNamespace(latency_settings=llama)) for label in labels}
    params = {"baseline": {"n_ctx": 8192}, "n_threads=1": {"n_ctx": 8192, "n_threads": 1}}
    record = {
        "baseline": [_call(0, 4.0, 1.0, "Rush"), _call(1, 2.0, 1.0, "Paris")],
        "n_threads=1": [_call(0, 2.0, 1.0, "Rush"), _call(1, 1.0, 0.5, "France")],
    }
    per_setting = _reader_summary(labels, params, gens, record)
    return {"profile": "cpu-quality", "model": "qwen", "reader": {"n_ctx": 8192},
            "prompts": 2, "rounds": 1, "prompt_tokens": [500, 700], "questions": ["a", "b"],
            "settings": per_setting, "rows": _reader_rows(labels, per_setting)}  # fmt: skip


def test_rows_compare_each_setting_with_the_baseline_and_flag_changed_answers() -> None:
    result = _result()
    setting = result["settings"]["n_threads=1"]
    assert setting["prefill_s"] == 1.5 and setting["decode_s"] == 0.75
    assert not setting["same_answers"] and setting["differing_answers"] == [
        {"prompt": 1, "baseline": "Paris", "setting": "France"}
    ]
    assert result["settings"]["baseline"]["same_answers"]
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["n_threads=1: prefill per prompt (s)"]["ratio"] == 2.0  # 3.0 s -> 1.5 s
    assert rows["baseline: prefill per prompt (s)"]["ratio"] is None
    table = format_reader_table(result)
    assert "2 HotpotQA prompts of 500-700 tokens (mean 600)" in table
    line = next(x for x in table.splitlines() if x.startswith("n_threads=1: prefill"))
    assert line.endswith("2.00x")
    assert "same answers as baseline: False (1 of 2 differ)" in table
    assert "prompt 2: baseline 'Paris', n_threads=1 'France'" in table


@pytest.mark.skipif(not HAS_LLAMA, reason="needs the llamacpp extra")
def test_cli_refuses_a_bad_setting_before_loading_anything() -> None:
    result = CliRunner().invoke(app, ["bench", "reader", "--setting", "n_ctx=4"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --setting: setting 'n_ctx=4': 'n_ctx' is not one of")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA, reason="needs the llamacpp extra")
def test_reader_bench_runs_on_the_packaged_gguf(tmp_path: Path) -> None:
    from ragkit.bench.llamacpp_bench import run_reader_bench
    from ragkit.evaluation.datasets import DatasetError, load_dataset

    try:
        load_dataset("hotpotqa")
    except DatasetError:
        pytest.skip("HotpotQA data not present (../shared/data or $RAGKIT_DATA)")
    profile = tmp_path / "smol-llama.yaml"
    reader = {"model": "smollm2-135m-instruct", "n_ctx": 2048, "n_threads": 1,
              "generation_kwargs": {"max_new_tokens": 8}}  # fmt: skip
    generator = {"type": "ragkit.models.llamacpp_components.LlamaCppChatGenerator",
                 "init_parameters": reader}  # fmt: skip
    profile.write_text(yaml.safe_dump({"components": {"generator": generator}}))
    result = run_reader_bench(
        1, ["n_batch=64"], profile=str(profile), prompt_tokens=300, control=False, progress=False
    )
    assert list(result["settings"]) == ["baseline", "n_batch=64"]
    assert result["settings"]["n_batch=64"]["llama_cpp"]["n_batch"] == 64
    for info in result["settings"].values():
        assert info["prefill_s"] > 0 and info["prefix_tokens_reused"] > 0  # warm-up's instruction
    assert len(result["rows"]) == 4 and 0 < result["prompt_tokens"][0] <= 300
