"""The ``ragkit serve`` application: Hayhooks' serving parts around ragkit's engine.

From Hayhooks: the pipeline wrappers (:mod:`ragkit.serve.wrapper`), its fixed-pipeline
registry, its ``POST /<name>/run`` handler, its OpenAI-compatible router (``/v1/models``,
``/v1/chat/completions`` with streaming) and its MCP server (pipelines as tools, mounted at
``/mcp`` on the same port). Not from Hayhooks: the app itself. Hayhooks' ``create_app()`` always
mounts ``/deploy_files`` and ``/undeploy`` (a client could upload and run Python code in the
server) and allows every CORS origin by default, so this module assembles a FastAPI app from its
routers instead and adds what a public endpoint needs: a bearer token on every path (MCP
included), body and question caps, JSON errors in the CLI's words, CORS off unless configured,
and ``/health``, ``/status`` (store stats, loaded models) and ``POST /index``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import clip_line
from ragkit.serve.engine import Engine
from ragkit.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SETTINGS_ENV", "IndexRequest", "app_from_env", "build_app", "serve"]

logger = logging.getLogger(__name__)

#: Where ``--workers N`` hands the settings to each worker process (JSON).
SETTINGS_ENV = "RAGKIT_SERVE_SETTINGS"
#: The OpenAI-compatible routes kept from Hayhooks' router (its files and responses are not).
OPENAI_PATHS = frozenset({"/v1/models", "/models", "/v1/chat/completions", "/chat/completions"})


class IndexRequest(BaseModel):
    """``POST /index``: server-side paths under the index root, and/or uploaded text files."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(default_factory=list, max_length=1000)
    files: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="File name -> UTF-8 text."
    )


def error_body(status: int, message: str) -> bytes:
    """A JSON error as OpenAI clients read it: ``{"error": {"message", "type", "code"}}``."""
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    line = clip_line(" ".join(str(message).split()), 500)
    return json.dumps({"error": {"message": line, "type": kind, "code": status}}).encode()


async def _send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_body(status, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Every HTTP request must carry ``Authorization: Bearer <token>`` (constant-time check).

    ``public`` names the ``GET`` paths that need none: only the chat UI's static page, which
    holds no data (the page itself sends the key on every call it makes).
    """

    def __init__(self, app: ASGIApp, token: str, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.token = token.encode()
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope.get("method") == "GET" and scope.get("path") in self.public
        ):
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope.get("headers") or []:
            if key == b"authorization":
                header = value
                break
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            await _send_error(
                send,
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies above a cap with 413, by Content-Length or while reading them."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, upload_paths: set[str]) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope.get("path") in self.upload_paths else self.limit
        message = f"the request body is over this server's limit of {limit:,} bytes"
        for key, value in scope.get("headers") or []:
            if key == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_error(send, 413, message)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return msg

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, message)


def _validation_line(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as one line: ``question: Field required; top_k: ...``."""
    parts = []
    for err in errors[:3]:
        if err.get("type") == "json_invalid":
            return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'bad')})"
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _mcp_app(registry: Any) -> tuple[Any, Callable[[], contextlib.AbstractAsyncContextManager]]:
    """Hayhooks' MCP server over ``registry`` on the Streamable HTTP transport, and its lifespan.

    Returns None-like pieces when the ``mcp`` package is missing (then /mcp is absent).
    """
    from hayhooks.server.utils.mcp_utils import create_mcp_server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    server = create_mcp_server(name="ragkit", registry=registry)
    manager = StreamableHTTPSessionManager(app=server, event_store=None, stateless=True)

    class Endpoint:  # a class instance, so Starlette routes raw ASGI to it
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await manager.handle_request(scope, receive, send)

    return Endpoint(), manager.run


