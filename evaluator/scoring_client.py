"""The worker's side of the scoring fork server (evaluator.scoring_server): jobs in, pids and exits back.

One server per worker process; several of its threads may score at once, so every job has an id and a
reader thread hands each report to its job. The worker is not the forked child's parent: it learns the
child's pid from the server, opens a pidfd of it before it acknowledges the pid (the server reaps the child
only after that, so the pid cannot have been reused), kills through that pidfd, and takes the exit status
and peak RSS from the server's report. Should the server die while a child scores, the worker still waits
for the child's end on the pidfd; its status is then lost (None).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

from evaluator.scoring_server import SERVER_ENV

logger = logging.getLogger(__name__)

_KILL_WAIT_S = 30.0
_CLOSE_WAIT_S = 10.0


class ServerGone(Exception):
    """The scoring server exited (or could not take the job)."""


class ForkedChild:
    """One scoring forked by the server: its pid (once forked), its pidfd, its end as the server reported it."""

    def __init__(self, server: ScoringServer, job: int, log_path: Path) -> None:
        self.server, self.job, self.log_path = server, job, log_path
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.ended: tuple[int | None, int] | None = None  # (exit status, ru_maxrss in KiB) from the report
        self.lost = False  # the server went away before it reported this child's end
        self._changed = threading.Condition()

    def forked(self, timeout_s: float) -> bool:
        """Wait until the server forked the child (True) or went away first (False)."""
        with self._changed:
            self._changed.wait_for(lambda: self.pid is not None or self.lost, timeout_s)
            return self.pid is not None

    def poll(self, timeout_s: float) -> tuple[int | None, int] | None:
        """(exit status, peak RSS KiB) once the child ended, waiting up to timeout_s; None while it runs."""
        with self._changed:
            self._changed.wait_for(lambda: self.ended is not None or self.lost, timeout_s)
            if self.ended is not None:
                self._close()
                return self.ended
            if not self.lost:
                return None
            pidfd = self.pidfd
        if pidfd is None:  # never forked, or no pidfd to wait on: nothing left to wait for
            return None, 0
        if select.select([pidfd], [], [], timeout_s)[0]:
            with self._changed:
                self._close()
            return None, 0
        return None

    def kill(self) -> None:
        """SIGKILL the child (through its pidfd: never another process) and wait for its end."""
        with self._changed:
            pidfd = self.pidfd
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                self.server.send({"kill": self.job})
        except (OSError, ServerGone):
            pass  # already gone
        deadline = _KILL_WAIT_S
        while deadline > 0 and self.poll(0.5) is None:
            deadline -= 0.5

    def _report(self, body: dict) -> None:
        with self._changed:
            if "pid" in body:
                self.pid = int(body["pid"])
                try:
                    self.pidfd = os.pidfd_open(self.pid)  # NOTE: unreaped until our ack: this very child
                except OSError:
                    self.pidfd = None  # kill() then asks the server, which alone reaps it
            else:
                self.ended = (int(body["exit"]), int(body.get("maxrss_kb") or 0))
            self._changed.notify_all()

    def _lose(self) -> None:
        with self._changed:
            self.lost = True
            self._changed.notify_all()

    def _close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ScoringServer:
    """A started server process and the reader thread that dispatches its reports."""

    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process, self.log_path = process, log_path
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # NOTE: apart from _lock: a write blocked on a full pipe holds no reports
        self._jobs: dict[int, ForkedChild] = {}
        self._ids = itertools.count(1)
        self._gone = False
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="scoring-server-reports", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, log_dir: Path) -> ScoringServer:
        """Start the server (it imports in its own process; jobs queue on its stdin meanwhile).

        Raises:
            OSError: the process could not start.
        """
        log_path = log_dir / f"server-{secrets.token_hex(8)}.log"
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen([sys.executable, "-m", "evaluator.scoring_server", str(log_path)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=log_dir,
                                           env={**os.environ, **SERVER_ENV}, close_fds=True)
        except OSError:
            log_path.unlink(missing_ok=True)
            raise
        return cls(process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        with self._lock:
            return not self._gone and not self._closing and self.process.poll() is None

    def submit(self, request_path: Path, result_path: Path, log_path: Path) -> ForkedChild:
        """Hand a job to the server; the child is forked when the server reads it (ForkedChild.forked)."""
        with self._lock:
            if self._gone or self._closing:
                raise ServerGone()
            child = ForkedChild(self, next(self._ids), log_path)
            self._jobs[child.job] = child
        self.send({"job": child.job, "request": str(request_path), "result": str(result_path), "log": str(log_path)})
        return child

    def send(self, body: dict) -> None:
        line = (json.dumps(body) + "\n").encode()
        with self._write_lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(line)
                self.process.stdin.flush()
            except (OSError, ValueError) as ex:
                raise ServerGone() from ex

    def close(self) -> None:
        """Stop taking jobs; the server exits once the children it is scoring have ended (worker shutdown)."""
        with self._lock:
            self._closing = True
            idle = not self._jobs
        if idle:
            self._shut()

    def discard(self) -> None:
        """Kill a server that stopped serving (its reports are gone) and reap it."""
        with self._lock:
            self._closing = True
        self.process.kill()
        self._shut()

    def _shut(self) -> None:
        with self._write_lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(_CLOSE_WAIT_S)
        self.log_path.unlink(missing_ok=True)

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                body = json.loads(line)
                with self._lock:
                    child = self._jobs.get(int(body["job"]))
                if child is None:
                    continue
                child._report(body)
                if "pid" in body:
                    self.send({"ack": child.job})
                else:
                    self._done(child)
        except (OSError, ValueError, ServerGone) as ex:
            logger.warning("The scoring server's reports broke off: %s", ex)
        self._ended()

    def _done(self, child: ForkedChild) -> None:
        with self._lock:
            self._jobs.pop(child.job, None)
            shut = self._closing and not self._jobs
        if shut:
            threading.Thread(target=self._shut, name="scoring-server-close", daemon=True).start()

    def _ended(self) -> None:
        with self._lock:
            self._gone = True
            lost, self._jobs = list(self._jobs.values()), {}
            expected = self._closing
        for child in lost:
            child._lose()
        if not expected:
            logger.warning("The scoring server exited (%s); %d scoring(s) lost their exit status: %s",
                           self.process.wait(), len(lost), log_tail(self.log_path))


def log_tail(path: Path, size: int = 2048) -> str:
    """The last `size` bytes of a scoring log, as text ("" when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
