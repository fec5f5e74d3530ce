"""Progress the CLI shows while it uploads and waits: a redrawn line on a terminal, plain lines otherwise.

A CI log or a pipe gets one line per change (never a `\\r`), so it stays readable. Every
server-provided part of a line (the status, an id) is escaped by evaluator.terminal first.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable

from evaluator.terminal import printable

Progress = Callable[[int, int], None]


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def upload_bar(stream: IO[str] | None = None, *, tty: bool | None = None) -> Progress:
    """Return a callback drawing `upload [#####.....] 42% 4.2/10.0 MiB`: redrawn, or a line per quarter."""
    out = stream or sys.stderr
    redraw = is_terminal(out) if tty is None else tty
    last = [-1]

    def draw(done: int, total: int) -> None:
        percent = int(done * 100 / total) if total else 100
        shown = percent if redraw else percent // 25 * 25
        if shown == last[0]:
            return
        last[0] = shown
        filled = shown // 4
        line = f"upload [{'#' * filled}{'.' * (25 - filled)}] {shown:3d}% {done / 2**20:.1f}/{total / 2**20:.1f} MiB"
        if redraw:
            out.write("\r" + line + ("\n" if done >= total else ""))
        else:
            out.write(line + "\n")
        out.flush()

    return draw


class StatusLine:
    """Show a run's stage and the time waited: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._out = stream or sys.stderr
        self._tty = is_terminal(self._out) if tty is None else tty
        self._clock = clock
        self._started = clock()
        self._last = ""
        self._width = 0

    def __call__(self, run: dict) -> None:
        what = printable(f"run {str(run.get('id') or '')[:8]}" if run.get("id") else "submission")
        status = printable(run.get("status", ""))
        elapsed = int(self._clock() - self._started)
        if self._tty:
            line = f"{what} {status} ({elapsed}s)"
            self._out.write("\r" + line.ljust(self._width))
            self._width = max(self._width, len(line))
        elif status != self._last:
            self._out.write(f"{what} {status} ({elapsed}s)\n")
        self._last = status
        self._out.flush()

    def close(self) -> None:
        """End the redrawn line, so what follows starts on its own."""
        if self._tty and self._width:
            self._out.write("\n")
            self._out.flush()