def build_app(engine: Engine, *, close_engine: bool = True) -> FastAPI:
    """The FastAPI app serving ``engine``'s pipelines (see the module docstring).

    Args:
        engine: The loaded pipelines and store; the app never loads anything itself.
        close_engine: Close the engine when the app shuts down.

    Returns:
        An ASGI app for uvicorn (or any ASGI server).
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from hayhooks.server.pipelines.models import create_response_model_from_callable
    from hayhooks.server.pipelines.registry import ImmutablePipelineRegistry, PipelineRegistration
    from hayhooks.server.routers.openai import create_openai_router
    from hayhooks.server.utils.deploy_utils import create_run_endpoint_handler
    from hayhooks.settings import settings as hayhooks_settings
    from pydantic import create_model
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ragkit.serve.wrapper import RagkitPipelineWrapper, failure_status

    settings = engine.settings
    # no stack trace may reach a client, whatever a .env or HAYHOOKS_SHOW_TRACEBACKS says
    hayhooks_settings.show_tracebacks = False

    wrappers = {name: RagkitPipelineWrapper(engine, name) for name in engine.pipelines}
    registrations, tools = [], []
    run_routes = []
    for name, wrapper in wrappers.items():
        kind = "answers" if engine.pipeline(name).reader else "retrieves passages for"
        description = (
            f"ragkit pipeline '{name}': {kind} a question from the indexed documents; returns "
            "the answer, sources with scores and character offsets, and token usage"
        )
        request_model = create_model(
            f"{name}_RunRequest",
            __config__=ConfigDict(extra="forbid"),
            question=(str, Field(..., description="The question.")),
            top_k=(
                int | None,
                Field(
                    None,
                    ge=1,
                    le=settings.max_top_k,
                    description="How many passages retrieval hands on; default: the pipeline's.",
                ),
            ),
        )
        metadata = {
            "description": description,
            "request_model": request_model,
            "skip_mcp": False,
            "skip_a2a": True,
        }
        registrations.append(PipelineRegistration(name, wrapper, metadata))
        tools.append(PipelineRegistration(f"ask_{name}", wrapper, metadata))
        response_model: type[BaseModel] | None = create_response_model_from_callable(
            wrapper.run_api_async, f"{name}_Run", _docstring(wrapper.run_api_async)
        )
        run_routes.append(
            {
                "path": f"/{name}/run",
                "endpoint": create_run_endpoint_handler(
                    pipeline_wrapper=wrapper,
                    pipeline_name=name,
                    request_model=request_model,
                    response_model=response_model,
                    requires_files=False,
                ),
                "methods": ["POST"],
                "name": f"{name}_run",
                "response_model": response_model,
                "tags": ["pipelines"],
                "description": description,
            }
        )
    registry = ImmutablePipelineRegistry(registrations)
    mcp_endpoint, mcp_lifespan = _mcp_app(ImmutablePipelineRegistry(tools))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with mcp_lifespan():
                yield
        finally:
            if close_engine:
                await run_in_threadpool(engine.close)

    app = FastAPI(
        title="ragkit",
        description="ragkit pipelines over one store: REST, OpenAI-compatible chat, MCP tools.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.pipeline_registry = registry

    @app.get("/health", tags=["status"])
    async def health() -> dict[str, Any]:
        """The server is up and its pipelines are loaded."""
        return {"status": "ok", "pipelines": list(engine.pipelines)}

    @app.get("/status", tags=["status"])
    async def status() -> dict[str, Any]:
        """Store stats, the loaded models per pipeline, request counts, process memory."""
        return await run_in_threadpool(engine.status)

    @app.post("/index", tags=["indexing"])
    async def index(request: IndexRequest) -> dict[str, Any]:
        """Index server-side paths under the index root, or uploaded text files (--allow-index)."""
        from fastapi import HTTPException

        if not settings.allow_index:
            raise HTTPException(403, "indexing is off on this server; start it with --allow-index")
        try:
            return await run_in_threadpool(engine.index, request.paths, request.files)
        except Exception as exc:
            status_code, line = failure_status(exc)
            raise HTTPException(status_code, line) from None

    openai = create_openai_router(registry)
    openai.routes[:] = [r for r in openai.routes if _route_paths(r) <= OPENAI_PATHS]
    app.include_router(openai)
    for route in run_routes:
        app.add_api_route(**route)
    app.add_route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    if settings.ui:
        from fastapi.responses import HTMLResponse

        page = ui_page()

        @app.get(UI_PATH, include_in_schema=False)
        async def chat_ui() -> HTMLResponse:
            """The chat page: streams answers from /v1/chat/completions and lists the sources."""
            return HTMLResponse(page, headers={"cache-control": "no-store"})

    served = ", ".join(engine.pipelines)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = (
                f"no such endpoint: {request.method} {request.url.path}; this server runs "
                f"POST /<pipeline>/run for the pipelines {served}, /v1/chat/completions, "
                "/v1/models, /health, /status and /mcp"
            )
        elif exc.status_code == 404 and message.startswith("Pipeline '"):
            message = f"no pipeline of that name is served here; served pipelines: {served}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            json.loads(error_body(exc.status_code, message)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            json.loads(error_body(422, _validation_line(list(exc.errors())))), status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        status_code, line = failure_status(exc)
        return JSONResponse(json.loads(error_body(status_code, line)), status_code=status_code)

    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths={"/index"},
    )
    token = settings.api_key()
    if token is not None:
        public = frozenset({UI_PATH}) if settings.ui else frozenset()
        app.add_middleware(BearerAuth, token=token, public=public)
    if settings.cors_origins:  # outermost: a browser's preflight carries no credentials
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
    return app


UI_PATH = "/ui"


def ui_page() -> str:
    """The chat UI's one static page (``ragkit/serve/ui.html``, shipped with the package).

    Hayhooks' own UI is Chainlit: its install pulls in a large tracing stack, it calls the
    chat endpoint back without the API key, and a browser cannot send a bearer header on its
    websocket; this page uses the OpenAI-compatible endpoint that every client here uses.
    """
    from importlib.resources import files

    return files("ragkit.serve").joinpath("ui.html").read_text(encoding="utf-8")


def _route_paths(route: Any) -> set[str]:
    """The paths a route serves; an included router's (FastAPI keeps those nested) all of them."""
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return {path}
    inner = getattr(getattr(route, "original_router", None), "routes", None) or []
    return set().union(*(_route_paths(r) for r in inner)) or {"?"}


