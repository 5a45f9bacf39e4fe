"""``ragkit serve`` end to end: a real server on 127.0.0.1, driven by the clients users run.

One server process for the module (SmolLM2 reader, 32 new tokens at most), started through the
CLI with an API key and indexing on; the sample corpus is indexed through ``POST /index``.
Every wait is bounded: startup, each request, each stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "ragkit" / "data" / "sample"
KEY = "test-key-7f3a"
KEY_ENV = "RAGKIT_SERVE_TEST_KEY"
MAX_QUESTION = 500
STARTUP_SECONDS = 240  # a fresh model cache converts SmolLM2 from GGUF first (~35 s, more on CI)
QUERY_JSON_KEYS = {
    "answer",
    "sources",
    "passages",
    "seconds",
    "usage",
    "timings",
    "no_passages",
    "empty_store",
    "reader_skipped",
    "removed_citations",
    "top_k_shortfall",
}


@dataclass
class Server:
    url: str
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers=kw.pop("headers", self.auth), timeout=60, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, headers=kw.pop("headers", self.auth), timeout=120, **kw)

    def status(self, pipeline: str) -> dict:
        return self.get("/status").json()["pipelines"][pipeline]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _profile(folder: Path) -> Path:
    """cpu-small with a shorter answer budget: each generation here costs seconds on 2 cores."""
    data = yaml.safe_load((REPO / "configs" / "cpu-small.yaml").read_text())
    data["components"]["generator"]["init_parameters"]["generation_kwargs"]["max_new_tokens"] = 32
    path = folder / "serve-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    docs = root / "docs"
    shutil.copytree(SAMPLE, docs / "sample")
    port = _free_port()
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "ragkit.cli", "serve",
        "--store", str(root / "store"), "--profile", str(_profile(root)),
        "--pipelines", "rag,retrieve", "--port", str(port),
        "--api-key-env", KEY_ENV, "--allow-index", "--index-root", str(docs),
        "--max-question-chars", str(MAX_QUESTION), "--ui",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, KEY_ENV: KEY}
        )
    srv = Server(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if srv.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        indexed = srv.post("/index", json={"paths": ["sample"]})
        assert indexed.status_code == 200, indexed.text
        assert indexed.json()["added"] == 5
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _error(response: httpx.Response, status: int) -> str:
    """The one-line message of a JSON error with ``status``; never a stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]["message"]
    assert "\n" not in message and "Traceback" not in response.text
    return message


