"""Text the CLI did not write, made safe for a terminal: every control character shown, never obeyed.

A model controls its log and, through its predictions, parts of failure messages
and metrics; an admin's terminal prints them. An escape sequence (ESC[2J, an OSC
title or hyperlink), a carriage return or backspace that overwrites a line, a C1
control (U+009B is a one-byte CSI), a bidi override (U+202E) or a lone surrogate
(which would crash the encoder) must never reach the terminal as itself. Each is
rendered as a Python-style escape (`\\x1b`, `\\u202e`), so an operator still sees
what the model wrote. Every CLI printer of server- or model-provided text goes
through this module; JSON output stays JSON (see `json_text`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, TextIO

# Categories never printed as themselves: C0/DEL/C1 controls, format characters (bidi overrides and
# isolates, zero-width characters, tag characters), surrogates, and the line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Anything outside printable ASCII is looked at; for ASCII text this is the whole cost.
_CANDIDATES = re.compile(r"[^\x20-\x7e]")
_KEPT_IN_MULTILINE = frozenset("\n\t")


def _escape(char: str) -> str:
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def printable(text: object, *, multiline: bool = False) -> str:
    """Return `text` with every control or format character rendered visibly.

    `multiline` keeps newlines and tabs (a log); a single-line field (an id, a
    message, a name) keeps neither, so it cannot forge a line of its own.
    """
    keep = _KEPT_IN_MULTILINE if multiline else frozenset()

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep or unicodedata.category(char) not in _UNSAFE_CATEGORIES:
            return char
        return _escape(char)

    return _CANDIDATES.sub(replace, text if isinstance(text, str) else str(text))


def scrub(value: Any) -> Any:
    """Return a copy of a decoded JSON value whose strings (keys too) are single-line printable.

    The CLI's text formatters work on this copy, so no field they interpolate can
    carry a control character, whichever field it is.
    """
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """Return `value` as JSON whose every character is printable ASCII or a newline.

    NOTE: this relies on ensure_ascii=True: json escapes C0 controls as \\u00XX and every
    non-ASCII character (C1, bidi, surrogates) as \\uXXXX, so a JSON reader gets the exact
    value while a terminal gets only escapes. Never pass ensure_ascii=False here.
    """
    return json.dumps(value, indent=indent, ensure_ascii=True, default=str)


def tolerate_unencodable(*streams: TextIO) -> None:
    """Make the streams escape what their encoding cannot hold, instead of raising mid-output.

    Under a non-UTF-8 locale a model's accented or CJK text would otherwise end the
    command with a UnicodeEncodeError traceback.
    """
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
