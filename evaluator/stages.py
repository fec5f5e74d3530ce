"""Per-stage timings of a run: when each step of the last attempt ended, and how long each took.

Stamped in the process that did the step (wall clock, UTC) and stored once in the
run's provenance under `stages` (no extra database write per stage):

    queued_at -> picked_up_at -> staged_at -> sandbox_ready_at -> predicted_at -> scored_at -> published_at

`queued` is the wait for a worker, `staging` the bundle and dataset download and the
extraction, `sandbox_ready` the container start (or a warm one's hand-over),
`predicting` the model's run, `scoring` the isolated scorer, `publishing` the writes to
the object store. stage_durations() turns a finished run's stamps into seconds: the
hook for metrics (histograms) and benches.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Iterator

from evaluator.storage.models import isoformat, utcnow

# (duration name, stamp that ends it); each starts at the previous stamp
STEPS = (("queued", "picked_up_at"), ("staging", "staged_at"), ("sandbox_ready", "sandbox_ready_at"),
         ("predicting", "predicted_at"), ("scoring", "scored_at"), ("publishing", "published_at"))
FIRST = "queued_at"


def stamp(stages: dict, name: str, at: datetime.datetime | None = None) -> None:
    """Record that the step ending at `name` (e.g. "staged_at") ended now (or at `at`, naive UTC)."""
    stages[name] = isoformat(at or utcnow())


@dataclasses.dataclass(frozen=True)
class StageDurations:
    """Seconds of each step of a run's last attempt; None for a step it never finished."""

    queued: float | None = None
    staging: float | None = None
    sandbox_ready: float | None = None
    predicting: float | None = None
    scoring: float | None = None
    publishing: float | None = None
    total: float | None = None  # queued_at -> the last stamp

    def items(self) -> Iterator[tuple[str, float]]:
        """Yield (step, seconds) for the steps that were measured, in pipeline order (total last)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                yield field.name, value

    def to_dict(self) -> dict[str, float]:
        return dict(self.items())


def _parse(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.rstrip("Z"))
    except ValueError:
        return None


def stage_durations(provenance: dict | None) -> StageDurations:
    """Return the stage durations of a run from its provenance (`Run.provenance`); empty when never stamped.

    A step counts only when both its start and its end were stamped, so a run that
    failed in the sandbox has queued, staging and sandbox_ready but no scoring.
    """
    stages = (provenance or {}).get("stages")
    if not isinstance(stages, dict):
        return StageDurations()
    previous, first, last = _parse(stages.get(FIRST)), _parse(stages.get(FIRST)), None
    values: dict[str, float] = {}
    for name, end in STEPS:
        ended = _parse(stages.get(end))
        if previous is not None and ended is not None:
            values[name] = round(max((ended - previous).total_seconds(), 0.0), 3)
        if ended is not None:
            last = ended
        previous = ended
    if first is not None and last is not None:
        values["total"] = round(max((last - first).total_seconds(), 0.0), 3)
    return StageDurations(**values)
