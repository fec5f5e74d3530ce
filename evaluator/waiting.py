"""Queue position and ETA of a run that waits: from the queue and the stage durations of recent runs.

Bounded: the position counts at most POSITION_CAP queued runs ahead; the ETA
reads the RECENT latest succeeded runs of the benchmark through the index
(benchmark, status, finished_at) and takes each stage's median. No history,
no ETA (null): a guess from nothing would mislead.
"""

from __future__ import annotations

import datetime
import statistics

from evaluator.storage.models import ACTIVE_RUN_STATUSES, Run, RunStatus, utcnow

RECENT = 20
POSITION_CAP = 10_000
STAGES = ("preparing", "running", "scoring")  # each lasts from its own stamp to the next one's
_ACTIVE = [status.value for status in ACTIVE_RUN_STATUSES]


def queue_position(run: Run) -> int | None:
    """1 for the next run a worker takes; None once it left the queue. Every benchmark shares the workers."""
    if run.status != RunStatus.QUEUED.value:
        return None
    earlier = (Run.queued_at < run.queued_at) | ((Run.queued_at == run.queued_at) & (Run.id < run.id))
    ahead = (Run.select(Run.id).where((Run.status == RunStatus.QUEUED.value) & earlier)
             .limit(POSITION_CAP).count())
    return ahead + 1


def stage_medians(benchmark_id: str) -> dict[str, float] | None:
    """Median seconds of each stage over the benchmark's RECENT latest succeeded runs; None without any."""
    rows = list(Run.select(Run.preparing_at, Run.running_at, Run.scoring_at, Run.finished_at)
                .where((Run.benchmark == benchmark_id) & (Run.status == RunStatus.SUCCEEDED.value)
                       & Run.finished_at.is_null(False))
                .order_by(Run.finished_at.desc()).limit(RECENT))
    spans: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for row in rows:
        stamps = [row.preparing_at, row.running_at, row.scoring_at, row.finished_at]
        for stage, start, end in zip(STAGES, stamps, stamps[1:]):
            if start is not None and end is not None and end >= start:
                spans[stage].append((end - start).total_seconds())
    if not any(spans.values()):
        return None
    return {stage: statistics.median(values) if values else 0.0 for stage, values in spans.items()}


def eta_s(run: Run, position: int | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds until the run ends: the rest of its stages, plus (queued) the runs ahead shared by the active ones."""
    if run.status not in (RunStatus.QUEUED.value, *_ACTIVE):
        return None
    medians = stage_medians(run.benchmark_id)
    if medians is None:
        return None
    total = sum(medians.values())
    if run.status == RunStatus.QUEUED.value:
        busy = max(1, Run.select(Run.id).where(Run.status.in_(_ACTIVE)).limit(POSITION_CAP).count())
        return round(total * (1 + ((position or 1) - 1) / busy), 1)
    now = now or utcnow()
    index = STAGES.index(run.status)
    started = getattr(run, f"{run.status}_at") or now
    left_here = max(0.0, medians[run.status] - (now - started).total_seconds())
    return round(left_here + sum(medians[stage] for stage in STAGES[index + 1:]), 1)


def estimate(run: Run) -> dict:
    """The run record's `queue_position` and `eta_s` (both None once it ended)."""
    position = queue_position(run)
    return {"queue_position": position, "eta_s": eta_s(run, position)}
