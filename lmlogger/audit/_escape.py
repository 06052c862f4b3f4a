"""Escaping every string read from a run for the format it is printed in.

A run dir is untrusted input: a key, a fix or a reason may hold terminal escape sequences, markdown or HTML.
Printed strings go through one of these functions, so what reaches a terminal or a rendered page is the text,
never an instruction to the terminal or the renderer.
"""

from __future__ import annotations

import re
import string
import unicodedata

# Categories that are never printed as they are: controls (C0, C1, DEL), format characters (bidi overrides,
# zero-width joiners), surrogates, private use, unassigned, and the line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# ASCII punctuation that can start markup in CommonMark/GFM: emphasis, code, links, autolinks, HTML, entities,
# table cells, headings, lists, strikethrough, math, mentions. ``,;'"%?/=^`` never do inside a line.
_PUNCTUATION = frozenset(string.punctuation) - frozenset(",;'\"%?/=^")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal(text: object) -> str:
    """``text`` with every control, format and separator character shown as a Python-style escape.

    Example:
        >>> terminal("f1\\x1b[2J")
        'f1\\\\x1b[2J'
    """
    text = str(text)
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(_escape_char(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def markdown_text(text: object) -> str:
    """``text`` as literal markdown: controls escaped, every ASCII punctuation character that can start markup
    backslash-escaped (CommonMark renders ``\\X`` as ``X`` for any punctuation, so no link, emphasis, HTML,
    mention or table cell boundary can start inside it)."""
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in terminal(text))


def markdown_code(text: object, in_table: bool = True) -> str:
    """``text`` as an inline code span (literal: no HTML, no links, no emphasis).

    A text holding backticks gets a longer fence (CommonMark: a span opened by N backticks ends only at a run
    of exactly N). In a GitHub table cell a ``|`` must be written ``\\|`` even inside a code span.
    """
    shown = terminal(text)
    if not shown.strip():
        return markdown_text(text)
    if in_table:
        shown = shown.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"
