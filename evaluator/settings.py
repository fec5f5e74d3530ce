"""A benchmark's settings as frozen values, parsed once where the row is loaded.

The Benchmark row keeps `limits`, `quota` and `settings` as JSON (what the API validated,
see benchmarks.parse_limits, quotas.parse_quota, competition.parse_settings). Code that acts
on them reads these values instead of the dicts, so a default lives in one place.
`Scoring` is what scoring needs of a benchmark and its dataset, passed as one value
from the worker (or the CLI) to the isolated scorer.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Protocol


class _BenchmarkRow(Protocol):
    """A Benchmark row, or a phase's view of one (phases.Effective): read-only members."""

    @property
    def id(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def metrics(self) -> Any: ...
    @property
    def primary_metric(self) -> str: ...
    @property
    def limits(self) -> Any: ...
    @property
    def quota(self) -> Any: ...
    @property
    def settings(self) -> Any: ...


class _DatasetRow(Protocol):
    row_id_column: str
    target_column: str


@dataclasses.dataclass(frozen=True)
class BenchmarkLimits:
    """What a benchmark sets of its runs' limits; None keeps the platform's default (Config)."""

    timeout_s: int | None = None
    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    max_bundle_bytes: int | None = None
    runtime: str | None = None
    gpus: int | None = None

    @classmethod
    def from_json(cls, raw: dict | None) -> BenchmarkLimits:
        raw = raw or {}

        def get(name: str, kind: type) -> Any:
            value = raw.get(name)
            return None if value is None or value == "" else kind(value)

        return cls(timeout_s=get("timeout_s", int), memory=get("memory", str), cpus=get("cpus", float),
                   pids=get("pids", int), max_bundle_bytes=get("max_bundle_bytes", int), runtime=get("runtime", str),
                   gpus=get("gpus", int))

    def bundle_bytes(self, default: int) -> int:
        """The largest bundle this benchmark accepts (`default`: config.max_bundle_bytes)."""
        return self.max_bundle_bytes or default


@dataclasses.dataclass(frozen=True)
class Quota:
    """Submissions per participant per window; `limit` None means unlimited."""

    limit: int | None = None
    window: str = "utc_day"
    count_failed: bool = True

    @classmethod
    def from_json(cls, raw: dict | None) -> Quota:
        raw = raw or {}
        limit = raw.get("limit")
        return cls(limit=int(limit) if limit else None, window=str(raw.get("window") or "utc_day"),
                   count_failed=bool(raw.get("count_failed", True)))


SUBMISSION_KINDS = ("bundle", "predictions")  # a model the sandbox runs; a file of predictions


@dataclasses.dataclass(frozen=True)
class CompetitionSettings:
    """Schedule, tie-breaks, final selections, log policy, label split, submission kinds and freeze.

    `freeze_at` (or `freeze_before_close_s` before `closes_at`) starts the frozen window: until the
    close, participants read the leaderboard as it stood at that instant; managers read it live.
    `teams` makes each team one entrant: quotas and the leaderboard count per team (evaluator.teams).
    """

    tie_breakers: tuple[str, ...] = ()
    opens_at: str | None = None  # ISO 8601, UTC, naive
    closes_at: str | None = None
    log_policy: str = "own"
    final_selections: int = 0
    private_fraction: float | None = None
    submission_kinds: tuple[str, ...] = ("bundle",)
    freeze_at: str | None = None  # ISO 8601, UTC, naive
    freeze_before_close_s: int | None = None
    # "Is #1 really better than #2?": adjacent board entries whose paired test has p >= this share a rank (0: off)
    significance_level: float = 0.0
    ladder: bool = False  # the public board shows Ladder scores (evaluator.ladder)
    min_submission_interval_s: int | None = None  # a participant's submissions at least this far apart
    teams: bool = False
    max_team_size: int | None = None  # accepted members of one team; None: no limit

    @classmethod
    def from_json(cls, raw: dict | None) -> CompetitionSettings:
        raw = raw or {}
        fraction = raw.get("private_fraction")
        before = raw.get("freeze_before_close_s")
        team_size = raw.get("max_team_size")
        return cls(tie_breakers=tuple(raw.get("tie_breakers") or ()), opens_at=raw.get("opens_at") or None,
                   closes_at=raw.get("closes_at") or None, log_policy=str(raw.get("log_policy") or "own"),
                   final_selections=int(raw.get("final_selections") or 0),
                   private_fraction=float(fraction) if fraction else None,
                   submission_kinds=tuple(raw.get("submission_kinds") or ("bundle",)),
                   freeze_at=raw.get("freeze_at") or None,
                   freeze_before_close_s=int(before) if before else None,
                   significance_level=float(raw.get("significance_level") or 0.0),
                   ladder=bool(raw.get("ladder", False)),
                   min_submission_interval_s=int(raw["min_submission_interval_s"])
                   if raw.get("min_submission_interval_s") else None,
                   teams=bool(raw.get("teams", False)), max_team_size=int(team_size) if team_size else None)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tie_breakers": list(self.tie_breakers),
                "submission_kinds": list(self.submission_kinds)}

    def accepts(self, kind: str) -> bool:
        return kind in self.submission_kinds

    def freezes_at(self) -> datetime.datetime | None:
        """The instant the public leaderboard freezes, or None when it never does."""
        if self.freeze_at:
            return datetime.datetime.fromisoformat(self.freeze_at)
        if self.freeze_before_close_s and self.closes_at:
            return datetime.datetime.fromisoformat(self.closes_at) - datetime.timedelta(
                seconds=self.freeze_before_close_s)
        return None


