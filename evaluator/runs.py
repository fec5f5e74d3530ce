"""Run lifecycle: create-or-get per submission, leased claims, compare-and-set transitions, cancel."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid

import peewee

from evaluator import competition, disclosure, workers
from evaluator.errors import Conflict, Forbidden, NotFound, ValidationFailed, WorkerCrashed, clean_message
from evaluator.observability import record
from evaluator.storage import board_values
from evaluator.storage.db import database
from evaluator.storage.models import (
    ACTIVE_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    Benchmark,
    Phase,
    Run,
    RunStatus,
    Submission,
    isoformat,
    utcnow,
)
from evaluator.tokens import Principal

logger = logging.getLogger(__name__)

LEASE_S = 30  # the default; workers pass Config.lease_s
WORKER_CRASHED = WorkerCrashed.code  # the failure code of the poison-pill guard
RENEWED, ENDED, LOST = "renewed", "ended", "lost"
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
                status=RunStatus.QUEUED.value, phase=submission.phase_id)
     .on_conflict_ignore().execute())
    run = Run.get((Run.submission == submission) & Run.migrated_from.is_null())  # not a later phase's re-run
    return run, run.id == new_id


@dataclasses.dataclass(frozen=True)
class Claim:
    """What a worker got by claiming a run."""

    attempt: int  # the run's attempt number now
    crashes: int  # times a worker died holding this run, this takeover included
    took_over: str | None  # the dead worker whose lease we took, None for a fresh claim
    poisoned: bool = False  # the claim ended the run failed/worker_crashed instead of starting it


class LeaseHeld(Exception):
    """Raised when a live-looking worker holds the run: ask again once its lease may have run out."""

    def __init__(self, run_id: str, owner: str | None, retry_after_s: float) -> None:
        super().__init__(f"run {run_id} is leased by {owner} for another {retry_after_s:.1f}s")
        self.run_id, self.owner, self.retry_after_s = run_id, owner, retry_after_s


def claim(run_id: str, worker: str, *, lease_s: int = LEASE_S) -> bool:
    """Take a queued run, one we hold, or one whose worker died; True if we own it now."""
    try:
        return acquire(run_id, worker, lease_s=lease_s) is not None
    except LeaseHeld:
        return False


def acquire(run_id: str, worker: str, *, lease_s: int = LEASE_S, max_crashes: int = 0) -> Claim | None:
    """Claim a run for a new attempt; None if it ended (or is gone).

    Takeable: a queued run; an active run whose lease this worker holds (its
    release failed, e.g. on a database outage); an active run whose lease ran
    out or whose owner is a dead process of this host. A takeover counts one
    crash of the run; at `max_crashes` (0: no limit) the run ends
    failed/worker_crashed instead of being tried again.

    Raises:
        LeaseHeld: a live-looking worker holds it; `retry_after_s` is its lease's remaining time.
    """
    for _ in range(5):  # the row changed between our read and our compare-and-set: look again
        now = utcnow()
        row = (Run.select(Run.status, Run.lease_owner, Run.lease_expires_at, Run.attempts, Run.crashes,
                          Run.provenance).where(Run.id == run_id).first())
        if row is None or row.status in _TERMINAL:
            return None
        active = row.status in _ACTIVE
        crash = False
        if active and row.lease_owner != worker:
            expired = row.lease_expires_at is None or row.lease_expires_at <= now
            if not expired and not workers.is_gone(row.lease_owner):
                raise LeaseHeld(run_id, row.lease_owner, (row.lease_expires_at - now).total_seconds())
            crash = True
        unchanged = ((Run.id == run_id) & (Run.status == row.status) & (Run.attempts == row.attempts)
                     & (Run.lease_owner.is_null() if row.lease_owner is None else Run.lease_owner == row.lease_owner))
        history = _close_attempt(row.provenance, now, "worker_lost" if crash else "interrupted")
        crashes = row.crashes + int(crash)
        if crash:
            logger.warning("Run %s: its worker %s is gone (lease %s, run was %s); taking over as %s.", run_id,
                           row.lease_owner, "expired" if row.lease_expires_at and row.lease_expires_at <= now
                           else "still valid but its process is dead", row.status, worker)
        if crash and max_crashes and crashes >= max_crashes:
            message = (f"the evaluation stopped its worker {crashes} times (the worker process died while the run "
                       f"was {row.status}), so it is not tried again; a bundle or predictions file that makes the "
                       f"trusted side run out of memory does this; an operator has the worker log")
            with database.atomic():
                updated = Run.update({
                    Run.status: RunStatus.FAILED.value, Run.finished_at: now, Run.updated_at: now,
                    Run.lease_owner: None, Run.lease_expires_at: None, Run.crashes: crashes,
                    Run.failure_code: WORKER_CRASHED, Run.failure_message: message,
                    Run.provenance: {**(row.provenance or {}), "attempts": history},
                }).where(unchanged).execute()
                if updated:
                    _ended(run_id)
            if updated:
                record.run_ended(RunStatus.FAILED.value, WORKER_CRASHED, row.provenance)
                logger.warning("Run %s ended failed/%s: %s", run_id, WORKER_CRASHED, message)
                return Claim(attempt=row.attempts, crashes=crashes, took_over=row.lease_owner, poisoned=True)
            continue
        attempt = row.attempts + 1
        history.append({"attempt": attempt, "worker": worker, "preparing_at": isoformat(now)})
        updated = Run.update({
            Run.status: RunStatus.PREPARING.value, Run.preparing_at: now, Run.running_at: None, Run.scoring_at: None,
            Run.updated_at: now, Run.worker_host: worker, Run.lease_owner: worker,
            Run.lease_expires_at: now + datetime.timedelta(seconds=lease_s), Run.attempts: attempt,
            Run.crashes: crashes, Run.provenance: {**(row.provenance or {}), "attempts": history},
        }).where(unchanged).execute()
        if updated:
            return Claim(attempt=attempt, crashes=crashes, took_over=row.lease_owner if crash else None)
    raise LeaseHeld(run_id, None, 1.0)  # contended by other claimers: let the message come back shortly


def _attempts(provenance: dict | None) -> list[dict]:
    """Return a copy of a run's attempts: each with its worker, stage timestamps, end and outcome."""
    return [dict(a) for a in (provenance or {}).get("attempts") or [] if isinstance(a, dict)]


