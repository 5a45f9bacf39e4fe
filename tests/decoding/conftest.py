"""Shared fixture: the packaged SmolLM2 on CPU through transformers, loaded once per module."""

from __future__ import annotations

import os

import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def lm():
    """SmolLM2-135M-Instruct (transformers, fp32, CPU), one torch thread on a 2-core machine."""
    from ragkit.models.causal_lm import CausalLM

    if (os.cpu_count() or 1) <= 2:
        import torch

        torch.set_num_threads(1)
    model = CausalLM.load(MODEL, device="cpu", cache_dir=os.environ["RAGKIT_CACHE"])
    yield model
    model.close()