def test_every_endpoint_needs_the_api_key(server: Server) -> None:
    for method, path in [
        ("GET", "/health"),
        ("GET", "/status"),
        ("GET", "/v1/models"),
        ("POST", "/retrieve/run"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/index"),
        ("POST", "/mcp"),
        ("GET", "/docs"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = httpx.request(method, server.url + path, headers=headers, timeout=30)
            assert "API key" in _error(response, 401), (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
    ok = server.get("/health")
    assert ok.status_code == 200 and ok.json()["pipelines"] == ["rag", "retrieve"]


def test_run_returns_what_query_json_prints(server: Server) -> None:
    response = server.post(
        "/retrieve/run", json={"question": "Which planet has the strongest winds?", "top_k": 2}
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]  # Hayhooks' envelope around the query --json object
    assert set(result) >= QUERY_JSON_KEYS
    assert result["answer"] is None and len(result["passages"]) == 2
    top = result["passages"][0]
    assert top["source"].endswith("solar_system.md")
    assert isinstance(top["score"], float) and top["start"] < top["end"]
    assert "Neptune" in " ".join(p["content"] for p in result["passages"])


def test_openai_client_answers_the_last_user_message(server: Server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    assert {m.id for m in client.models.list().data} == {"rag", "retrieve"}
    reply = client.chat.completions.create(
        model="rag",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Tell me about rivers."},
            {"role": "assistant", "content": "Which river?"},
            {"role": "user", "content": "Which planet has the strongest winds?"},
        ],
        extra_body={"top_k": 3},
    )
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    sources = reply.model_extra["sources"]
    assert sources and any(s["source"].endswith("solar_system.md") for s in sources)
    passages = client.chat.completions.create(
        model="retrieve", messages=[{"role": "user", "content": "Where is Etna?"}]
    )
    assert "volcanoes.md" in passages.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="../rag", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="no user message"):
        client.chat.completions.create(
            model="rag", messages=[{"role": "system", "content": "only a system turn"}]
        )


def test_openai_client_streams_tokens_then_sources(server: Server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "Where is Etna?"}], stream=True
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks[:-1] if c.choices[0].delta.content]
    assert len(pieces) > 1, "the answer should arrive token by token"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["sources"] and last.usage.completion_tokens >= len(pieces) - 1
    assert len({c.id for c in chunks}) == 1


def test_body_and_question_caps(server: Server) -> None:
    huge = server.post("/retrieve/run", json={"question": "x" * 70_000})
    assert "limit" in _error(huge, 413)
    long = server.post("/retrieve/run", json={"question": "x" * (MAX_QUESTION + 1)})
    assert f"at most {MAX_QUESTION}" in _error(long, 413)
    chat = server.post(
        "/v1/chat/completions",
        json={"model": "rag", "messages": [{"role": "user", "content": "y" * (MAX_QUESTION + 1)}]},
    )
    _error(chat, 413)
    assert "top_k" in _error(server.post("/retrieve/run", json={"question": "a", "top_k": 51}), 422)
    extra = server.post("/retrieve/run", json={"question": "a", "path": "/etc/passwd"})
    assert "path" in _error(extra, 422)
    assert "empty" in _error(server.post("/retrieve/run", json={"question": "  "}), 422)
    bad = server.post(
        "/retrieve/run",
        content=b"{not json",
        headers={**server.auth, "content-type": "application/json"},
    )
    assert "not valid JSON" in _error(bad, 422)


def test_pipeline_names_are_names_never_paths(server: Server) -> None:
    for path in ["/nope/run", "/..%2F..%2Fetc%2Fpasswd/run", "/%2e%2e/run", "/pipelines%2Frag/run"]:
        message = _error(server.post(path, json={"question": "q"}), 404)
        assert "rag, retrieve" in message
    for model in ["../rag", "pipelines/rag.yaml", "/work/rag", "x" * 5000]:
        response = server.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "q"}]},
        )
        assert "served pipelines: rag, retrieve" in _error(response, 404)