def _close_attempt(provenance: dict | None, now: datetime.datetime, outcome: str) -> list[dict]:
    """Return the attempts list with its open (last) attempt ended as `outcome`."""
    history = _attempts(provenance)
    if history and "ended_at" not in history[-1]:
        history[-1].update(ended_at=isoformat(now), outcome=outcome)
    return history


def renew_lease(run_id: str, worker: str, attempt: int, *, lease_s: float = LEASE_S) -> str:
    """Extend our lease on this attempt; returns RENEWED, ENDED (cancelled, say) or LOST (not ours any more)."""
    now = utcnow()
    updated = (Run.update(lease_expires_at=now + datetime.timedelta(seconds=lease_s))
               .where((Run.id == run_id) & (Run.lease_owner == worker) & (Run.attempts == attempt)
                      & Run.status.in_(_ACTIVE)).execute())
    if updated:
        return RENEWED
    row = Run.select(Run.status, Run.attempts).where(Run.id == run_id).first()
    if row is not None and row.attempts == attempt and row.status in _TERMINAL:
        return ENDED
    return LOST


def advance(run_id: str, worker: str, status: str) -> bool:
    """Move an active run we own to the next stage (compare-and-set), stamping the run and its attempt."""
    now = utcnow()
    changes = {Run.status: status, Run.updated_at: now}
    if status in _STAGE_COLUMN:
        changes[getattr(Run, _STAGE_COLUMN[status])] = now
    ours = (Run.id == run_id) & (Run.lease_owner == worker) & Run.status.in_(_ACTIVE)
    row = Run.select(Run.provenance).where(ours).first()
    if row is None:
        return False
    history = _attempts(row.provenance)
    if history and "ended_at" not in history[-1]:
        history[-1][f"{status}_at"] = isoformat(now)
        changes[Run.provenance] = {**row.provenance, "attempts": history}
    return Run.update(changes).where(ours).execute() == 1


def release(run_id: str, worker: str) -> bool:
    """Give a run back to the queue after an infrastructure error, so a retry can claim it."""
    now = utcnow()
    ours = (Run.id == run_id) & (Run.lease_owner == worker) & Run.status.in_(_ACTIVE)
    row = Run.select(Run.provenance).where(ours).first()
    if row is None:
        return False
    return (Run.update(status=RunStatus.QUEUED.value, lease_owner=None, lease_expires_at=None, updated_at=now,
                       provenance={**row.provenance, "attempts": _close_attempt(row.provenance, now, "released")})
            .where(ours).execute()) == 1


def _clean(message: str | None) -> str | None:
    """Failure messages quote model output: capped and control characters escaped before they are stored."""
    return None if message is None else clean_message(message)


