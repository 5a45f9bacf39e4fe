"""What ``ragkit serve`` is asked to do, checked before anything loads.

A bad setting (a public host without an API key, a pipeline given as something that is not a
name, an unset key variable) is refused here with the CLI's one-line error, before models load
or a port is bound. This module imports only pydantic, so the CLI can build it cheaply.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import InvalidInputError

__all__ = [
    "LOCAL_HOSTS",
    "PIPELINE_NAME",
    "ServeSettings",
    "is_local_host",
]

#: Host names that reach only this machine; any other bind address needs an API key.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: A served pipeline's name: what URLs (``/<name>/run``) and ``model`` fields may say. Never a path.
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def is_local_host(host: str) -> bool:
    """Whether binding ``host`` exposes the server to this machine only (loopback)."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeSettings(BaseModel):
    """Options of ``ragkit serve`` (and of :func:`ragkit.serve.app.build_app` for embedding).

    Unknown keys are refused, so a misspelt option in a script is an error, not a default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = Field(None, description="Store directory or Qdrant URL; None: profile's.")
    profile: str | None = Field(None, description="Profile name or YAML path; None: default.")
    pipelines: list[str] | None = Field(
        None, description="Pipelines to serve (names or YAML paths); None: every shipped one."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    ui: bool = False
    api_key_env: str | None = Field(
        None, description="Environment variable holding the bearer token clients must send."
    )
    allow_index: bool = False
    index_root: str | None = Field(
        None, description="The only folder POST /index may read (default: current directory)."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Empty: CORS off.")
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_question_chars: int = Field(4000, ge=1)
    max_top_k: int = Field(50, ge=1)
    retrieval_threads: int = Field(8, ge=1, le=256)

    def api_key(self) -> str | None:
        """The bearer token from ``api_key_env``; None when no variable is configured.

        Raises:
            InvalidInputError: The variable is named but unset or empty.
        """
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise InvalidInputError(
                f"--api-key-env {self.api_key_env}: the environment variable is unset or empty; "
                f"set it to the token clients must send (`export {self.api_key_env}=...`)"
            )
        return key.strip()

    def served_names(self) -> list[str] | None:
        """The names pipelines are served under (a YAML path serves under its file stem)."""
        if self.pipelines is None:
            return None
        return [Path(p).stem if p.endswith((".yaml", ".yml")) else p for p in self.pipelines]

    def check(self) -> None:
        """Refuse settings that would expose the server or serve something unnamed.

        Raises:
            InvalidInputError: A non-local host without ``api_key_env``, an unset key variable,
                a pipeline name that is not a plain name, a name given twice, several workers
                on an embedded store, or an index root that is not a folder.
        """
        if not is_local_host(self.host) and self.api_key_env is None:
            raise InvalidInputError(
                f"--host {self.host} exposes the server beyond this machine; give "
                "--api-key-env VAR (a variable holding the token clients send as "
                "'Authorization: Bearer TOKEN'), or bind --host 127.0.0.1"
            )
        self.api_key()
        names = self.served_names()
        if names is not None:
            if not names:
                raise InvalidInputError("--pipelines is empty; name at least one pipeline")
            for name in names:
                if not PIPELINE_NAME.match(name):
                    raise InvalidInputError(
                        f"--pipelines: {name!r} cannot be served: a served name is letters, "
                        "digits, '-' and '_' (it becomes the URL /<name>/run and the model name)"
                    )
            seen = [n for i, n in enumerate(names) if n in names[:i]]
            if seen:
                raise InvalidInputError(f"--pipelines names {seen[0]!r} twice")
        if self.index_root is not None and not Path(self.index_root).expanduser().is_dir():
            raise InvalidInputError(f"--index-root {self.index_root} is not a folder")
        if self.workers > 1 and not self._server_store():
            raise InvalidInputError(
                f"--workers {self.workers} needs a Qdrant server store (--store http://HOST:6333): "
                "an embedded store is locked by one process; use --workers 1"
            )

    def _server_store(self) -> bool:
        """Whether the store is a Qdrant server (which several processes may share)."""
        from ragkit.config import ServerStore, resolve_profile, store_from_location

        return isinstance(
            store_from_location(self.store, resolve_profile(self.profile)), ServerStore
        )

    def index_root_path(self) -> Path:
        """The resolved folder POST /index may read (symbolic links followed)."""
        return Path(self.index_root or os.getcwd()).expanduser().resolve()
