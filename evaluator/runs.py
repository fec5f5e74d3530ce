"""Run lifecycle: create-or-get per submission, leased claims, compare-and-set transitions, cancel."""

from __future__ import annotations

import datetime
import logging
import uuid

import peewee

from evaluator.errors import Conflict, NotFound, ValidationFailed
from evaluator.storage.models import (
    ACTIVE_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    Run,
    RunStatus,
    Submission,
    isoformat,
    utcnow,
)
from evaluator.tokens import Principal

logger = logging.getLogger(__name__)

LEASE_S = 30
_TERMINAL = [s.value for s in TERMINAL_RUN_STATUSES]
_ACTIVE = [s.value for s in ACTIVE_RUN_STATUSES]
_STAGE_COLUMN = {
    RunStatus.PREPARING.value: "preparing_at",
    RunStatus.RUNNING.value: "running_at",
    RunStatus.SCORING.value: "scoring_at",
}


def create_or_get_run(submission: Submission) -> tuple[Run, bool]:
    """Return the one run of a submission and whether this call created it (safe under concurrency)."""
    new_id = uuid.uuid4()
    (Run.insert(id=new_id, submission=submission, benchmark=submission.benchmark_id, owner=submission.owner,
                status=RunStatus.QUEUED.value)
     .on_conflict_ignore().execute())
    run = Run.get(Run.submission == submission)
    return run, run.id == new_id


def claim(run_id: str, worker: str, *, lease_s: int = LEASE_S) -> bool:
    """Take a queued run, or one whose worker stopped renewing its lease; True if we own it now."""
    now = utcnow()
    takeable = (Run.status == RunStatus.QUEUED.value) | (
        Run.status.in_(_ACTIVE) & (Run.lease_expires_at.is_null() | (Run.lease_expires_at < now)))
    updated = (Run.update(status=RunStatus.PREPARING.value, preparing_at=now, updated_at=now, worker_host=worker,
                          lease_owner=worker, lease_expires_at=now + datetime.timedelta(seconds=lease_s),
                          attempts=Run.attempts + 1)
               .where((Run.id == run_id) & takeable).execute())
    return updated == 1


def renew_lease(run_id: str, worker: str, *, lease_s: int = LEASE_S) -> str | None:
    """Extend our lease; returns the run's status (so the caller sees a cancel), None if gone."""
    now = utcnow()
    (Run.update(lease_expires_at=now + datetime.timedelta(seconds=lease_s))
     .where((Run.id == run_id) & (Run.lease_owner == worker) & Run.status.in_(_ACTIVE)).execute())
    row = Run.select(Run.status).where(Run.id == run_id).first()
    return row.status if row else None


def advance(run_id: str, worker: str, status: str) -> bool:
    """Move an active run we own to the next stage (compare-and-set), stamping the time."""
    now = utcnow()
    changes = {Run.status: status, Run.updated_at: now}
    if status in _STAGE_COLUMN:
        changes[getattr(Run, _STAGE_COLUMN[status])] = now
    return Run.update(changes).where(
        (Run.id == run_id) & (Run.lease_owner == worker) & Run.status.in_(_ACTIVE)).execute() == 1


def release(run_id: str, worker: str) -> None:
    """Give a run back to the queue after an infrastructure error, so a retry can claim it."""
    (Run.update(status=RunStatus.QUEUED.value, lease_owner=None, lease_expires_at=None, updated_at=utcnow())
     .where((Run.id == run_id) & (Run.lease_owner == worker) & Run.status.in_(_ACTIVE)).execute())


def finish(run_id: str, *, status: str, metrics: dict | None = None, private_metrics: dict | None = None,
           failure: dict | None = None,
           provenance: dict | None = None, results_prefix: str | None = None) -> bool:
    """Record a final state unless the run already has one (a cancel stays a cancel)."""
    now = utcnow()
    changes = {Run.status: status, Run.finished_at: now, Run.updated_at: now, Run.lease_owner: None,
               Run.lease_expires_at: None, Run.failure_code: (failure or {}).get("code"),
               Run.failure_message: (failure or {}).get("message")}
    if metrics is not None:
        changes[Run.metrics] = metrics
    if private_metrics is not None:
        changes[Run.private_metrics] = private_metrics
    if provenance is not None:
        changes[Run.provenance] = provenance
    if results_prefix is not None:
        changes[Run.results_prefix] = results_prefix
    return Run.update(changes).where((Run.id == run_id) & Run.status.not_in(_TERMINAL)).execute() == 1


def cancel(run_id: str, principal: Principal) -> Run:
    """Cancel a run that has not finished; the worker sees it and kills the container."""
    run = get_run(run_id, principal)
    if not finish(str(run.id), status=RunStatus.CANCELLED.value,
                  failure={"code": "cancelled", "message": f"cancelled by {principal.owner}"}):
        run = Run.get_by_id(run.id)
        if run.status != RunStatus.CANCELLED.value:
            raise Conflict(f"run {run_id} already ended as {run.status}")
    return Run.get_by_id(run.id)


def visible_runs(principal: Principal) -> peewee.ModelSelect:
    query = Run.select()
    return query if principal.is_admin else query.where(Run.owner == principal.owner)


def get_run(run_id: str, principal: Principal) -> Run:
    """Return a run the principal may see; NotFound otherwise (existence does not leak)."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound(f"run {run_id} not found") from None
    run = visible_runs(principal).where(Run.id == run_uuid).first()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def list_runs(principal: Principal, *, benchmark: str | None = None, status: str | None = None,
              owner: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Run], int]:
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ValidationFailed(f"unknown status {status!r}", field="status")
    query = visible_runs(principal)
    if benchmark:
        query = query.where(Run.benchmark == benchmark)
    if status:
        query = query.where(Run.status == status)
    if owner:
        query = query.where(Run.owner == owner)
    total = query.count()
    rows = list(query.order_by(Run.created_at.desc(), Run.id).limit(limit).offset(offset))
    return rows, total


PLATFORM_FAILURES = frozenset({"internal"})  # the platform's fault: the cause is for operators, not participants


def _participant_provenance(provenance: dict | None) -> dict:
    """Drop what is derived from the hidden data: its hashes identify (small) label files offline."""
    return {key: value for key, value in (provenance or {}).items()
            if not key.endswith("_sha256") or key == "bundle_sha256"}


def _failure(run: Run, manager: bool) -> dict | None:
    if not run.failure_code:
        return None
    if run.failure_code in PLATFORM_FAILURES and not manager:
        return {"code": run.failure_code, "message": f"the evaluation failed on the platform's side, not because of "
                                                     f"your model; the organisers have the cause (quote run {run.id})"}
    return {"code": run.failure_code, "message": run.failure_message}


def serialize(run: Run, *, show_private: bool = False, manager: bool = False) -> dict:
    """Shape a run for a reader; managers (admin, the benchmark's owner) see everything.

    Others never see the dataset's hashes nor the cause of a platform failure (an exception's text),
    and see the private score only when `show_private` (after the benchmark closes).
    """
    return {
        "id": str(run.id),
        "submission": str(run.submission_id),
        "benchmark": run.benchmark_id,
        "owner": run.owner,
        "status": run.status,
        "metrics": run.metrics,
        "private_metrics": run.private_metrics if show_private or manager else None,
        "final": run.final,
        "failure": _failure(run, manager),
        "provenance": run.provenance if manager else _participant_provenance(run.provenance),
        "attempts": run.attempts,
        "results_prefix": run.results_prefix,
        "timestamps": {name: isoformat(getattr(run, f"{name}_at")) for name in
                       ("created", "queued", "preparing", "running", "scoring", "finished", "updated")},
    }
