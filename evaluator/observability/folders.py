"""Where this host's processes keep their Prometheus samples: one folder per role under Config.metrics_folder.

prometheus_client's multiprocess mode (one mmap file per process and metric
kind, summed at scrape time) is chosen by PROMETHEUS_MULTIPROC_DIR when the
library is first imported, so each long-running entry point calls use_folder()
before anything records a sample: the gunicorn master (role `api`, wiped on
start; its forked workers inherit it), each dramatiq worker process (`worker`),
`evaluator dev` (`dev`) and `evaluator listen-sqs` (`sqs`). The API's /metrics
merges every role's folder of its host; a worker host's exposition server its
`worker` folder. This module imports prometheus_client only when asked to.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path

from evaluator.config import Config

logger = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
DRAMATIQ_ENV = "dramatiq_prom_db"  # Dramatiq's Prometheus middleware reads its folder from this
ROLES = ("api", "worker", "dev", "sqs")
_PID = re.compile(r"_(\d+)\.db$")


def folder(config: Config, role: str) -> Path:
    """Return the sample folder of one role of this deployment on this host."""
    if role not in ROLES:
        raise ValueError(f"unknown metrics role {role!r}")
    return Path(config.metrics_folder) / role


def use_folder(config: Config, role: str, *, fresh: bool = False) -> Path:
    """Make this process, and the children it forks, write samples under the role's folder.

    `fresh` empties it first (the gunicorn master on start: its counters start
    again, as after any restart); otherwise only the files of processes that
    no longer exist are removed, so worker groups sharing the folder keep theirs.
    """
    path = folder(config, role)
    if fresh:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    if not fresh:
        forget_dead(path)
    os.environ[ENV] = os.environ[DRAMATIQ_ENV] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # NOTE: imported before the folder was chosen: metrics made from now on still write files
        values.ValueClass = values.MultiProcessValue()  # type: ignore[attr-defined]
    return path


def active() -> Path | None:
    """Return the folder this process writes samples to, or None (tests in one process: in memory)."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


def host_folders(config: Config) -> list[Path]:
    """Return the folders of every role of this deployment on this host that exist."""
    return [path for path in (folder(config, role) for role in ROLES) if path.is_dir()]


def pid_of(path: Path) -> int | None:
    """Return the process id a sample file belongs to (`counter_123.db`, `gauge_livesum_123.db`)."""
    found = _PID.search(path.name)
    return int(found.group(1)) if found else None


def alive(pid: int) -> bool:
    """Say whether a process of this host (this PID namespace) exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead(path: Path) -> int:
    """Remove the sample files of processes that no longer exist (a previous run's); return how many."""
    removed = 0
    for item in path.glob("*.db"):
        pid = pid_of(item)
        if pid is not None and not alive(pid):
            item.unlink(missing_ok=True)
            removed += 1
    return removed


def mark_dead(pid: int, path: Path | None = None) -> None:
    """Drop a stopped process's live gauges (gunicorn's child_exit, a worker's shutdown); its counters stay."""
    path = path or active()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))
