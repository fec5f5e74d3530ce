"""What a sandbox container says, read without trusting it: its capped log and its report.

How output leaves the container without trusting the host disk or needing any
privilege: /output is a tmpfs sized by the limits (the kernel caps it, and its
pages count against the memory limit). The image's entrypoint runs the predictor
with both of its streams on the container's stderr; the predictor writes its report
on stdout as soon as it is done: "<status> <length>\n" and exactly that many bytes of
/output/predictions.parquet (an older image, or the entrypoint when the predictor
died first, writes "<status>\n" and the bytes up to the container's end).
We attach to the container before starting it and demultiplex the two streams:
stderr into a capped head+tail log, stdout into a buffer we stop reading past the
output cap. Nothing the container says is parsed beyond that status line.
"""

from __future__ import annotations

import collections
import threading

from docker.utils.socket import frames_iter

from evaluator.sandbox.spec import Limits

_STDOUT = 1


class LogCapture:
    """Keep the first and last `limit // 2` bytes of a stream, and count the rest."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_bytes = 0
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail.append(data)
        self._tail_bytes += len(data)
        while self._tail_bytes - len(self._tail[0]) >= self._half:
            self._tail_bytes -= len(self._tail.popleft())

    def getvalue(self) -> bytes:
        tail = b"".join(self._tail)[-self._half:]
        omitted = self.total - len(self._head) - len(tail)
        if omitted <= 0:
            return bytes(self._head) + tail
        return bytes(self._head) + f"\n[... {omitted} bytes of log omitted ...]\n".encode() + tail


class Streams(threading.Thread):
    """Read the attached container streams until the container closes them, or its report is complete."""

    def __init__(self, sock, limits: Limits) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name="sandbox-streams", daemon=True)
        self._sock = sock
        self._limit = limits.output_bytes
        self._cap = limits.output_bytes + 32  # the status line, then at most the tmpfs size
        self._expected: int | None = None  # the whole report's size once its status line gave a length
        self.log = LogCapture(limits.log_bytes)
        self.stdout = bytearray()
        self.overflow = False
        self.reported = False  # the report and the whole log arrived: the result is complete, what follows ignored
        self.finished = threading.Event()  # reported, or the streams ended
        self.error: BaseException | None = None
        self._report_whole = False  # a length-prefixed report arrived whole
        self._log_whole = False  # the predictor's last log line (END_OF_LOG) arrived
        self._log_end = b""  # the last bytes of the log, for a mark split across frames

    def run(self) -> None:
        try:
            for stream, data in frames_iter(self._sock, tty=False):
                if stream != _STDOUT:
                    self.log.write(data)
                    self._look_for_log_end(data)
                elif not self._report_whole:
                    self._take(data)
        except (OSError, ValueError) as ex:  # the socket closes under us when the container is killed
            self.error = ex
        finally:
            self.finished.set()

    def _look_for_log_end(self, data: bytes) -> None:
        """The two streams are separate pipes: the log's end may come after the report, so both are awaited."""
        if self._log_whole:
            return
        window = self._log_end + data
        if END_OF_LOG in window:
            self._log_whole = True
            self._complete()
        self._log_end = window[-len(END_OF_LOG):]

    def _complete(self) -> None:
        if self._report_whole and self._log_whole:
            self.reported = True
            self.finished.set()

    def _take(self, data: bytes) -> None:
        if len(self.stdout) + len(data) > self._cap:
            self.overflow = True
            self.finished.set()
            return
        self.stdout += data
        if self._expected is None:
            line, newline, _ = bytes(self.stdout[:_STATUS_LINE_MAX]).partition(b"\n")
            length = _declared_length(line) if newline else None
            if length is not None and length > self._limit:
                self.overflow = True
                self.finished.set()
                return
            if length is not None:
                self._expected = len(line) + 1 + length
        if self._expected is not None and len(self.stdout) >= self._expected:
            del self.stdout[self._expected:]  # the entrypoint's own "<status>\n" after the report
            self._report_whole = True
            self._complete()


_STATUS_LINE_MAX = 32
# The predictor's last log line, written just before its report (images/base/evaluator_predict.py).
# A model that prints it early only cuts its own log short.
END_OF_LOG = b"[evaluator] end of log\n"


def _declared_length(line: bytes) -> int | None:
    """The <length> of a "<status> <length>" line; None for the bare "<status>" of the older report."""
    parts = line.split(b" ")
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


def split_status(stdout: bytes | bytearray) -> tuple[int | None, bytes | None]:
    """Parse a report: "<status> <length>\n" + that many bytes (the rest ignored), or "<status>\n" + the rest."""
    line, newline, rest = bytes(stdout[:_STATUS_LINE_MAX]).partition(b"\n")
    if not newline:
        return None, None
    status_text, _, _ = line.partition(b" ")
    try:
        status = int(status_text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    length = _declared_length(line)
    predictions = bytes(stdout[len(line) + 1:] if length is None else stdout[len(line) + 1:len(line) + 1 + length])
    return status, predictions or None
