"""Lease owners: a dead process of this host is seen at once; anything unknowable is presumed alive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from evaluator import workers

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")


def owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{workers._start_ticks(pid)}"


def test_a_dead_process_of_this_host_is_gone_and_a_live_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = owner_of(child.pid)
    assert not workers.is_gone(owner) and workers.is_live_here(owner)
    child.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead but not reaped: a zombie is gone too
    assert workers.is_gone(owner)
    child.wait()
    assert workers.is_gone(owner) and not workers.is_live_here(owner)


def test_a_new_process_with_the_dead_ones_pid_is_a_different_owner():
    # A restarted container's worker may get the same pid; its start time differs.
    me = workers.worker_name()
    host, pid, start = me.rsplit(":", 2)
    assert not workers.is_gone(me)
    assert workers.is_gone(f"{host}:{pid}:{int(start) - 1}")


def test_owners_that_cannot_be_checked_are_presumed_alive():
    for owner in (None, "", "other-host:1:1", f"{socket.gethostname()}:{os.getpid()}", "garbage",
                  f"{socket.gethostname()}:notapid:1"):
        assert not workers.is_gone(owner), owner
