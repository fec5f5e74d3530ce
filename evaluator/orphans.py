"""Orphans of dead attempts: sandbox containers and run folders that nobody else will clean up.

A worker killed mid-run never reaches its `finally`: its container keeps
running with no time limit (the dead worker enforced it) and its run folder,
bundle included, stays on disk. Every worker sweeps its own Docker host and
work folder, touching only its deployment's containers, and removes those of
runs that ended or were deleted, or whose attempt is over (another worker holds
the run, it went back to the queue, or its lease ran out).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evaluator import workers
from evaluator.config import Config
from evaluator.run_folders import run_id_of
from evaluator.storage.models import ACTIVE_RUN_STATUSES, Run, utcnow

if TYPE_CHECKING:
    from evaluator.sandbox.runner import SandboxContainer

logger = logging.getLogger(__name__)

_ACTIVE = {s.value for s in ACTIVE_RUN_STATUSES}


class SweptSandbox(Protocol):
    def containers(self) -> list[SandboxContainer]: ...

    def remove_container(self, container_id: str) -> None: ...


@dataclasses.dataclass
class Swept:
    containers: list[str] = dataclasses.field(default_factory=list)  # run ids whose container was removed
    folders: list[str] = dataclasses.field(default_factory=list)


def _why_orphaned(run: Run | None, worker: str, now: datetime.datetime, grace: datetime.timedelta,
                  patience: datetime.timedelta) -> str | None:
    """Return why a container started by `worker` for this run is an orphan, None if its attempt goes on.

    A live worker of this host stops its own container once it sees the run end
    or move (within a renewal interval); it gets `patience` before the sweep does.
    """
    if run is None:
        return "the run no longer exists"
    if workers.is_live_here(worker) and run.updated_at is not None and run.updated_at > now - patience:
        return None
    if run.status not in _ACTIVE:
        return f"the run is {run.status}"
    if worker and run.lease_owner != worker:
        return f"its attempt is over (the run is now held by {run.lease_owner or 'nobody'})"
    if run.lease_expires_at is None or run.lease_expires_at < now - grace:
        return f"the lease of {run.lease_owner} ran out"
    if workers.is_gone(run.lease_owner):
        return f"its worker {run.lease_owner} is gone"
    return None


def sweep(sandbox: SweptSandbox, config: Config, *, run_folders: Path | None = None) -> Swept:
    """Remove orphaned containers of this deployment and orphaned run folders of this host."""
    now, grace = utcnow(), datetime.timedelta(seconds=config.lease_renew_s)
    patience = datetime.timedelta(seconds=max(config.lease_renew_s * 3, 5.0))
    swept = Swept()
    containers = sandbox.containers()
    runs = _runs({c.run_id for c in containers})
    for container in containers:
        why = _why_orphaned(runs.get(container.run_id), container.worker, now, grace, patience)
        if why is None:
            continue
        sandbox.remove_container(container.id)
        swept.containers.append(container.run_id)
        logger.warning("Removed the %s sandbox container of run %s started by %s: %s.", container.status,
                       container.run_id, container.worker or "an unknown worker", why)
    folders = run_folders or Path(config.work_dir) / "runs"
    for folder in sorted(folders.iterdir()) if folders.is_dir() else []:
        run_id = run_id_of(folder) or folder.name  # names are opaque: read the label
        if _folder_orphaned(run_id):
            shutil.rmtree(folder, ignore_errors=True)
            swept.folders.append(run_id)
            logger.warning("Removed the run folder %s of run %s: no live worker of this host holds it.",
                           folder.name, run_id)
    return swept


def _folder_orphaned(name: str) -> bool:
    """Say whether no live process of this host may still use a run's folder (read just before removing)."""
    try:
        run_id = uuid.UUID(name)
    except ValueError:
        return False  # not ours to judge
    run = Run.select(Run.worker_host).where(Run.id == run_id).first()
    return run is None or not workers.is_live_here(run.worker_host)


def _runs(run_ids: set[str]) -> dict[str, Run]:
    ids = []
    for run_id in run_ids:
        try:
            ids.append(uuid.UUID(run_id))
        except ValueError:
            continue
    if not ids:
        return {}
    query = Run.select(Run.id, Run.status, Run.lease_owner, Run.lease_expires_at, Run.updated_at).where(
        Run.id.in_(ids))
    return {str(run.id): run for run in query}
