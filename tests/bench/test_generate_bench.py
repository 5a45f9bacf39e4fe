"""`ragkit bench generate`: the prefix rows compare with what transformers and llama-cpp-python do."""

from __future__ import annotations

import importlib.util

import pytest

from ragkit.bench.generate_bench import format_table


def _result() -> dict:
    return {
        "model": "m",
        "device": "cpu",
        "dtype": "float32",
        "torch_threads": 1,
        "transformers_version": "5",
        "max_new_tokens": 8,
        "throughput": {
            "completion_tokens": 8,
            "ragkit_tokens_per_second": 10.0,
            "transformers_tokens_per_second": 10.0,
            "ratio": 1.0,
            "target": 0.95,
            "identical_tokens": True,
        },
        "first_token": {
            "short_prompt_seconds": 0.1,
            "document_cached_seconds": 0.1,
            "document_cold_seconds": 2.0,
        },
        "prefix_cache": {
            "document_tokens": 300,
            "completion_tokens": 8,
            "cached_seconds": 0.5,
            "cold_seconds": 2.5,
            "ratio": 0.2,
            "target": 0.25,
            "first_token_ratio": 0.05,
            "prefill_seconds": 2.0,
            "cache_megabytes": 10.0,
            "identical_output": True,
        },
        "library_prefix": {
            "transformers_cached_seconds": 0.5,
            "transformers_cached_identical": True,
            "restart_load_seconds": 0.1,
            "ragkit_cached_best_seconds": 0.5,
            "restart_answer_seconds": 0.5,
            "restart_identical": True,
            "alternating_documents": 2,
            "alternating_questions": 4,
            "alternating_ragkit_seconds_per_question": 0.5,
            "alternating_transformers_seconds_per_question": 2.5,
            "alternating_identical": True,
        },
    }


def test_table_shows_the_library_baselines_with_ratios() -> None:
    lines = format_table(_result()).splitlines()
    past = next(line for line in lines if "past_key_values" in line)
    assert "0.50" in past and "1.000" in past and "same output: True" in past
    restart = next(line for line in lines if line.startswith("after a restart"))
    assert "0.60" in restart and "2.50" in restart and "0.240" in restart
    alternating = next(line for line in lines if "documents alternating" in line)
    assert "0.200" in alternating


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="needs the llamacpp extra"
)
def test_llamacpp_rows_against_the_library_prefix_reuse() -> None:
    from ragkit.bench.llamacpp_bench import format_table as llama_table
    from ragkit.bench.llamacpp_bench import run_llamacpp_bench

    result = run_llamacpp_bench(
        max_new_tokens=8, doc_tokens=300, progress=False, n_ctx=1024, n_threads=1, repeats=1
    )
    names = {r["baseline_name"] for r in result["rows"]}
    assert {"Llama last-prompt reuse", "Llama + LlamaRAMCache", "Llama + LlamaDiskCache"} <= names
    assert result["prefix_identical"] and result["reloaded_identical"]
    lib = result["library_prefix"]
    # greedy decoding: the library's own reuse paths must produce ragkit's text
    assert lib["same_doc_library_same_text"] and lib["alternating_library_same_text"]
    assert lib["restart_library_same_text"]
    assert "LlamaDiskCache" in llama_table(result)
