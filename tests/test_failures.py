"""describe_failure: the one line and exit status for every failure kind the CLI reports."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from haystack.core.errors import PipelineRuntimeError

from ragkit.config import ConfigError
from ragkit.failures import describe_failure, root_cause
from ragkit.stores.bm25 import BM25IndexError

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def wrapped(exc: BaseException, component_type: type | None = None) -> PipelineRuntimeError:
    """What Haystack raises when a component fails inside Pipeline.run."""
    try:
        raise PipelineRuntimeError("llm", component_type, "component failed") from exc
    except PipelineRuntimeError as outer:
        return outer


def test_ragkit_errors_keep_their_message_and_exit_code_even_when_wrapped() -> None:
    assert describe_failure(ConfigError("profile x: bad")) == ("profile x: bad", 2)
    inner = BM25IndexError("index corrupt; rebuild")
    twice = wrapped(wrapped(inner))
    assert root_cause(twice) is inner
    assert describe_failure(twice) == ("index corrupt; rebuild", 1)


def test_interrupt_and_unknown_failures() -> None:
    line, code = describe_failure(KeyboardInterrupt())  # type: ignore[misc]
    assert code == 130 and "re-run the same command" in line
    assert describe_failure(ZeroDivisionError("bug")) is None  # a bug is shown in full
    assert describe_failure(wrapped(ValueError("bug"))) is None


def test_openai_server_failures_name_the_server_and_the_fix() -> None:
    line, code = describe_failure(wrapped(openai.APITimeoutError(request=REQUEST)))
    assert code == 1 and "timed out" in line and "127.0.0.1:9" in line and "`timeout`" in line
    response = httpx.Response(503, request=REQUEST, text="overloaded")
    status = openai.APIStatusError("Service Unavailable", response=response, body=None)
    line, _ = describe_failure(wrapped(status))
    assert "answered HTTP 503 (Service Unavailable)" in line
    line, _ = describe_failure(openai.APIConnectionError(request=REQUEST))
    assert line.startswith("cannot reach the OpenAI-compatible server at http://127.0.0.1:9")
    line, _ = describe_failure(openai.OpenAIError("The api_key client option must be set"))
    assert "has no API key" in line


def test_not_json_from_an_openai_component_names_the_component() -> None:
    class OpenAIChatGenerator:  # the component class Haystack reports
        pass

    bad = json.JSONDecodeError("Expecting value", "<html>", 0)
    line, code = describe_failure(wrapped(bad, OpenAIChatGenerator))
    assert code == 1 and line.startswith("component 'llm' (OpenAIChatGenerator)")
    assert "not valid JSON" in line
    assert describe_failure(wrapped(bad, None)) is None  # not from an OpenAI client: a bug


@pytest.mark.parametrize("exit_code", [1, 2])
def test_cli_prints_the_described_line(exit_code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_run import runner

    from ragkit import cli
    from ragkit.errors import RagkitError
    from ragkit.indexing import run

    class Boom(RagkitError):
        pass

    Boom.exit_code = exit_code

    def fail(*_a: object, **_k: object) -> None:
        raise wrapped(Boom("the one line"))

    monkeypatch.setattr(run, "inspect_store", fail)  # what `ragkit stats` calls
    result = runner.invoke(cli.app, ["stats"])
    assert result.exit_code == exit_code
    assert result.output.strip().splitlines()[-1] == "error: the one line"


def _render_failure(template: str) -> Exception:
    """What Haystack's ChatPromptBuilder raises while rendering ``template`` (real traceback)."""
    from haystack.components.builders import ChatPromptBuilder

    builder = ChatPromptBuilder(template=template)
    try:
        builder.run(question="q")
    except Exception as exc:  # noqa: BLE001 - the template's own error is what is examined
        return exc
    raise AssertionError("the template rendered")


def test_template_refused_by_the_sandbox_names_the_component_and_line() -> None:
    from haystack.components.builders import ChatPromptBuilder
    from jinja2.exceptions import SecurityError

    exc = _render_failure(
        '{% message role="user" %}\nQ: {{ question.__class__.__mro__ }}\n{% endmessage %}'
    )
    assert isinstance(exc, SecurityError)
    line, code = describe_failure(wrapped(exc, ChatPromptBuilder))
    assert code == 2 and "\n" not in line
    assert line.startswith("component 'llm' (ChatPromptBuilder): its template (line 2)")
    assert "sandbox" in line and "'__class__'" in line and "pipeline file" in line


def test_template_using_something_undefined_is_one_line() -> None:
    from haystack.components.builders import ChatPromptBuilder
    from jinja2.exceptions import UndefinedError

    exc = _render_failure('{% message role="user" %}{{ question.text.upper() }}{% endmessage %}')
    assert isinstance(exc, UndefinedError)
    line, code = describe_failure(wrapped(wrapped(exc, ChatPromptBuilder)))
    assert code == 2 and line.startswith("component 'llm' (ChatPromptBuilder)")
    assert "undefined" in line and "'text'" in line


def test_symbolic_link_loop_is_one_line_naming_the_path(tmp_path) -> None:
    import errno

    loop = tmp_path / "a"
    loop.symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(loop)
    try:
        loop.resolve()  # Python < 3.13: RuntimeError; later: OSError(ELOOP)
    except (RuntimeError, OSError) as exc:
        raised: BaseException = exc
    else:  # pragma: no cover - every supported Python refuses a loop
        raise AssertionError("no loop detected")
    for exc in (raised, OSError(errno.ELOOP, "Too many levels of symbolic links", str(loop))):
        line, code = describe_failure(exc)
        assert code == 1 and line.startswith(f"{loop}: symbolic link loop"), line
    assert describe_failure(RuntimeError("some other bug")) is None
