"""Helpers for users' own tests: a local OpenAI-compatible chat server with scripted replies."""

from __future__ import annotations

from ragkit.testing.openai_server import OpenAICompatServer

__all__ = ["OpenAICompatServer"]
