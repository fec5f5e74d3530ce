"""evaluator.terminal: no code point that could steer a terminal survives; everything else is kept."""

from __future__ import annotations

import json
import unicodedata

from evaluator.terminal import json_text, printable, scrub
from tests.terminal_checks import HOSTILE_TEXT

UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
EVERY_CODE_POINT = "".join(map(chr, range(0x110000)))


def test_no_control_format_or_separator_code_point_survives_in_any_plane():
    for multiline in (False, True):
        shown = printable(EVERY_CODE_POINT, multiline=multiline)

        left = {c for c in shown if unicodedata.category(c) in UNSAFE}
        assert left == ({"\n", "\t"} if multiline else set())
        shown.encode("utf-8")  # no lone surrogate is left to crash the encoder


def test_each_hostile_character_is_shown_as_its_escape():
    shown = printable(HOSTILE_TEXT)

    for char, escape in (("\x1b", "\\x1b"), ("\r", "\\x0d"), ("\x08", "\\x08"), ("\x9b", "\\x9b"),
                         ("\x00", "\\x00"), ("\x7f", "\\x7f"), ("\u202e", "\\u202e"), ("\u2028", "\\u2028"),
                         ("\U000e0041", "\\U000e0041")):
        assert char not in shown and escape in shown
    assert "[bold]markup[/bold]" in shown  # plain text stays plain text


def test_a_log_keeps_its_lines_and_tabs_but_a_field_keeps_neither():
    text = "line one\tcol\nline two\r\n"

    assert printable(text, multiline=True) == "line one\tcol\nline two\\x0d\n"
    assert printable(text) == "line one\\x09col\\x0aline two\\x0d\\x0a"


def test_ordinary_text_in_any_script_is_unchanged_and_escaping_is_idempotent():
    text = "précision 0.93 — 精度 ✓ 🔬 naïve, and a typed \\x1b stays as typed"

    assert printable(text, multiline=True) == text
    once = printable(HOSTILE_TEXT, multiline=True)
    assert printable(once, multiline=True) == once


def test_scrub_escapes_keys_and_nested_values_and_leaves_numbers():
    value = {"a\x1b[2J": ["x\ny", {"k": "\u202e"}], "n": 1.5, "none": None}

    assert scrub(value) == {"a\\x1b[2J": ["x\\x0ay", {"k": "\\u202e"}], "n": 1.5, "none": None}


def test_json_text_is_printable_ascii_and_round_trips_exactly():
    value = {"message": HOSTILE_TEXT + "\ud800", HOSTILE_TEXT: [1, 2.5, None]}

    text = json_text(value)

    assert all(c == "\n" or 0x20 <= ord(c) < 0x7f for c in text)
    assert json.loads(text) == value
