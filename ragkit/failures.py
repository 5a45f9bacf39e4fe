"""Turn a failure into the one actionable line (and exit status) a user sees.

The CLI calls :func:`describe_failure` for anything a command raised; so can any other front end
(a notebook helper, a server) that wants the same reports. It knows three kinds of failure:
ragkit's own errors (:class:`ragkit.errors.RagkitError`, whose message is already the line),
an interrupt, and an OpenAI-compatible server that is unreachable, slow, failing or not speaking
JSON. Haystack wraps a component's error in ``PipelineRuntimeError``; the wrapper is unwrapped
first. Classes are matched with ``isinstance`` on the libraries' own exception types, imported
only when the failure comes from them, so this module costs nothing to import.
"""

from __future__ import annotations

import json
import sys

from ragkit.errors import RagkitError

__all__ = ["INTERRUPTED_EXIT", "describe_failure", "root_cause"]

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def _pipeline_runtime_error() -> type[BaseException] | None:
    """Haystack's wrapper class, if Haystack is already loaded (it raised, so it is)."""
    if "haystack" not in sys.modules:
        return None
    from haystack.core.errors import PipelineRuntimeError

    return PipelineRuntimeError


def root_cause(exc: BaseException) -> BaseException:
    """Unwrap Haystack's ``PipelineRuntimeError`` (repeatedly) to the component's own error.

    Args:
        exc: What a pipeline run raised.

    Returns:
        The innermost wrapped error, or ``exc`` itself when it is not a wrapper.
    """
    wrapper = _pipeline_runtime_error()
    if wrapper is None:
        return exc
    seen = {id(exc)}
    while isinstance(exc, wrapper) and exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _openai_failure(raised: BaseException, exc: BaseException) -> str | None:
    """One line for an OpenAI-compatible server that answered badly or not at all."""
    if type(exc).__module__.startswith("openai"):
        import openai

        url = getattr(getattr(exc, "request", None), "url", "the configured api_base_url")
        if isinstance(exc, openai.APITimeoutError):
            return (
                f"the OpenAI-compatible server at {url} timed out (no answer within the "
                "generator's `timeout`); raise `timeout` in the profile's generator "
                "init_parameters, or check that the server is not overloaded"
            )
        if isinstance(exc, openai.APIStatusError):
            message = " ".join(str(getattr(exc, "message", exc)).split())
            return (
                f"the OpenAI-compatible server at {url} answered HTTP "
                f"{getattr(exc, 'status_code', '?')} ({message}); check the server's log and the "
                "profile's generator `model` and `api_base_url`"
            )
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach the OpenAI-compatible server at {url} ({exc}); is it running?"
        if isinstance(exc, openai.OpenAIError) and (
            "credentials" in str(exc) or "api_key" in str(exc)
        ):
            return (
                "the OpenAI-compatible generator has no API key: set the environment variable "
                "that its `api_key.env_vars` names (local servers accept any value)"
            )
    component = getattr(raised, "component_type", None)
    if isinstance(exc, json.JSONDecodeError) and "OpenAI" in getattr(component, "__name__", ""):
        return (
            f"component '{getattr(raised, 'component_name', '?')}' ({component.__name__}): the "
            f"OpenAI-compatible server sent a reply that is not valid JSON ({exc}); check that "
            "`api_base_url` points at an OpenAI-compatible /v1 endpoint, and the server's log"
        )
    return None


def describe_failure(raised: BaseException) -> tuple[str, int] | None:
    """The one-line report and exit status for a failure, or None for an unexpected one.

    Args:
        raised: The exception a command (or a pipeline run inside it) raised.

    Returns:
        ``(line, exit_status)`` for ragkit errors (their ``exit_code``), an interrupt (130) and
        OpenAI-compatible server failures (1); None when the failure is a bug to show in full.
    """
    if isinstance(raised, KeyboardInterrupt):
        return (
            "interrupted; re-run the same command to finish (completed work is kept)",
            INTERRUPTED_EXIT,
        )
    exc = root_cause(raised)
    if isinstance(exc, RagkitError):
        return str(exc), exc.exit_code
    line = _openai_failure(raised, exc)
    if line is not None:
        return line, 1
    return None
