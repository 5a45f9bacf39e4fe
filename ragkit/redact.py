"""Hide the secrets in a store URL before it is printed, logged or used to name a directory.

A Qdrant URL may carry ``user:password@`` and an ``?api-key=`` query; neither may reach a
terminal, an error line or a path on disk. This module imports only the standard library, so
config validation and error formatting can use it cheaply.
"""

from __future__ import annotations

import re

__all__ = ["credentials", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` without user, password, query and fragment: safe to print or to name a directory.

    Parsed by hand rather than with ``urlsplit``, which takes ``://user:pw@host`` (no scheme)
    for a path and would leave the password in it: everything before the last ``@`` of the
    part before ``?``/``#`` is user information, whatever else the URL gets wrong.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = re.split("[?#]", rest, maxsplit=1)[0]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def credentials(url: str) -> list[str]:
    """Secret parts of ``url`` to blank out of messages (short ones would mangle ordinary words)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo + "@" if userinfo else "", parts.query]
    found += [c for c in (parts.password, parts.username) if c and len(c) >= 6]
    return [c for c in found if c]
