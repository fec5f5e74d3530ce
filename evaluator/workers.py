"""Worker identity: who holds a run's lease, and whether that process is gone.

A lease owner is named `host:pid:start`, where `start` is the process's start
time in clock ticks since boot (from /proc), so a restarted container whose new
worker got the same pid is still a different owner. On the owner's own host a
dead process is seen at once, and its runs are taken over without waiting for
the lease to run out; anywhere else, only the lease's expiry says it died.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

_PROC = Path("/proc")
_names: dict[int, str] = {}


def _start_ticks(pid: int) -> str | None:
    """Return a process's start time (field 22 of /proc/<pid>/stat), or None if it is gone or a zombie."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name in parentheses may hold spaces
    if not fields or fields[0] in ("Z", "X"):  # a zombie is dead: its parent just has not reaped it
        return None
    return fields[19] if len(fields) > 19 else None


def worker_name() -> str:
    """Return this process's lease-owner name (stable for the process, distinct across restarts)."""
    pid = os.getpid()
    if pid not in _names:  # after a fork the child computes its own
        start = _start_ticks(pid) if _PROC.is_dir() else None
        _names[pid] = f"{socket.gethostname()}:{pid}:{start or 'n' + secrets.token_hex(4)}"
    return _names[pid]


def is_live_here(owner: str | None) -> bool:
    """Say whether a lease owner names a process of this host that may still exist."""
    return owner is not None and bool(owner) and owner.rsplit(":", 2)[0] == socket.gethostname() and not is_gone(owner)


def is_gone(owner: str | None) -> bool:
    """Say whether a lease owner is a process of this host that no longer exists.

    False whenever it cannot be known (another host, an old-style name): then
    only the lease's expiry tells.
    """
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid, start = int(parts[1]), parts[2]
    if start.startswith("n"):  # no /proc when it was named: only "no such process" is conclusive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return owner != worker_name() and pid == os.getpid()
    return _start_ticks(pid) != start