def test_cors_is_off_unless_configured(server: Server) -> None:
    response = server.get("/health", headers={**server.auth, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_disconnect_mid_stream_stops_the_generation(server: Server) -> None:
    before = server.status("rag")["cancelled"]
    body = {
        "model": "rag",
        "stream": True,
        "messages": [{"role": "user", "content": "Describe the outer planets in detail."}],
    }
    with (
        httpx.Client(timeout=120) as client,
        client.stream(
            "POST", server.url + "/v1/chat/completions", headers=server.auth, json=body
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["choices"][0]["delta"]["content"]:
                break  # first token: hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = server.status("rag")
        if now["cancelled"] > before and now["running"] == 0:
            break
        time.sleep(0.2)
    assert now["cancelled"] == before + 1, now
    # the reader is free again and answers the next question
    again = server.post("/rag/run", json={"question": "Where is Etna?", "top_k": 2})
    assert again.status_code == 200 and again.json()["result"]["answer"]


def test_reader_requests_queue_while_retrieval_runs_alongside(server: Server) -> None:
    def rag(question: str) -> float:
        response = server.post("/rag/run", json={"question": question, "top_k": 2})
        assert response.status_code == 200, response.text
        return time.monotonic()

    def retrieve(i: int) -> float:
        response = server.post("/retrieve/run", json={"question": f"river {i}", "top_k": 2})
        assert response.status_code == 200, response.text
        return time.monotonic()

    def wait_for(**counts: int) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = server.status("rag")
            if all(now[k] == v for k, v in counts.items()):
                return now
            time.sleep(0.05)
        return now

    with ThreadPoolExecutor(12) as pool:
        first = pool.submit(rag, "Where is Etna?")
        wait_for(running=1)
        second = pool.submit(rag, "Which river is the longest?")
        queued = wait_for(running=1, queued=1)
        retrievals = [pool.submit(retrieve, i) for i in range(8)]
        done_retrieving = max(f.result(timeout=120) for f in retrievals)
        first_done, second_done = first.result(timeout=180), second.result(timeout=180)
    assert queued["running"] == 1 and queued["queued"] == 1, queued
    assert done_retrieving < first_done, "retrieval waited for the reader"
    assert first_done < second_done


def test_mcp_client_lists_and_calls_the_tools(server: Server) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session() -> tuple[list[str], str, bool, str]:
        async with (
            httpx.AsyncClient(headers=server.auth, timeout=60) as http,
            streamable_http_client(server.url + "/mcp", http_client=http) as (read, write, _),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            tools = (await mcp.list_tools()).tools
            result = await mcp.call_tool("ask_retrieve", {"question": "Where is Etna?", "top_k": 2})
            empty = await mcp.call_tool("ask_retrieve", {"question": " "})
            return (
                [t.name for t in tools],
                result.content[0].text,
                empty.isError,
                empty.content[0].text,
            )

    names, text, failed, error = asyncio.run(asyncio.wait_for(session(), 120))
    assert {"ask_rag", "ask_retrieve"} <= set(names)
    assert not {"deploy_pipeline", "undeploy_pipeline"} & set(names)
    answer = json.loads(text)
    assert answer["pipeline"] == "retrieve" and len(answer["passages"]) == 2
    assert failed and "the question is empty" in error and "Traceback" not in error


def test_index_reads_only_under_the_root_and_queries_see_new_files(
    server: Server, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("The vault code is 1234.")
    for path in [str(outside), "../secret.txt", "sample/../../.."]:
        assert "outside the index root" in _error(
            server.post("/index", json={"paths": [path]}), 422
        )
    upload = server.post(
        "/index", json={"files": {"bridges.md": "The Quibble bridge spans the Flurm river."}}
    )
    assert upload.status_code == 200 and upload.json()["added"] == 1, upload.text
    _error(server.post("/index", json={"files": {"../x.md": "no"}}), 422)
    found = server.post(
        "/retrieve/run", json={"question": "Which bridge spans the Flurm river?", "top_k": 1}
    )
    assert found.json()["result"]["passages"][0]["source"].endswith("bridges.md")


def test_status_reports_the_store_and_the_loaded_models(server: Server) -> None:
    # one request of its own: under xdist the module's other tests may run on another worker
    assert (
        server.post("/rag/run", json={"question": "Where is Etna?", "top_k": 2}).status_code == 200
    )
    status = server.get("/status").json()
    # the server made the store (--allow-index): a new store gets the default model
    assert status["store"]["chunks"] >= 14 and status["store"]["embedding_model"] == "minilm-int8"
    rag = status["pipelines"]["rag"]
    assert rag["kind"] == "answering" and rag["requests"] >= 1
    assert any(m["model"] == "smollm2-135m-instruct" for m in rag["models"])
    assert status["pipelines"]["retrieve"]["kind"] == "retrieval"
    assert status["indexing"]["allowed"] and status["process"]["rss_mb"] > 0


def test_chat_ui_page_needs_no_key_and_streams_from_the_chat_endpoint(server: Server) -> None:
    page = httpx.get(server.url + "/ui", timeout=30)  # no Authorization header
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/v1/chat/completions" in html and "stream: true" in html and "/v1/models" in html
    assert "textContent" in html and "innerHTML" not in html  # passages are text, never markup
    # the page is the only open door: the same server still refuses its API without the key
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
    assert httpx.post(server.url + "/ui", timeout=30).status_code in (401, 405)


@pytest.mark.slow
def test_chat_ui_answers_in_a_real_browser(server: Server, tmp_path: Path) -> None:
    """Headless Chromium types a question on the page; the streamed answer and sources show up.

    Needs Debian's ``chromium`` and the ``playwright`` package (its driver only: the browser is
    the system one, nothing is downloaded).
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    question = "Which planet has the strongest winds?"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/ui?pipeline=rag#key={KEY}")
            page.fill("#question", question)
            page.click("form button")
            page.wait_for_selector(".turn[data-done='1']", timeout=180_000)
            page.screenshot(path=str(tmp_path / "ui.png"))
            turn = page.inner_text(".turn")
            answer = page.inner_text(".turn .a")
        finally:
            browser.close()
    assert question in turn
    assert answer.strip() and not answer.startswith("(no answer")
    assert "solar_system.md" in turn  # the sources listed under it
    assert (tmp_path / "ui.png").stat().st_size > 5000