def limits_of(benchmark: _BenchmarkRow) -> BenchmarkLimits:
    return BenchmarkLimits.from_json(benchmark.limits)


def quota_of(benchmark: _BenchmarkRow) -> Quota:
    return Quota.from_json(benchmark.quota)


def settings_of(benchmark: _BenchmarkRow) -> CompetitionSettings:
    return CompetitionSettings.from_json(benchmark.settings)


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How a run's predictions are scored: task, the label file's columns, metrics, the private split.

    `private_split` is (salt, fraction) of the hidden part of the labels, or None when they are not split.
    """

    task: str
    row_id_column: str = "row_id"
    target_column: str = "target"
    metrics: tuple[str, ...] | None = None  # None: every metric of the task
    primary_metric: str | None = None
    private_split: tuple[str, float] | None = None

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.private_split is not None:
            salt, fraction = self.private_split
            object.__setattr__(self, "private_split", (str(salt), float(fraction)))

    @classmethod
    def of(cls, benchmark: _BenchmarkRow, dataset: _DatasetRow) -> Scoring:
        fraction = settings_of(benchmark).private_fraction
        return cls(task=benchmark.task, row_id_column=dataset.row_id_column, target_column=dataset.target_column,
                   metrics=tuple(benchmark.metrics) if benchmark.metrics else None,
                   primary_metric=benchmark.primary_metric,
                   private_split=(benchmark.id, fraction) if fraction else None)

    @property
    def metric_list(self) -> list[str] | None:
        return list(self.metrics) if self.metrics is not None else None

    def to_dict(self) -> dict:
        """JSON form (the isolated scorer's request)."""
        return {"task": self.task, "row_id_column": self.row_id_column, "target_column": self.target_column,
                "metrics": self.metric_list, "primary_metric": self.primary_metric,
                "private_split": list(self.private_split) if self.private_split else None}

    @classmethod
    def from_dict(cls, body: dict) -> Scoring:
        split = body.get("private_split")
        return cls(task=body["task"], row_id_column=body["row_id_column"], target_column=body["target_column"],
                   metrics=tuple(body["metrics"]) if body.get("metrics") is not None else None,
                   primary_metric=body.get("primary_metric"),
                   private_split=(split[0], split[1]) if split else None)
