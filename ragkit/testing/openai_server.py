"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol.

It exists so pipelines that use Haystack's ``OpenAIChatGenerator(api_base_url=...)`` (the route to
vLLM, llama.cpp server, Ollama) can be tested end to end without a GPU or network: requests go
over real sockets, streaming uses server-sent events exactly as OpenAI does. Replies come from a
``responder`` callable, e.g. scripted text, or a real local model.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Responder = Callable[[list[dict[str, Any]]], str]
# What a broken server does, so error handling can be tested: answer HTTP 500, or send a stream
# chunk (or a plain body) that is not JSON. Slowness is ``delay_s``.
Fault = Literal["http_500", "malformed_chunk"]


def echo_responder(messages: list[dict[str, Any]]) -> str:
    """Default responder: repeats the last user message, handy for wiring tests."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    content = last.get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return f"echo: {content}"


class OpenAICompatServer:
    """Serve ``/v1/chat/completions`` (plain and streaming) and ``/v1/models`` on a free port.

    ### Usage example
    ```python
    with OpenAICompatServer(lambda messages: "Paris") as server:
        gen = OpenAIChatGenerator(api_base_url=server.base_url, model="test", api_key=Secret.from_token("x"))
    ```
    """

    def __init__(
        self,
        responder: Responder = echo_responder,
        model: str = "ragkit-test",
        *,
        fault: Fault | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Configure the replies.

        Args:
            responder: Maps the request's messages to the reply text.
            model: The model id the server reports.
            fault: ``"http_500"`` answers every completion with HTTP 500 and an OpenAI error body;
                ``"malformed_chunk"`` sends a stream chunk (or a whole plain body) that is not JSON.
            delay_s: Seconds to wait before answering a completion (for client timeouts).
        """
        self.responder = responder
        self.model = model
        self.fault = fault
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, the value for ``api_base_url``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAICompatServer:
        """Bind a free port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                return

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.rstrip("/") == "/v1/models":
                    self._json(
                        200, {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                    )
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    req = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._json(400, {"error": {"message": "body is not JSON"}})
                    return
                server.requests.append(req)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if server.fault == "http_500":
                    self._json(
                        500, {"error": {"message": "injected failure", "type": "server_error"}}
                    )
                    return
                if server.fault == "malformed_chunk" and not req.get("stream"):
                    data = b"{not json"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = server.responder(req.get("messages", []))
                prompt_tokens = sum(
                    len(str(m.get("content", "")).split()) for m in req.get("messages", [])
                )
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_tokens + len(text.split()),
                }
                cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
                created = int(time.time())
                if not req.get("stream"):
                    self._json(200, {
                        "id": cid, "object": "chat.completion", "created": created, "model": server.model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": usage,
                    })  # fmt: skip
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

                def event(
                    delta: dict[str, Any], finish: str | None, extra: dict[str, Any] | None = None
                ) -> None:
                    chunk = {
                        "id": cid, "object": "chat.completion.chunk", "created": created, "model": server.model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                        **(extra or {}),
                    }  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()

                event({"role": "assistant", "content": ""}, None)
                if server.fault == "malformed_chunk":
                    self.wfile.write(b'data: {"id": "broken", "choices": [\n\n')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                words = text.split(" ")
                for i, word in enumerate(words):
                    event({"content": word if i == 0 else " " + word}, None)
                event({}, "stop")
                if (req.get("stream_options") or {}).get("include_usage"):
                    self.wfile.write(
                        f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': server.model, 'choices': [], 'usage': usage})}\n\n".encode()
                    )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # a client that gave up (timeout, broken stream) is expected here, not news
                if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    return
                super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
