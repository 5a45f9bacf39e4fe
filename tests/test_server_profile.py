"""The ``server`` profile end to end: a real llama.cpp server for answers, the fake for faults.

The real server is ``python -m llama_cpp.server`` (llama-cpp-python's ``server`` extra) serving the
packaged SmolLM2 GGUF on 127.0.0.1, started once per module and always stopped. Faults that a real
server rarely shows on demand (slow answers, HTTP 500, broken stream chunks) come from
:class:`ragkit.testing.OpenAICompatServer`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import ragkit

from ragkit.testing import OpenAICompatServer

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "ragkit" / "data" / "sample"
READY_DEADLINE_S = 60.0
# llama-cpp-python's `server` extra; find_spec looks without importing (no llama.cpp load here)
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                  "pydantic_settings")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """A running ``llama_cpp.server`` process and where its log goes."""

    def __init__(self, base_url: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.log = log
        self.proc = proc

    def completions_served(self) -> int:
        """How many chat completions the server answered with 200 (from uvicorn's access log)."""
        text = self.log.read_text(errors="replace")
        return text.count('"POST /v1/chat/completions HTTP/1.1" 200')


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"llama_cpp.server is not importable (missing {', '.join(missing)}); "
            "install ragkit's `llamacpp` extra"
        )
    from ragkit.models.registry import resolve_model

    model = resolve_model("smollm2-135m-instruct").path
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1",
           "--verbose", "False"]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply,
            ):
                if reply.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server not ready in {READY_DEADLINE_S:.0f} s:\n{log.read_text()}"
                )
            time.sleep(0.25)
        yield LlamaServer(base_url, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def server_profile(tmp_path: Path, base_url: str, **generator: Any) -> Path:
    """configs/server.yaml with an embedded store in ``tmp_path`` and the reader at ``base_url``."""
    profile = yaml.safe_load((REPO / "configs" / "server.yaml").read_text())
    profile["store"] = {"kind": "embedded", "path": str(tmp_path / "store")}
    params = profile["components"]["generator"]["init_parameters"]
    params.update(api_base_url=base_url, model="smollm2", max_retries=0, timeout=30)
    params["api_key"]["env_vars"] = ["RAGKIT_TEST_KEY"]
    params["generation_kwargs"] = {"max_tokens": 48, "temperature": 0.0}
    params.update(generator)
    # SmolLM2 is served with a 4096-token window: keep the prompt well inside it
    profile["components"]["fitter"]["init_parameters"]["context_tokens"] = 1024
    path = tmp_path / "server-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding an embedded store of the sample corpus (profile written per test)."""
    root = tmp_path_factory.mktemp("server-profile")
    profile = server_profile(root, "http://127.0.0.1:9/v1")
    code, _, err = ragkit("index", str(SAMPLE), "--profile", str(profile), "-q")
    assert code == 0, err
    return root


def test_query_against_real_llama_cpp_server(
    llama_server: LlamaServer, indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "sk-local")  # llama.cpp without --api_key accepts any
    profile = server_profile(indexed, llama_server.base_url)
    question = "Which planet has the strongest winds?"
    before = llama_server.completions_served()

    code, out, err = ragkit("query", question, "--profile", str(profile), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"].strip()
    assert data["usage"]["prompt_tokens"] > 50  # the passages reached the model
    assert 0 < data["usage"]["completion_tokens"] <= 48
    assert data["passages"][0]["source"].endswith("solar_system.md")
    assert llama_server.completions_served() == before + 1

    code, out, err = ragkit("query", question, "--profile", str(profile))
    assert code == 0, err
    assert out.startswith("answer: ")
    answer_part, sources_part = out.split("\nsources:\n", 1)
    assert answer_part[len("answer: ") :].strip()
    assert "solar_system.md" in sources_part or "no passages found" in sources_part
    assert llama_server.completions_served() == before + 2


def test_real_server_streams_tokens(llama_server: LlamaServer) -> None:
    """The same client the profile configures gets the answer as many chunks, not one block."""
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.dataclasses import ChatMessage
    from haystack.utils import Secret

    chunks: list[str] = []
    gen = OpenAIChatGenerator(
        api_base_url=llama_server.base_url,
        model="smollm2",
        api_key=Secret.from_token("sk-local"),
        streaming_callback=lambda chunk: chunks.append(chunk.content or ""),
        generation_kwargs={"max_tokens": 16, "temperature": 0.0},
        timeout=30,
        max_retries=0,
    )
    reply = gen.run([ChatMessage.from_user("Name the largest planet of the solar system.")])
    text = reply["replies"][0].text
    assert text and text.strip()
    assert sum(1 for c in chunks if c) > 1
    assert "".join(chunks) == text


# ------------------------------------------------------------------ faults (the fake server)


def _one_line_failure(code: int, err: str) -> str:
    """The single ``error:`` line (the context fitter may warn before it), no traceback."""
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    assert all(line.startswith(("error:", "warning: prompt exceeds")) for line in lines), err
    return lines[-1]


@pytest.mark.parametrize("as_json", [False, True])
def test_http_500_is_one_line(
    indexed: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    with OpenAICompatServer(fault="http_500") as server:
        url = server.base_url
        profile = server_profile(indexed, url)
        extra = ["--json"] if as_json else []
        code, _, err = ragkit("query", "Which planet?", "--profile", str(profile), *extra)
    line = _one_line_failure(code, err)
    assert "HTTP 500" in line and url in line and "injected failure" in line


@pytest.mark.parametrize("as_json", [False, True])
def test_malformed_chunk_is_one_line(
    indexed: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    with OpenAICompatServer(fault="malformed_chunk") as server:
        profile = server_profile(indexed, server.base_url)
        extra = ["--json"] if as_json else []
        code, _, err = ragkit("query", "Which planet?", "--profile", str(profile), *extra)
        # plain output streams (the broken chunk is mid-stream); --json asks for one body
        assert bool(server.requests[-1].get("stream")) is not as_json
    line = _one_line_failure(code, err)
    assert "not valid JSON" in line and "'generator'" in line and "api_base_url" in line


def test_timeout_is_one_line(indexed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", "x")
    with OpenAICompatServer(delay_s=3.0) as server:
        url = server.base_url
        profile = server_profile(indexed, url, timeout=1)
        start = time.monotonic()
        code, _, err = ragkit("query", "Which planet?", "--profile", str(profile))
        assert time.monotonic() - start < 3.0  # gave up at the timeout, did not wait it out
    line = _one_line_failure(code, err)
    assert "timed out" in line and "`timeout`" in line and url in line


def test_missing_api_key_env_var_is_one_line(
    indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGKIT_TEST_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAICompatServer() as server:
        profile = server_profile(indexed, server.base_url)
        code, _, err = ragkit("query", "Which planet?", "--profile", str(profile))
        assert server.requests == []
    line = _one_line_failure(code, err)
    assert "RAGKIT_TEST_KEY" in line
