"""The scoring process started ahead: a fork server per worker process, imports done, one fork per scoring.

Starting `python -m evaluator.isolated_scoring` and importing NumPy and Arrow costs each run ~0.6 CPU-s
before a row is read. A worker process instead keeps one scoring server (evaluator.scoring_server) that
pays those imports once and forks a child per scoring: the same isolated, memory-limited child
(isolated_scoring.child_main sets its limits once it has its job), only without the start. A server that
died is replaced once the run is recorded (refill(), through evaluator.after_run), or by the next scoring.

Only a process that asked for one (keep(): a worker at boot) has a server; elsewhere (the CLI, a test) and
with EVALUATOR_SCORING_STANDBY=0 each scoring starts a fresh interpreter (ScoringChild), through the same
job line. A child's output goes to a log file of its own, which the parent reads for a crash's tail.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

from evaluator.config import Config
from evaluator.errors import InfrastructureError
from evaluator.scoring_client import ScoringServer, ServerGone

logger = logging.getLogger(__name__)

STANDBY_ARG = "--standby"
_FORK_WAIT_S = 120.0  # a server just started imports first (~1 s; more on a loaded host) before it forks


class Scorer(Protocol):
    """A started scoring: its log file, its end (exit status or None when lost, peak RSS in KiB), a kill."""

    log_path: Path

    def poll(self, timeout_s: float) -> tuple[int | None, int] | None: ...

    def kill(self) -> None: ...


@dataclasses.dataclass
class ScoringChild:
    """A fresh interpreter for one scoring (the cold path): stdin a pipe for the job line, its own log."""

    process: subprocess.Popen
    log_path: Path
    pidfd: int | None = None

    def hand(self, request_path: Path, result_path: Path) -> bool:
        """Write the job line and close stdin; False when the child died before it could read it."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps([str(request_path), str(result_path)]) + "\n").encode())
            self.process.stdin.close()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def poll(self, timeout_s: float) -> tuple[int | None, int] | None:
        """Reap it with os.wait4 (its own rusage), waiting up to timeout_s on a pidfd (woken by the exit)."""
        for look in range(2):
            pid, code, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.process.returncode = os.waitstatus_to_exitcode(code)  # NOTE: so Popen does not reap it again
                self._close()
                return self.process.returncode, usage.ru_maxrss
            if look:
                return None
            if self.pidfd is None:
                try:
                    self.pidfd = os.pidfd_open(self.process.pid)
                except (AttributeError, OSError):
                    time.sleep(timeout_s)
                    continue
            select.select([self.pidfd], [], [], timeout_s)
        return None

    def kill(self) -> None:
        self.process.kill()
        while self.poll(1.0) is None:
            pass

    def discard(self) -> None:
        """Kill and reap one that died before its job, and remove its log."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        self._close()
        self.log_path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _log_dir(config: Config) -> Path:
    folder = Path(config.work_dir) / "scoring"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _child_log(config: Config) -> Path:
    return _log_dir(config) / f"child-{secrets.token_hex(8)}.log"


def spawn(config: Config) -> ScoringChild:
    """Start a fresh scoring interpreter; it imports, then waits for its job line.

    Raises:
        InfrastructureError: the process could not start.
    """
    log_path = _child_log(config)
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "evaluator.isolated_scoring", STANDBY_ARG, str(log_path)],
                                       stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=log_path.parent,
                                       close_fds=True)
    except OSError as ex:
        log_path.unlink(missing_ok=True)
        raise InfrastructureError(f"the scoring process could not start: {ex}") from ex
    return ScoringChild(process, log_path)


class Standby:
    """At most one scoring server per worker process (and per work folder); replaced when it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[tuple[int, str], ScoringServer] = {}
        self._kept: set[tuple[int, str]] = set()

    def keep(self, config: Config) -> None:
        """Keep a scoring server for this process and work folder from now on (EVALUATOR_SCORING_STANDBY)."""
        if config.scoring_standby:
            with self._lock:
                self._kept.add(_key(config))
            self.refill(config)

    def start(self, config: Config, request_path: Path, result_path: Path) -> Scorer:
        """Start scoring the request: forked by this process's server (started again once if it died), or cold.

        Raises:
            InfrastructureError: no scoring process could be started.
        """
        with self._lock:
            kept = config.scoring_standby and _key(config) in self._kept
        if not kept:
            return _cold(config, request_path, result_path)
        for _ in range(2):
            server = self._server(config)
            try:
                child = server.submit(request_path, result_path, _child_log(config))
            except ServerGone:
                child = None
            if child is not None and child.forked(_FORK_WAIT_S):
                return child
            logger.info("The scoring server (pid %d) exited before it forked the scoring; starting another",
                        server.pid)
            self._drop(config, server)
        raise InfrastructureError("the scoring server exited before it could start the scoring; see the worker log")

    def refill(self, config: Config) -> None:
        """Start the server again if it died (no-op when disabled, not kept, or it is up)."""
        with self._lock:
            kept = config.scoring_standby and _key(config) in self._kept
        if kept:
            try:
                self._server(config)
            except InfrastructureError as ex:
                logger.warning("No scoring server (the next scoring tries again): %s", ex)

    def server(self, config: Config) -> ScoringServer | None:
        """The server kept for this process and folder, if any (for tests)."""
        with self._lock:
            return self._servers.get(_key(config))

    def close(self) -> None:
        """Stop this process's servers (worker shutdown): each exits once the scorings it runs have ended."""
        with self._lock:
            self._kept = {key for key in self._kept if key[0] != os.getpid()}
            mine = [key for key in self._servers if key[0] == os.getpid()]
            servers = [self._servers.pop(key) for key in mine]
        for server in servers:
            server.close()

    def _server(self, config: Config) -> ScoringServer:
        key = _key(config)
        with self._lock:
            server = self._servers.get(key)
            if server is not None and server.alive():
                return server
            dead = self._servers.pop(key, None)
            try:
                server = self._servers[key] = ScoringServer.start(_log_dir(config))
            except OSError as ex:
                raise InfrastructureError(f"the scoring server could not start: {ex}") from ex
        if dead is not None:
            logger.info("The scoring server (pid %d) had exited (%s); started another", dead.pid, dead.process.poll())
            dead.discard()
        return server

    def _drop(self, config: Config, server: ScoringServer) -> None:
        with self._lock:
            if self._servers.get(_key(config)) is server:
                del self._servers[_key(config)]
        server.discard()


def _cold(config: Config, request_path: Path, result_path: Path) -> ScoringChild:
    """A fresh interpreter for this one scoring (another when the first died before it could read its job)."""
    for _ in range(2):
        child = spawn(config)
        if child.hand(request_path, result_path):
            return child
        logger.info("A scoring child exited before its job (%s); starting another", child.process.poll())
        child.discard()
    raise InfrastructureError("the scoring process exited before it could read its job; see the worker log")


def _key(config: Config) -> tuple[int, str]:
    # NOTE: keyed by pid too: a forked worker process must not use its parent's server
    return os.getpid(), str(config.work_dir)


STANDBY = Standby()
