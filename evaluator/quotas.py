"""Submission quotas: per participant (or team) per window (UTC day or rolling 24 h), failed runs counted or not.

On a benchmark with settings.teams, a member's quota is their team's (evaluator.entrants.quota_scope).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import math
from typing import Iterator

import peewee
from peewee import fn

from evaluator import entrants, fields
from evaluator.errors import QuotaExceeded, SubmittedTooSoon, ValidationFailed
from evaluator.settings import Quota, quota_of, settings_of
from evaluator.storage.db import database
from evaluator.storage.models import Benchmark, Phase, Run, RunStatus, Submission, isoformat, utcnow

WINDOWS = ("utc_day", "rolling_24h")
_NOT_COUNTED_WHEN_FAILED = [RunStatus.FAILED.value, RunStatus.TIMED_OUT.value]


def parse_quota(body: dict) -> dict:
    """Validate a benchmark's quota: {limit, window, count_failed}; {} means unlimited."""
    raw = fields.mapping(body, "quota", {})
    if not raw:
        return {}
    return {
        "limit": fields.integer(raw, "limit", minimum=1),
        "window": fields.choice(raw, "window", WINDOWS, "utc_day"),
        "count_failed": _boolean(raw, "count_failed", True),
    }


def _boolean(raw: dict, field: str, default: bool) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise ValidationFailed(f"'quota.{field}' must be true or false", field=f"quota.{field}")
    return value


@dataclasses.dataclass(frozen=True)
class QuotaState:
    limit: int | None
    used: int
    window: str | None
    resets_at: datetime.datetime | None
    team: str | None = None  # the team whose quota this is (settings.teams), else None: the participant's own
    team_name: str | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def to_dict(self) -> dict:
        return {"limit": self.limit, "used": self.used, "remaining": self.remaining, "window": self.window,
                "resets_at": isoformat(self.resets_at), "team": self.team}


def _own_quota(phase: Phase | None) -> bool:
    return phase is not None and phase.quota is not None


def state(benchmark: Benchmark, owner: str, now: datetime.datetime | None = None, *,
          phase: Phase | None = None) -> QuotaState:
    """Count the owner's (or their team's) submissions in the current window (in `phase` alone when it has a
    quota of its own)."""
    quota = Quota.from_json(phase.quota) if phase is not None and _own_quota(phase) else quota_of(benchmark)
    now = now or utcnow()
    if quota.limit is None:
        return QuotaState(None, 0, None, None)
    scope = entrants.quota_scope(benchmark, owner)
    if quota.window == "rolling_24h":
        start = now - datetime.timedelta(hours=24)
    else:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counted = (Submission.select().where((Submission.benchmark == benchmark.id) & scope.condition
                                         & (Submission.created_at >= start) & ~Submission.baseline))
    if phase is not None and _own_quota(phase):
        counted = counted.where(Submission.phase == phase.id)
    if not quota.count_failed:
        failed = Run.select(Run.submission).where(Run.status.in_(_NOT_COUNTED_WHEN_FAILED))
        counted = counted.where(Submission.id.not_in(failed))
    submissions = list(counted.order_by(Submission.created_at))
    if quota.window == "rolling_24h":
        oldest = submissions[0].created_at if submissions else now
        resets_at = oldest + datetime.timedelta(hours=24)
    else:
        resets_at = start + datetime.timedelta(days=1)
    team = scope.team
    return QuotaState(quota.limit, len(submissions), quota.window, resets_at, str(team.id) if team else None,
                      team.name if team else None)


def check_interval(benchmark: Benchmark, owner: str, now: datetime.datetime | None = None) -> None:
    """Raise SubmittedTooSoon (429, Retry-After) within settings.min_submission_interval_s of the last submission."""
    interval = settings_of(benchmark).min_submission_interval_s
    if not interval:
        return
    last = (Submission.select(fn.MAX(Submission.created_at))
            .where((Submission.benchmark == benchmark.id) & (Submission.owner == owner) & ~Submission.baseline)
            .scalar())
    if last is None:
        return
    allowed = last + datetime.timedelta(seconds=interval)
    now = now or utcnow()
    if now < allowed:
        wait = max(1, math.ceil((allowed - now).total_seconds()))
        raise SubmittedTooSoon(f"{benchmark.id} takes one submission every {interval} s; your last was at "
                               f"{isoformat(last)}Z, so retry after {wait} s (at {isoformat(allowed)}Z)",
                               resets_at=isoformat(allowed), retry_after_s=wait)


def check(benchmark: Benchmark, owner: str, *, phase: Phase | None = None) -> QuotaState:
    """Raise QuotaExceeded (429 with resets_at) when no submission is left in the window, or it is too soon."""
    check_interval(benchmark, owner)
    current = state(benchmark, owner, phase=phase)
    if current.limit is not None and current.used >= current.limit:
        who = f"your team {current.team_name} has" if current.team else "you have"
        raise QuotaExceeded(f"{who} used {current.used} of {current.limit} submissions to {benchmark.id} "
                            f"in this window; more from {isoformat(current.resets_at)}",
                            resets_at=isoformat(current.resets_at))
    return current


@contextlib.contextmanager
def reserved(benchmark: Benchmark, owner: str, *, phase: Phase | None = None) -> Iterator[QuotaState]:
    """Check the quota and hold it while the caller records a submission, in one transaction.

    Two requests of one participant (or of one team's members) cannot both see the
    last free slot: on PostgreSQL they queue on a transaction-scoped advisory lock of
    (benchmark, owner or team); SQLite takes its single write lock up front.
    """
    if ((Quota.from_json(phase.quota) if phase is not None and _own_quota(phase) else quota_of(benchmark)).limit is None
            and not settings_of(benchmark).min_submission_interval_s):
        yield QuotaState(None, 0, None, None)
        return
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        with database.atomic():
            holder = entrants.quota_scope(benchmark, owner).holder
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_lock_key(benchmark.id, holder),))
            yield check(benchmark, owner, phase=phase)
    else:
        with database.atomic(**({"lock_type": "IMMEDIATE"} if database.transaction_depth() == 0 else {})):
            yield check(benchmark, owner, phase=phase)


def _lock_key(benchmark_id: str, owner: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, stable across processes."""
    digest = hashlib.sha256(f"quota\x00{benchmark_id}\x00{owner}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
