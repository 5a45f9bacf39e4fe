"""Turn a failure into the one actionable line (and exit status) a user sees.

The CLI calls :func:`describe_failure` for anything a command raised; so can any other front end
(a notebook helper, a server) that wants the same reports. It knows these kinds of failure:
ragkit's own errors (:class:`ragkit.errors.RagkitError`, whose message is already the line),
an interrupt, an OpenAI-compatible server that is unreachable, slow, failing or not speaking
JSON, a prompt template that Jinja (Haystack's sandbox) refused to render (exit status 2: the
pipeline file needs fixing), and a path whose symbolic links loop. Haystack wraps a component's
error in ``PipelineRuntimeError``; the wrapper is unwrapped first. Classes are matched with ``isinstance`` on the libraries' own exception types, imported
only when the failure comes from them, so this module costs nothing to import.
"""

from __future__ import annotations

import json
import sys

from ragkit.errors import RagkitError, clip_line

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


def _failed_component(raised: BaseException) -> tuple[str, str] | None:
    """(name, class name) of the innermost component a pipeline wrapper names, if any."""
    wrapper = _pipeline_runtime_error()
    found = None
    seen: set[int] = set()
    exc: BaseException | None = raised
    while wrapper is not None and isinstance(exc, wrapper) and id(exc) not in seen:
        seen.add(id(exc))
        name = getattr(exc, "component_name", None)
        if name:
            kind = getattr(exc, "component_type", None)
            found = (str(name), getattr(kind, "__name__", None) or "component")
        exc = exc.__cause__
    return found


def _template_line(exc: BaseException) -> int | None:
    """The template line a Jinja error points at (its own, or the rendering frame's)."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    tb = exc.__traceback__
    line = None
    while tb is not None:  # Jinja rewrites the traceback so template frames name "<template>"
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _template_failure(raised: BaseException, exc: BaseException) -> str | None:
    """One line for a Jinja template that failed to render (sandbox refusal, undefined name)."""
    if not type(exc).__module__.startswith("jinja2"):
        return None
    from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

    if not isinstance(exc, TemplateError):
        return None
    component = _failed_component(raised)
    who = f"component '{component[0]}' ({component[1]})" if component else "a component"
    line = _template_line(exc)
    where = f" (line {line})" if line else ""
    message = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if isinstance(exc, SecurityError):
        what = f"was refused by Haystack's template sandbox: {message}"
        fix = "a template may read only its variables and their plain fields"
    elif isinstance(exc, UndefinedError):
        what = f"uses something undefined: {message}"
        fix = "use only the component's input variables and fields they have"
    else:
        what = f"failed: {type(exc).__name__}: {message}"
        fix = "check the template"
    return f"{who}: its template{where} {what}; {fix}; fix the template in the pipeline file"


_LOOP_PREFIX = "Symlink loop from "


def _link_loop_failure(exc: BaseException) -> str | None:
    """One line for a path whose symbolic links loop (pathlib before Python 3.13 raises
    ``RuntimeError``; the OS says ``ELOOP``)."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        name = exc.filename or "a path"
    elif isinstance(exc, RuntimeError) and str(exc).startswith(_LOOP_PREFIX):
        name = str(exc)[len(_LOOP_PREFIX) :].strip("'\"")
    else:
        return None
    return (
        f"{name}: symbolic link loop (a link in this path leads back to itself); "
        "fix or remove the link"
    )


def describe_failure(raised: BaseException) -> tuple[str, int] | None:
    """The one-line report and exit status for a failure, or None for an unexpected one.

    Args:
        raised: The exception a command (or a pipeline run inside it) raised.

    Returns:
        ``(line, exit_status)`` for ragkit errors (their ``exit_code``), an interrupt (130),
        OpenAI-compatible server failures (1), template render failures (2) and symbolic link
        loops (1); None when the failure is a bug to show in full.
    """
    if isinstance(raised, KeyboardInterrupt):
        return (
            "interrupted; re-run the same command to finish (completed work is kept)",
            INTERRUPTED_EXIT,
        )
    exc = root_cause(raised)
    if isinstance(exc, RagkitError):
        # a message that echoes a user's value is cut, so no input can print a gigabyte line
        return "\n".join(clip_line(line) for line in str(exc).split("\n")), exc.exit_code
    line = _openai_failure(raised, exc)
    if line is not None:
        return line, 1
    line = _template_failure(raised, exc)
    if line is not None:
        return line, 2
    line = _link_loop_failure(exc)
    if line is not None:
        return line, 1
    return None
