"""The one base of the errors ragkit reports to users as a single actionable line.

Every layer's error class derives from :class:`RagkitError` (and keeps its builtin base, e.g.
``ValueError``, so existing ``except`` clauses still work). The CLI needs no list of classes:
anything that is a ``RagkitError`` is printed as one line and exits with its ``exit_code``.
This module imports nothing, so any layer may import it cheaply.
"""

from __future__ import annotations

__all__ = ["InvalidInputError", "InvalidParameter", "RagkitError"]


class RagkitError(Exception):
    """An error whose message is already a complete, actionable one-line report.

    Attributes:
        exit_code: The CLI's exit status for it: 1 (something failed), 2 (invalid input).
    """

    exit_code: int = 1


class InvalidInputError(RagkitError):
    """The user's input (config, pipeline, dataset) is invalid: exit status 2."""

    exit_code = 2


class InvalidParameter(InvalidInputError, ValueError):
    """A component's init parameter is out of range; ``parameter`` names it.

    Pipeline loading reports it as ``FILE: components.NAME.init_parameters.PARAMETER: message``.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
