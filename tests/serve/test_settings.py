"""``ragkit serve`` refusals and guards that need no models: settings, caps, auth, index root."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_run import runner

from ragkit.cli import app
from ragkit.errors import InvalidInputError
from ragkit.serve.engine import Engine
from ragkit.serve.settings import ServeSettings, is_local_host


def _serve(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["serve", *args], env=env)
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--host", "0.0.0.0"], None, "--host 0.0.0.0 exposes the server beyond this machine"),
        (["--host", "192.168.1.5", "--api-key-env", "RAGKIT_NO_SUCH_VAR"], None, "unset or empty"),
        (["--api-key-env", "RAGKIT_EMPTY_KEY"], {"RAGKIT_EMPTY_KEY": " "}, "unset or empty"),
        (["--pipelines", "../etc/passwd"], None, "cannot be served"),
        (["--pipelines", "rag,rag"], None, "names 'rag' twice"),
        (["--pipelines", ","], None, "--pipelines is empty"),
        (["--workers", "2", "--store", "/tmp/x"], None, "needs a Qdrant server store"),
        (["--allow-index", "--index-root", "/no/such/folder"], None, "is not a folder"),
    ],
)
def test_refused_settings_are_one_line_before_anything_loads(
    args: list[str], env: dict[str, str] | None, expected: str
) -> None:
    code, err = _serve(*args, env=env)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err


def test_loopback_hosts_are_local_and_others_are_not() -> None:
    assert all(is_local_host(h) for h in ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
    assert not any(is_local_host(h) for h in ["0.0.0.0", "::", "10.0.0.1", "example.com"])


def test_settings_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        ServeSettings(hots="0.0.0.0")


def _engine(tmp_path: Path, **settings) -> Engine:
    """An engine with nothing loaded: enough for the checks that run before any pipeline."""
    return Engine(ServeSettings(**settings), None, None, {}, {}, [])  # type: ignore[arg-type]


def test_question_caps(tmp_path: Path) -> None:
    engine = _engine(tmp_path, max_question_chars=10, max_top_k=5)
    assert engine.check_question("Where?", 5) == ("Where?", 5)
    with pytest.raises(InvalidInputError, match="at most 10") as info:
        engine.check_question("x" * 11)
    assert info.value.http_status == 413
    for question, top_k, match in [
        ("  ", None, "empty"),
        (["a"], None, "string"),
        ("q", 0, "between 1 and 5"),
        ("q", 6, "between 1 and 5"),
        ("q", True, "whole number"),
        ("q", "3", "whole number"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            engine.check_question(question, top_k)


def test_index_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# A")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    off = _engine(tmp_path)
    with pytest.raises(InvalidInputError, match="--allow-index"):
        off.index(["docs"])
    on = _engine(tmp_path, allow_index=True, index_root=str(root))
    for path in ["../secret.txt", str(tmp_path / "secret.txt"), "link", "docs/../../secret.txt"]:
        with pytest.raises(InvalidInputError, match="outside the index root"):
            on.index([path])
    with pytest.raises(InvalidInputError, match="does not exist"):
        on.index(["docs/missing.md"])
    for name in ["../a.md", "sub/a.md", ".hidden", ""]:
        with pytest.raises(InvalidInputError, match="plain file name"):
            on.index([], {name: "text"})
    with pytest.raises(InvalidInputError, match="give 'paths'"):
        on.index([])


def _call(asgi, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, dict]:
    """One HTTP request through an ASGI app; the status and JSON body it answered."""
    scope = {"type": "http", "method": "POST", "path": "/x/run", "headers": headers}
    chunks = [
        {"type": "http.request", "body": body[i : i + 100], "more_body": i + 100 < len(body)}
        for i in range(0, max(len(body), 1), 100)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asgi(scope, receive, send))
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body_out)


async def _echo(scope, receive, send) -> None:
    """A downstream app that reads the whole body, then answers 200."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_bearer_auth_and_body_limit_middleware() -> None:
    from ragkit.serve.app import BearerAuth, BodyLimit

    auth = BearerAuth(_echo, "k3y")
    assert _call(auth, [(b"authorization", b"Bearer k3y")])[0] == 200
    for header in [[], [(b"authorization", b"Bearer k3")], [(b"authorization", b"Basic k3y")]]:
        status, body = _call(auth, header)
        assert status == 401 and "API key" in body["error"]["message"]
    limit = BodyLimit(_echo, limit=1000, upload_limit=5000, upload_paths={"/index"})
    assert _call(limit, [], b"x" * 1000)[0] == 200
    status, body = _call(limit, [], b"x" * 1001)  # no Content-Length: counted while read
    assert status == 413 and "1,000 bytes" in body["error"]["message"]
    assert _call(limit, [(b"content-length", b"99999")], b"x")[0] == 413
