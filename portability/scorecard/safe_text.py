"""Untrusted text made safe to show: run output (error messages, operator, case and device names) goes
into PR-comment Markdown through `md_text`, which keeps it on one line, capped, and unable to break a table,
inject HTML, ping people (@mentions) or link issues (#refs); into junit.xml through `xml_text`, which drops
terminal escapes and replaces what XML 1.0 cannot carry."""

from __future__ import annotations

import html
import re
from typing import Any

MAX_MESSAGE_CHARS = 240
ZWSP = "\u200b"


# Terminal colour codes, then control and invisible formatting characters: bidi overrides/isolates can
# make a line read differently from what it says ("Trojan Source"), zero-width ones hide text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def md_text(text: Any, cap: int = MAX_MESSAGE_CHARS) -> str:
    """Untrusted text -> one safe Markdown table-cell fragment: one line, at most `cap` characters before
    escaping, no HTML, no table breaks, no code spans or emphasis, no @mentions or #refs."""
    s = str(text if text is not None else "")[: cap * 8 + 64]  # never run the regexes over megabytes
    s = _INVISIBLE.sub("", _ANSI.sub("", s))
    s = re.sub(r"\s+", " ", s).strip()
    if len(s) > cap:
        s = s[: cap - 1] + "…"
    s = html.escape(s, quote=False)
    s = re.sub(r"([\\`*_\[\]|~])", r"\\\1", s)
    s = s.replace("@", "@" + ZWSP).replace("#", "#" + ZWSP)
    return s


# Characters XML 1.0 cannot carry at all (a NUL or a terminal escape in an error message would make the
# whole junit.xml unreadable to CI test reporters).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: Any) -> str:
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", str(text)))