def finish(run_id: str, *, status: str, metrics: dict | None = None, private_metrics: dict | None = None,
           failure: dict | None = None,
           provenance: dict | None = None, results_prefix: str | None = None, owner: str | None = None) -> bool:
    """Record a final state unless the run already has one (a cancel stays a cancel).

    With `owner`, only while that worker holds the lease: a worker that lost its
    run to a takeover records nothing. The attempts in the provenance are kept.
    """
    now = utcnow()
    changes = {Run.status: status, Run.finished_at: now, Run.updated_at: now, Run.lease_owner: None,
               Run.lease_expires_at: None, Run.failure_code: (failure or {}).get("code"),
               Run.failure_message: _clean((failure or {}).get("message"))}
    if metrics is not None:
        changes[Run.metrics] = metrics
    if private_metrics is not None:
        changes[Run.private_metrics] = private_metrics
    if results_prefix is not None:
        changes[Run.results_prefix] = results_prefix
    where = (Run.id == run_id) & Run.status.not_in(_TERMINAL)
    if owner is not None:
        where &= Run.lease_owner == owner
    with database.atomic():  # NOTE: the end and its webhook deliveries commit together (exactly once)
        row = Run.select(Run.provenance, Run.metrics, Run.private_metrics).where(where).first()
        if row is None:
            return False
        if metrics is not None or private_metrics is not None:  # the board's compact copy, in step
            changes[Run.board_values] = board_values.of(row.metrics if metrics is None else metrics,
                                                        row.private_metrics if private_metrics is None
                                                        else private_metrics)
        history = _close_attempt(row.provenance, now, status)
        if provenance is not None or history:
            changes[Run.provenance] = {**(row.provenance if provenance is None else provenance), "attempts": history}
        if Run.update(changes).where(where).execute() != 1:
            return False
        _ended(run_id)
    record.run_ended(status, (failure or {}).get("code"), changes.get(Run.provenance, row.provenance))
    return True


def _ended(run_id: str) -> None:
    """What a terminal state sets off, in its transaction: the run.finished webhooks."""
    from evaluator import webhooks  # NOTE: lazily: webhooks shapes runs with serialize() from here

    webhooks.enqueue_run_finished(run_id)


def set_baseline(run: Run, principal: Principal, baseline: bool | None) -> Run:
    """Flag (or unflag) a run's submission as a baseline: the benchmark's managers only.

    A baseline is evaluated like any run; the leaderboard shows it as a reference entry, unranked.
    """
    if baseline is None:
        return run
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    if not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark.id} may flag baselines")
    with database.atomic():
        Submission.update(baseline=baseline).where(Submission.id == run.submission_id).execute()
        Run.update(updated_at=utcnow()).where(Run.id == run.id).execute()  # the board cache's stamp
    return Run.get_by_id(run.id)


def cancel(run_id: str, principal: Principal) -> Run:
    """Cancel a run that has not finished; the worker sees it and kills the container."""
    run = get_run(run_id, principal)
    if not finish(str(run.id), status=RunStatus.CANCELLED.value,
                  failure={"code": "cancelled", "message": f"cancelled by {principal.owner}"}):
        run = Run.get_by_id(run.id)
        if run.status != RunStatus.CANCELLED.value:
            raise Conflict(f"run {run_id} already ended as {run.status}")
    return Run.get_by_id(run.id)


def visible_runs(principal: Principal) -> peewee.ModelSelect[Run]:
    query = Run.select(Run, Submission).join(Submission)  # NOTE: serialize reads the submission's kind and flag
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


def _phase_slug(run: Run) -> str | None:
    if run.phase_id is None:
        return None
    return Phase.select(Phase.slug).where(Phase.id == run.phase_id).scalar()


def serialize(run: Run, *, show_private: bool = False, manager: bool = False, hide_public: bool = False) -> dict:
    """Shape a run for a reader; managers (admin, the benchmark's owner) see everything.

    Others never see the dataset's hashes nor the cause of a platform failure (an exception's text),
    see metric values rounded (evaluator.disclosure) and the private score only when `show_private`
    (after the benchmark closes). `hide_public` withholds the public score too (the Ladder: the
    board's score is a participant's only public feedback; competition.ladder_hides).
    """
    return {
        "id": str(run.id),
        "submission": str(run.submission_id),
        "benchmark": run.benchmark_id,
        "owner": run.owner,
        "status": run.status,
        "metrics": run.metrics if manager else None if hide_public else disclosure.coarsen(run.metrics),
        "private_metrics": (run.private_metrics if manager
                            else disclosure.coarsen(run.private_metrics) if show_private else None),
        "final": run.final,
        "phase": _phase_slug(run),
        "migrated_from": str(run.migrated_from_id) if run.migrated_from_id else None,
        "baseline": run.submission.baseline,
        "kind": run.submission.kind,
        "team": str(run.submission.team_id) if run.submission.team_id else None,
        "failure": _failure(run, manager),
        "provenance": run.provenance if manager else _participant_provenance(run.provenance),
        "attempts": run.attempts,
        "results_prefix": run.results_prefix,
        "timestamps": {name: isoformat(getattr(run, f"{name}_at")) for name in
                       ("created", "queued", "preparing", "running", "scoring", "finished", "updated")},
        "queue_position": None,  # GET /v1/runs/{id} fills these in (evaluator.waiting): a listing stays cheap
        "eta_s": None,
    }
