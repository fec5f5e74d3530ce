"""The scoring fork server ("zygote"): imports what scoring needs once, then forks one child per scoring.

`python -m evaluator.scoring_server` is started by a worker process (evaluator.scoring_client) and
lives as long as it does. It never opens a run's file: each job line names a request, a result and a log
path, and the forked child (a copy of this process, imports done) closes the server's pipes, starts a
session of its own, sends its output to that log and runs isolated_scoring.child_main, which sets the
child's memory limit before it opens anything. That is today's standby child after its job line, without
an interpreter start and ~0.6 CPU-s of imports per run.

Protocol, one JSON object per line. In (stdin): {"job", "request", "result", "log"} to start a scoring;
{"ack": job} once the worker holds a pidfd of that child (only then is it reaped: its pid cannot be reused
before); {"kill": job} (a worker without pidfds). Out (stdout): {"job", "pid"} once forked, then
{"job", "exit", "maxrss_kb"} once reaped. End of file on stdin (the worker closed it or died) ends the server,
and a child still scoring dies with it (PR_SET_PDEATHSIG): no worker is left to enforce its timeout. A worker
that shuts down closes stdin only once its scorings have ended (scoring_client.ScoringServer.close).

Forking is safe only with one thread: OpenBLAS (NumPy) and Arrow's jemalloc each start one at import,
so the worker starts the server with OPENBLAS_NUM_THREADS=1 and JE_ARROW_MALLOC_CONF=background_thread:false
(SERVER_ENV), and the server checks /proc/self/task before each fork.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
from pathlib import Path

# NOTE: each library's threads start at import, so these must be set before the imports (by the worker, in
# the server's environment: the server re-checks them)
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
_LINE_MAX = 16384
_PR_SET_PDEATHSIG = 1
# What scoring a run imports (measured: sys.modules after one classification run): Arrow converts through
# pandas (pyarrow.pandas_compat), which brings dateutil and zoneinfo; ~1 s of a run's scoring without them.
_IMPORTS = ("numpy", "pandas", "pyarrow.parquet", "pyarrow.compute", "pyarrow.csv", "pyarrow.pandas_compat",
            "evaluator.scoring.csv_predictions", "evaluator.splits", "evaluator.plots.stats", "tarfile",
            "_strptime", "zoneinfo", "encodings.ascii", "pyarrow.vendored.version")
_OPTIONAL_IMPORTS = ("pandas", "pyarrow.pandas_compat")  # not in install_requires: imported only when installed


def preimport() -> None:
    """Import what scoring a run imports and warm the document caches (the server's, a cold child's)."""
    for name in _IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # pandas is optional (the platform's own install has none)
            if name not in _OPTIONAL_IMPORTS:
                raise
    from evaluator.scoring import document

    document.implementation()  # its package-metadata lookups (importlib.metadata, email)
    document.metrics_schema()  # read once from the package's resources, then cached


def threads() -> list[str]:
    """This process's threads, by name (what fork would leave half-copied in the child)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm", encoding="utf-8") as comm:
                names.append(comm.read().strip())
        except OSError:
            continue
    return names


def _single_threaded() -> None:
    assert threading.active_count() == 1, threading.enumerate()
    running = threads()
    assert len(running) == 1, f"the scoring server has threads {running}; see SERVER_ENV"


class Server:
    """The loop: read job lines, fork, report pids and exits; single-threaded, so fork is safe."""

    def __init__(self) -> None:
        self._pending = b""
        self._children: dict[int, dict] = {}  # job -> {"pid", "pidfd", "acked"}
        self._exited: dict[int, int] = {}  # pidfd -> job, for the acked children select watches

    def run(self) -> int:
        while True:
            readable, _, _ = select.select([0, *self._exited], [], [])
            for fd in readable:
                if fd == 0:
                    chunk = os.read(0, 65536)
                    if not chunk:
                        return 0  # the worker let go (or died): no more jobs
                    self._feed(chunk)
                else:
                    self._reap(self._exited.pop(fd))

    def _feed(self, chunk: bytes) -> None:
        self._pending += chunk
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            self._handle(json.loads(line))
        if len(self._pending) > _LINE_MAX:
            raise ValueError("a control line is too long")

    def _handle(self, message: dict) -> None:
        if "request" in message:
            self._fork(int(message["job"]), message)
        elif "ack" in message:
            child = self._children.get(int(message["ack"]))
            if child is not None and not child["acked"]:
                child["acked"] = True
                self._exited[child["pidfd"]] = int(message["ack"])
        elif "kill" in message:
            child = self._children.get(int(message["kill"]))
            if child is not None:  # NOTE: not reaped yet (only this process reaps): the pid is still its own
                signal.pidfd_send_signal(child["pidfd"], signal.SIGKILL)

    def _fork(self, job: int, message: dict) -> None:
        _single_threaded()
        sys.stderr.flush()  # NOTE: else the child would write the server's buffered lines into its own log
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(message, server)  # never returns
        self._children[job] = {"pid": pid, "pidfd": os.pidfd_open(pid), "acked": False}
        _report({"job": job, "pid": pid})

    def _reap(self, job: int) -> None:
        child = self._children.pop(job)
        _, status, usage = os.wait4(child["pid"], 0)
        os.close(child["pidfd"])
        _report({"job": job, "exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss})


def _report(body: dict) -> None:
    line = (json.dumps(body) + "\n").encode()
    while line:  # NOTE: fd 1 unbuffered: nothing of it is left in a buffer a forked child would copy
        line = line[os.write(1, line):]


def _child(message: dict, server: int) -> None:
    """In the forked child: leave the server's pipes and session, log to its own file, score, exit.

    It dies with the server (which dies with its worker): nothing else would stop it at the scoring timeout.
    """
    status = 1
    try:
        _die_with_parent(server)
        os.setsid()  # NOTE: its own session and group: a kill aimed at it cannot reach the server
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(message["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the server's pidfds and whatever else it holds
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        from evaluator.isolated_scoring import child_main

        status = child_main([str(message["request"]), str(message["result"])])
    except BaseException:  # noqa: B036 - the child must never return into the server's loop
        traceback.print_exc()
    finally:
        from evaluator.isolated_scoring import _exit_now

        _exit_now(status)


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # NOTE: it died before the prctl: nothing will send the signal
        os._exit(1)


def main(argv: list[str]) -> int:
    """Serve until stdin ends; then remove this server's log (argv[0]): nothing went wrong to read in it."""
    for name, value in SERVER_ENV.items():
        if os.environ.get(name) != value:
            print(f"the scoring server needs {name}={value} in its environment", file=sys.stderr)
            return 2
    # NOTE: a Ctrl-C reaches the worker's whole process group; the worker then shuts down and closes stdin
    # once its scorings have ended, which a server killed by SIGINT would cut short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preimport()
    import evaluator.isolated_scoring  # noqa: F401 - what the child runs (~20 ms to import in each child)

    _single_threaded()
    status = Server().run()
    if argv:
        Path(argv[0]).unlink(missing_ok=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
