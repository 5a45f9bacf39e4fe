"""Make untrusted text (passages, file names, model output) safe to print on a terminal.

Indexed documents and model replies are data, not terminal commands: an escape sequence in a
passage could clear the screen, set the window title or hide text. ``--json`` output needs none
of this, since JSON escapes control characters itself.
"""

from __future__ import annotations

import re

# whole escape sequences first (CSI, OSC up to BEL/ST, DCS/PM/APC strings, two-byte escapes),
# so their printable tails ("[2J", "]0;title") do not leak through as text
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 (but tab and newline), DEL, C1, and the bidi overrides that reorder what is shown
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` without terminal escape sequences and control characters.

    Args:
        text: untrusted text.
        keep_newlines: keep ``\\n`` (streamed answers); otherwise newlines become spaces.

    Returns:
        The text with escape sequences and control characters removed.
    """
    text = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))
    return text if keep_newlines else text.replace("\n", " ")
