"""A standby scoring child per worker process: started ahead, its imports done, waiting for one job.

Starting `python -m evaluator.isolated_scoring` and importing NumPy and Arrow costs
each run ~0.5-1 s before a row is read. A standby child pays that while the worker
waits: it imports what scoring needs, then blocks on one line of stdin naming its
request. It is used for exactly one scoring, then exits; a new one is started in the
background once that run is recorded (evaluator.after_run). Nothing of a run is in it before its line: it is
the same isolated, memory-limited child (isolated_scoring.child_main sets its limits
after the line), only started sooner. With EVALUATOR_SCORING_STANDBY=0 every scoring
starts its own child, through the same protocol.

The child's output (its whole life: imports, then the scoring) goes to a log file of
its own, which the parent reads for a crash's tail.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from evaluator.config import Config
from evaluator.errors import InfrastructureError

logger = logging.getLogger(__name__)

STANDBY_ARG = "--standby"


@dataclasses.dataclass
class ScoringChild:
    """A started scoring child: its process (stdin a pipe for the one job line) and its log file."""

    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def hand(self, request_path: Path, result_path: Path) -> bool:
        """Write the job line and close stdin; False when the child died before it could read it."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps([str(request_path), str(result_path)]) + "\n").encode())
            self.process.stdin.close()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def discard(self) -> None:
        """Kill and reap it (an unused standby at shutdown, or one that died idle) and remove its log."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        self.log_path.unlink(missing_ok=True)


def _log_dir(config: Config) -> Path:
    folder = Path(config.work_dir) / "scoring"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def spawn(config: Config) -> ScoringChild:
    """Start a scoring child; it imports, then waits for its job line.

    Raises:
        InfrastructureError: the process could not start.
    """
    log_dir = _log_dir(config)
    log_path = log_dir / f"child-{secrets.token_hex(8)}.log"
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "evaluator.isolated_scoring", STANDBY_ARG, str(log_path)],
                                       stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=log_dir, close_fds=True)
    except OSError as ex:
        log_path.unlink(missing_ok=True)
        raise InfrastructureError(f"the scoring process could not start: {ex}") from ex
    return ScoringChild(process, log_path)


class Standby:
    """At most one waiting child per worker process (and per work folder); refilled in the background.

    Only a process that asked for one (keep(): a worker at boot) has a standby child; elsewhere (the CLI,
    a test) each scoring starts its own, as take() does when none is waiting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[int, str], ScoringChild] = {}
        self._starting: set[tuple[int, str]] = set()
        self._kept: set[tuple[int, str]] = set()

    def keep(self, config: Config) -> None:
        """Keep a standby child for this process and work folder from now on (EVALUATOR_SCORING_STANDBY)."""
        if config.scoring_standby:
            with self._lock:
                self._kept.add(_key(config))
            self.refill(config)

    def take(self, config: Config) -> ScoringChild:
        """Return the waiting child if it is alive (a dead one is discarded), else a fresh one."""
        if config.scoring_standby:
            with self._lock:
                child = self._waiting.pop(_key(config), None)
            if child is not None:
                if child.alive():
                    return child
                logger.info("The standby scoring child exited while it waited (%s); starting one now",
                            child.process.returncode)
                child.discard()
        return spawn(config)

    def refill(self, config: Config) -> None:
        """Start the next standby child in a background thread (no-op when disabled or one is there)."""
        if not config.scoring_standby:
            return
        key = _key(config)
        with self._lock:
            if key not in self._kept or key in self._waiting or key in self._starting:
                return
            self._starting.add(key)
        threading.Thread(target=self._start, args=(config, key), name="scoring-standby", daemon=True).start()

    def _start(self, config: Config, key: tuple[int, str]) -> None:
        try:
            child = spawn(config)
        except InfrastructureError as ex:
            logger.warning("No standby scoring child (the next scoring starts its own): %s", ex)
            child = None
        with self._lock:
            self._starting.discard(key)
            if child is not None and key not in self._waiting:
                self._waiting[key] = child
                child = None
        if child is not None:
            child.discard()

    def waiting(self, config: Config) -> ScoringChild | None:
        """The waiting child, if any (for tests)."""
        with self._lock:
            return self._waiting.get(_key(config))

    def close(self) -> None:
        """Kill this process's waiting children (worker shutdown; a child also exits when its stdin closes)."""
        with self._lock:
            self._kept = {key for key in self._kept if key[0] != os.getpid()}
            mine = [key for key in self._waiting if key[0] == os.getpid()]
            children = [self._waiting.pop(key) for key in mine]
        for child in children:
            child.discard()


def _key(config: Config) -> tuple[int, str]:
    # NOTE: keyed by pid too: a forked worker process must not take its parent's child
    return os.getpid(), str(config.work_dir)


STANDBY = Standby()
