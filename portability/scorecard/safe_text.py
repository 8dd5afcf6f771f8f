"""Untrusted text made safe to show: run output (error messages, operator, case and device names) goes
into PR-comment Markdown through `md_text`, which keeps it on one line, capped, and unable to break a table,
inject HTML, ping people (@mentions) or link issues (#refs), or through `md_code` as a code span that shows
it whole whatever backticks it holds; into junit.xml through `xml_text`, which drops terminal escapes and
replaces what XML 1.0 cannot carry; into report.html through `html_text`; into matplotlib labels through
`plot_text` (drawn as plain text, never mathtext). Every one of them removes terminal escapes, bidi
overrides and other control or invisible characters first (`visible`)."""

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


def visible(text: Any, cap: int | None = None) -> str:
    """`text` without terminal escapes, bidi overrides or other control/invisible characters, on one line
    (runs of whitespace made one space), cut to `cap` characters with an ellipsis."""
    s = str(text if text is not None else "")
    if cap is not None:
        s = s[: cap * 8 + 64]  # never run the regexes over megabytes
    s = _INVISIBLE.sub("", _ANSI.sub("", s))
    s = re.sub(r"\s+", " ", s).strip()
    if cap is not None and len(s) > cap:
        s = s[: cap - 1] + "…"
    return s


def json_safe(value: Any) -> Any:
    """`value` (a JSON document) with terminal escapes and bidi/control/invisible characters removed from
    every string, keys included; line breaks and tabs stay (reasons quote multi-line errors)."""
    if isinstance(value, str):
        return _INVISIBLE.sub("", _ANSI.sub("", value))
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def md_text(text: Any, cap: int = MAX_MESSAGE_CHARS) -> str:
    """Untrusted text -> one safe Markdown table-cell fragment: one line, at most `cap` characters before
    escaping, no HTML, no table breaks, no code spans or emphasis, no @mentions or #refs."""
    s = html.escape(visible(text, cap), quote=False)
    s = re.sub(r"([\\`*_\[\]|~])", r"\\\1", s)
    s = s.replace("@", "@" + ZWSP).replace("#", "#" + ZWSP)
    return s


def md_code(text: Any, cap: int = MAX_MESSAGE_CHARS) -> str:
    """Untrusted text -> one Markdown code span showing it verbatim (outside tables: GitHub splits table
    cells at `|` even inside code). A backslash cannot escape a backtick inside a code span, so the span
    is fenced, as CommonMark and GitHub define it, with a run of backticks longer than any run inside,
    and padded with a space where the text starts or ends with a backtick (one space each side is
    stripped when rendered). HTML and emphasis are inert inside a code span; @ and # still get a zero-width
    space after them, for renderers that link mentions anywhere."""
    s = (visible(text, cap) or " ").replace("@", "@" + ZWSP).replace("#", "#" + ZWSP)
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.strip() and (s[0] in "` " or s[-1] in "` ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def html_text(text: Any, cap: int | None = None) -> str:
    """Untrusted text for an HTML page: visible characters only, escaped (quotes too: safe in attributes)."""
    return html.escape(visible(text, cap), quote=True)


def plot_text(text: Any, cap: int | None = 80) -> str:
    """Untrusted text for a matplotlib label: visible characters only, on one line, capped. Draw it with
    `parse_math=False`: `$` starts mathtext, and an operator named `$\\frac{a}{b}$_x^y` ended
    `portability report` in a traceback."""
    return visible(text, cap)


# Characters XML 1.0 cannot carry at all (a NUL or a terminal escape in an error message would make the
# whole junit.xml unreadable to CI test reporters).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: Any) -> str:
    """Untrusted text for junit.xml: visible characters only (newlines kept), and none XML 1.0 forbids."""
    kept = _INVISIBLE.sub("", _ANSI.sub("", str(text if text is not None else "")))
    return _NOT_XML.sub("\ufffd", kept)