def _docstring(func: Callable[..., Any]) -> Any:
    import inspect

    import docstring_parser

    return docstring_parser.parse(inspect.getdoc(func) or "")


def _say(line: str) -> None:
    print(f"ragkit serve: {line}", file=sys.stderr, flush=True)


def app_from_env() -> FastAPI:
    """An app for one uvicorn worker of ``--workers N``: settings from ``$RAGKIT_SERVE_SETTINGS``."""
    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    return build_app(Engine.open(settings, _say))


def serve(settings: ServeSettings) -> None:
    """Load the pipelines once, then serve them until interrupted (``ragkit serve``).

    Raises:
        RagkitError: Refused settings, a store or pipeline that cannot load; the CLI's line.
    """
    import uvicorn

    settings.check()
    where = f"http://{settings.host}:{settings.port}"
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        _say(f"starting {settings.workers} workers on {where}; each loads the pipelines once")
        uvicorn.run(
            "ragkit.serve.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            timeout_graceful_shutdown=5,
        )
        return
    engine = Engine.open(settings, _say)
    try:
        app = build_app(engine)
    except BaseException:
        engine.close()
        raise
    for line in engine.store_warnings:
        _say(f"warning: {line}")
    _say(
        f"serving {', '.join(engine.pipelines)} on {where}: POST /<pipeline>/run, "
        f"OpenAI-compatible {where}/v1, MCP {where}/mcp"
        + ("" if settings.api_key_env else " (no API key: this machine only)")
    )
    uvicorn.run(app, host=settings.host, port=settings.port, timeout_graceful_shutdown=5)
