"""The one base of the errors ragkit reports to users as a single actionable line.

Every layer's error class derives from :class:`RagkitError` (and keeps its builtin base, e.g.
``ValueError``, so existing ``except`` clauses still work). The CLI needs no list of classes:
anything that is a ``RagkitError`` is printed as one line and exits with its ``exit_code``.
This module imports nothing, so any layer may import it cheaply.
"""

from __future__ import annotations

import reprlib

__all__ = [
    "MAX_ERROR_CHARS",
    "ConfigError",
    "InvalidInputError",
    "InvalidParameter",
    "RagkitError",
    "check_count",
    "clip",
    "clip_line",
]

MAX_ERROR_CHARS = 2000
"""The longest error line a user sees; longer ones are cut (a value echoed in full can be GBs)."""


def clip(value: object, limit: int = 100) -> str:
    """A bounded ``repr`` of a user's value for an error message: cheap on any size of value.

    ``repr`` of an aliased YAML list can be gigabytes; :mod:`reprlib` stops after a few items
    and levels, and the result is cut to ``limit`` characters.
    """
    short = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    short.maxlevel, short.maxstring, short.maxother = 2, 60, 60
    short.maxdict = short.maxlist = short.maxtuple = short.maxset = 6
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip_line(line: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``line`` cut to ``limit`` characters, saying how much was left out."""
    if len(line) <= limit:
        return line
    return f"{line[:limit]}... [{len(line) - limit:,} more characters]"


class RagkitError(Exception):
    """An error whose message is already a complete, actionable one-line report.

    Attributes:
        exit_code: The CLI's exit status for it: 1 (something failed), 2 (invalid input).
    """

    exit_code: int = 1


class InvalidInputError(RagkitError):
    """The user's input (config, pipeline, dataset) is invalid: exit status 2."""

    exit_code = 2


class ConfigError(InvalidInputError, ValueError):
    """A configuration file or value is invalid; the message names the file and the YAML path.

    It lives here, not in :mod:`ragkit.config`, so that modules below the config layer (the
    shipped-file lookup in :mod:`ragkit.resources`) can raise it without importing the config.
    """


class InvalidParameter(InvalidInputError, ValueError):
    """A component's init parameter is out of range; ``parameter`` names it.

    Pipeline loading reports it as ``FILE: components.NAME.init_parameters.PARAMETER: message``.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an integer >= ``minimum``; the one check of every count parameter.

    Booleans are refused although Python counts them as integers (``top_k: true`` is a typo,
    not 1), and a string or float fails here with the parameter's name instead of as a
    ``TypeError`` deep inside the first query.

    Args:
        name: The parameter, as the user spells it (``top_k``, ``search.iterations``).
        value: What the user passed.
        minimum: The smallest allowed value.

    Raises:
        InvalidParameter: ``value`` is not an integer >= ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameter(name, f"must be an integer >= {minimum}, got {clip(value)}")
    return value
