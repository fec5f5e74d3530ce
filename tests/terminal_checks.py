"""Hostile terminal text a model can produce, and the check that CLI output holds none of it raw."""

from __future__ import annotations

import unicodedata

# Clear screen, home, an OSC title and an OSC 8 hyperlink, a fake verdict behind a carriage
# return, backspaces, bidi override and isolate, a C1 CSI, NUL, NEL, DEL, a line separator,
# a zero-width joiner, a tag character, and rich-style markup that must stay plain text.
HOSTILE_TEXT = ("\x1b[2J\x1b[H\x1b]0;pwned-title\x07\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
                " run failed\rrun succeeded\x08\x08 \u202eevil\u202c \u2066iso\u2069 \x9b31mC1 \x00NUL \x85NEL"
                " \x7fDEL \u2028LS \u200dZWJ \U000e0041tag [bold]markup[/bold] [link=http://x]y[/link]")
# The same as a model's predict.py would write it (the escapes spelled out for the source file).
HOSTILE_SOURCE_LITERAL = repr(HOSTILE_TEXT)
# PostgreSQL text cannot hold NUL: what a stored record can carry at worst.
HOSTILE_RECORD_TEXT = HOSTILE_TEXT.replace("\x00", "")

_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def unsafe_characters(output: bytes, *, allow: str = "\n\t") -> list[str]:
    """Return the control/format characters in output (as escapes) other than those allowed."""
    text = output.decode("utf-8")  # the CLI writes UTF-8; invalid bytes would fail the test here
    return sorted({f"U+{ord(c):04X}" for c in text if c not in allow and unicodedata.category(c) in _UNSAFE})


def hostile_log_predict(then: str, *, imports: str = "") -> str:
    """A bundle's predict.py that logs the hostile text (and raw invalid UTF-8 around an ESC), then runs `then`."""
    return f"""
import sys
{imports}
TEXT = {HOSTILE_SOURCE_LITERAL}

def predict(batch):
    sys.stderr.write("HOSTILE-BEGIN " + TEXT + " HOSTILE-END\\n")
    sys.stderr.flush()
    sys.stderr.buffer.write(b"raw \\xff\\xc2\\x9b\\x1bc bytes\\n")
    sys.stderr.flush()
    {then}
"""
