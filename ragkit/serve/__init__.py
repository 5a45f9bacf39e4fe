"""``ragkit serve``: pipelines over HTTP on Hayhooks (REST, OpenAI-compatible chat, MCP tools).

Layout: :mod:`~ragkit.serve.settings` (options, checked before anything loads),
:mod:`~ragkit.serve.engine` (pipelines loaded once over one shared store, queueing and
cancellation), :mod:`~ragkit.serve.wrapper` (a pipeline as a Hayhooks ``PipelineWrapper``),
:mod:`~ragkit.serve.app` (the FastAPI app: auth, caps, JSON errors, MCP at ``/mcp``) and
:mod:`~ragkit.serve.run` (the CLI's body). Importing this package imports nothing heavy;
FastAPI, Hayhooks and the models load only when a server is built.
"""

from __future__ import annotations

from ragkit.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
