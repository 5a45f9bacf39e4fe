"""Shared fixtures: the real packaged SmolLM2, converted once per session into a tmp cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache root for converted GGUFs: the session's RAGKIT_CACHE, shared with the CLI tests."""
    return Path(os.environ["RAGKIT_CACHE"])


@pytest.fixture(scope="session")
def lm(model_cache_dir: Path):
    """SmolLM2-135M-Instruct on CPU fp32, loaded once (first load converts the GGUF, ~20 s)."""
    from ragkit.models.causal_lm import CausalLM

    return CausalLM.load(MODEL, device="cpu", cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def chat_ids(lm) -> list[int]:
    """A short chat prompt that makes the model write more than a few tokens."""
    return lm.apply_chat_template(
        [{"role": "user", "content": "List three colors of the rainbow."}]
    )


@pytest.fixture(scope="session")
def doc_prompt(lm) -> tuple[list[int], list[int], list[int]]:
    """(prefix ids = system + document, suffix ids of question 1, suffix ids of question 2)."""
    from pydoc_data.topics import topics

    doc = topics["assert"][:1200]
    prefix = lm.encode(
        lm.chat_template_text([{"role": "user", "content": f"Document:\n{doc}"}]).split(
            "<|im_end|>\n<|im_start|>assistant"
        )[0]
    )
    q1 = lm.encode("\nQuestion: What does assert do?<|im_end|>\n<|im_start|>assistant\n")
    q2 = lm.encode("\nQuestion: When are assertions removed?<|im_end|>\n<|im_start|>assistant\n")
    return prefix, q1, q2


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread():
    """On a 2-core machine shared with other jobs, 2 OpenMP threads run ~5x slower than 1."""
    if (os.cpu_count() or 1) > 2:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
