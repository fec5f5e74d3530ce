"""What a failed model's log says, for its failure message: the last exception line and where the log is.

"the model's program failed; see the log" left every participant to dig. The in-image program
prints the model's traceback last (exit status 1) or one `[evaluator] bad input: ...` line
(exit status 2), so the message quotes that line. The log is the model's: the line is
decoded leniently, escaped and capped by EvaluatorError like every message, and a model that
forges a traceback only misleads itself.
"""

from __future__ import annotations

from evaluator.errors import SandboxError

# NOTE: `evaluator evaluate` names its runs so (commands/evaluate.py): their log is local, not on the platform.
LOCAL_RUN_PREFIX = "local-"
_TRACEBACK = "Traceback (most recent call last):"
_BAD_INPUT = "[evaluator] bad input: "
_SCANNED_BYTES = 64 * 1024  # the tail that holds the last traceback; logs are capped at the sandbox anyway
_QUOTED_CHARS = 300


def last_exception_line(log: bytes) -> str:
    """Return the exception line of the log's last traceback, the program's own reason, or its last line."""
    text = log[-_SCANNED_BYTES:].decode("utf-8", "replace")
    at = text.rfind(_TRACEBACK)
    if at >= 0:
        for line in text[at + len(_TRACEBACK):].splitlines():
            if line.strip() and not line[0].isspace():  # frames and code lines are indented; the exception is not
                return _capped(line)
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(_BAD_INPUT):
            return _capped(line[len(_BAD_INPUT):])
    return _capped(f"its log ends with: {lines[-1]}") if lines else "it wrote no log"


def _capped(line: str) -> str:
    line = line.strip()
    return line if len(line) <= _QUOTED_CHARS else line[: _QUOTED_CHARS - 5] + " ..."


def where_the_log_is(run_id: str) -> str:
    """Name the command (or option) that shows the whole log of this run."""
    if run_id.startswith(LOCAL_RUN_PREFIX):
        return "the whole log: `evaluator evaluate --log FILE`"
    return f"the whole log: `evaluator runs logs {run_id}`"


def program_failed(exit_code: int, log: bytes, run_id: str) -> SandboxError:
    """The failure of a model program that exited non-zero, quoting why and naming the log."""
    what = "rejected its manifest or input" if exit_code == 2 else "failed"
    return SandboxError(f"the model's program {what} (exit status {exit_code}): {last_exception_line(log)}; "
                        f"{where_the_log_is(run_id)}")
