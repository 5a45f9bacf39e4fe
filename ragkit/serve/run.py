"""The body of ``ragkit serve``: options in, settings checked, server run.

Kept apart from :mod:`ragkit.serve.app` so the CLI reaches the checks (a public host without a
key, a missing ``serve`` extra) without importing FastAPI or Hayhooks first.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ragkit.errors import InvalidInputError

__all__ = ["SERVE_PACKAGES", "require_serve_packages", "run_server"]

#: Import names of what ``pip install 'ragkit[serve]'`` brings, with their PyPI names.
SERVE_PACKAGES = {"hayhooks": "hayhooks", "mcp": "mcp", "uvicorn": "uvicorn"}


def require_serve_packages() -> None:
    """Name the missing package and the extra that installs it, before anything loads.

    Raises:
        InvalidInputError: Hayhooks, mcp or uvicorn is not installed.
    """
    missing = [pip for mod, pip in SERVE_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise InvalidInputError(
            f"ragkit serve needs {', '.join(missing)}: pip install 'ragkit[serve]'"
        )


def run_server(*, pipelines: str | None = None, ui: bool = False, **options: Any) -> None:
    """Check the options, load the pipelines once and serve until interrupted.

    Args:
        pipelines: Comma-separated pipeline names; None: every shipped one that loads.
        ui: Serve the chat UI too.
        **options: The other :class:`~ragkit.serve.settings.ServeSettings` fields.

    Raises:
        InvalidInputError: Refused settings (a public host without a key, a bad name).
        RagkitError: The store or a pipeline cannot be loaded; the CLI's line.
    """
    from pydantic import ValidationError

    from ragkit.serve.settings import ServeSettings

    names = None
    if pipelines is not None:
        names = [p.strip() for p in pipelines.split(",") if p.strip()]
    try:
        settings = ServeSettings(pipelines=names, ui=ui, **options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise InvalidInputError(f"ragkit serve: {where}: {err.get('msg')}") from None
    settings.check()  # before the slow imports: a refused host fails at once
    require_serve_packages()
    from ragkit.serve.app import serve

    serve(settings)
