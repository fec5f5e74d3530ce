"""Phases of a benchmark: ordered stages (dev, then final) with their own data, window, quota, limits, board.

A benchmark without phases is one implicit phase: every value is the benchmark's and
runs carry no phase. A phase's null column takes the benchmark's value (`effective`).
Moving on, `migrate` re-evaluates each participant's selected runs (their best run when
none is selected) on the next phase: new runs of the same submissions, which the worker
evaluates with the NEXT phase's dataset, task and metrics (the run's phase decides;
Codabench #2193 scored migrated runs with the old phase's task).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import uuid
from typing import Any

import peewee

from evaluator import competition, entrants, fields, outbox, quotas, scoring
from evaluator.config import Config
from evaluator.datasets import dataset_field, require_ready
from evaluator.errors import Conflict, Forbidden, NotFound, ValidationFailed
from evaluator.settings import CompetitionSettings
from evaluator.storage.models import Benchmark, Dataset, Phase, Run, RunStatus, Submission, isoformat, utcnow
from evaluator.tokens import Principal

VISIBILITIES = ("public", "participants", "private")  # who reads the phase and its board: managers always do
MAX_PHASES = 20


@dataclasses.dataclass(frozen=True)
class Effective:
    """A benchmark's values as one phase sees them (settings.Scoring and limits_of read this like a row)."""

    id: str
    task: str
    metrics: list
    primary_metric: str
    direction: str
    limits: dict
    quota: dict
    settings: dict
    dataset_id: uuid.UUID
    allowed_frameworks: list
    phase: str | None = None  # the phase's slug; None: the implicit single phase


def effective(benchmark: Benchmark, phase: Phase | None) -> Effective:
    """The values that evaluate and rank a run of `phase` (None: the benchmark's own)."""
    if phase is None:
        return Effective(benchmark.id, benchmark.task, list(benchmark.metrics or []), benchmark.primary_metric,
                         benchmark.direction, dict(benchmark.limits or {}), dict(benchmark.quota or {}),
                         dict(benchmark.settings or {}), benchmark.dataset_id, list(benchmark.allowed_frameworks or []))
    primary = phase.primary_metric or benchmark.primary_metric
    return Effective(benchmark.id, phase.task or benchmark.task, list(phase.metrics or benchmark.metrics or []),
                     primary, scoring.direction(primary), {**(benchmark.limits or {}), **(phase.limits or {})},
                     dict(phase.quota if phase.quota is not None else benchmark.quota or {}),
                     _settings(benchmark, phase), phase.dataset_id or benchmark.dataset_id,
                     list(benchmark.allowed_frameworks or []), phase.slug)


def _settings(benchmark: Benchmark, phase: Phase) -> dict:
    """The benchmark's settings with the phase's window, and tie-breakers its metrics still have."""
    settings = dict(benchmark.settings or {})
    names = set(scoring.metric_names(phase.task or benchmark.task))
    primary = phase.primary_metric or benchmark.primary_metric
    settings["tie_breakers"] = [m for m in settings.get("tie_breakers") or [] if m in names and m != primary]
    settings["opens_at"] = phase.opens_at.isoformat() if phase.opens_at else None
    settings["closes_at"] = phase.closes_at.isoformat() if phase.closes_at else None
    if settings["closes_at"] is None:
        settings["freeze_before_close_s"] = None
    return settings


def dataset_of(benchmark: Benchmark, phase: Phase | None) -> Dataset:
    return Dataset.get_by_id(phase.dataset_id if phase is not None and phase.dataset_id else benchmark.dataset_id)


def phase_of_run(run: Run) -> Phase | None:
    return Phase.get_by_id(run.phase_id) if run.phase_id is not None else None


# --- definitions ---------------------------------------------------------------------------


def parse_phase(raw: dict, benchmark: Benchmark, principal: Principal, *, config: Config) -> dict:
    """Validate one phase definition; returns its columns (overrides only, null: the benchmark's value)."""
    from evaluator.benchmarks import TASKS, parse_limits

    values: dict[str, Any] = {"slug": fields.slug(raw, "slug"), "title": _optional(raw, "title", fields.text)}
    task = fields.choice(raw, "task", TASKS, benchmark.task)
    names = scoring.metric_names(task)
    if task != benchmark.task:  # another task: its own metrics and primary metric, never the benchmark's
        values["task"] = task
        values["primary_metric"] = fields.choice(raw, "primary_metric", names, scoring.default_primary_metric(task))
        values["metrics"] = fields.string_list(raw, "metrics", list(names), allowed=names)
    else:
        values["primary_metric"] = _optional(raw, "primary_metric", lambda r, f: fields.choice(r, f, names))
        values["metrics"] = _optional(raw, "metrics", lambda r, f: fields.string_list(r, f, allowed=names))
    if values["primary_metric"] and values["metrics"] and values["primary_metric"] not in values["metrics"]:
        values["metrics"] = [values["primary_metric"], *values["metrics"]]
    values["dataset"] = require_ready(dataset_field(raw, principal)) if raw.get("dataset") is not None else None
    values["opens_at"], values["closes_at"] = (competition.instant(raw, name, within="phases")
                                               for name in ("opens_at", "closes_at"))
    if values["opens_at"] and values["closes_at"] and values["closes_at"] <= values["opens_at"]:
        raise ValidationFailed("'phases.closes_at' must be after 'phases.opens_at'", field="phases.closes_at")
    values["quota"] = quotas.parse_quota(raw) if raw.get("quota") is not None else None
    if raw.get("limits") is not None:
        given = fields.mapping(raw, "limits")
        merged = parse_limits({"limits": {**(benchmark.limits or {}), **given}}, config)
        values["limits"] = {name: merged[name] for name in given if name in merged}
    else:
        values["limits"] = None
    values["visibility"] = fields.choice(raw, "visibility", VISIBILITIES, "public")
    return values


def _optional(raw: dict, field: str, read: Any) -> Any:
    """A field left out (or null) keeps the benchmark's value: None; else read and validated."""
    return None if raw.get(field) is None else read(raw, field)


def add_phases(benchmark: Benchmark, raws: list, principal: Principal, *, config: Config) -> list[Phase]:
    """Append phases after the benchmark's last one, in the order given (inside the caller's transaction)."""
    if not isinstance(raws, list) or not all(isinstance(r, dict) for r in raws):
        raise ValidationFailed("'phases' must be a list of phase objects", field="phases")
    existing = list_phases(benchmark)
    if len(existing) + len(raws) > MAX_PHASES:
        raise ValidationFailed(f"a benchmark has at most {MAX_PHASES} phases", field="phases")
    taken = {p.slug for p in existing}
    created = []
    for ordinal, raw in enumerate(raws, start=len(existing)):
        values = parse_phase(raw, benchmark, principal, config=config)
        if values["slug"] in taken:
            raise Conflict(f"benchmark {benchmark.id} already has a phase {values['slug']}")
        taken.add(values["slug"])
        created.append(Phase.create(benchmark=benchmark.id, ordinal=ordinal, **values))
    return created


def create_phase(benchmark_id: str, body: dict, principal: Principal, *, config: Config) -> Phase:
    """Add one phase at the end of a benchmark's list; its managers only."""
    from evaluator.benchmarks import get_benchmark

    benchmark = get_benchmark(benchmark_id, principal)
    if not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark_id} may add a phase")
    with Benchmark._meta.database.atomic():
        return add_phases(benchmark, [body], principal, config=config)[0]


# --- reading -------------------------------------------------------------------------------


def list_phases(benchmark: Benchmark) -> list[Phase]:
    return list(Phase.select().where(Phase.benchmark == benchmark.id).order_by(Phase.ordinal))


def may_see(benchmark: Benchmark, phase: Phase, principal: Principal | None) -> bool:
    if phase.visibility == "public" or competition.manages(benchmark, principal):
        return True
    return phase.visibility == "participants" and principal is not None


def visible_phases(benchmark: Benchmark, principal: Principal | None) -> list[Phase]:
    return [p for p in list_phases(benchmark) if may_see(benchmark, p, principal)]


def get_phase(benchmark: Benchmark, slug: str, principal: Principal | None) -> Phase:
    """The named phase if the caller may see it; NotFound otherwise (a hidden phase does not leak)."""
    phase = Phase.get_or_none((Phase.benchmark == benchmark.id) & (Phase.slug == slug))
    if phase is None or not may_see(benchmark, phase, principal):
        raise NotFound(f"benchmark {benchmark.id} has no phase {slug}")
    return phase


def is_open(phase: Phase, now: datetime.datetime | None = None) -> bool:
    now = now or utcnow()
    return (phase.opens_at is None or phase.opens_at <= now) and (phase.closes_at is None or now < phase.closes_at)


def is_closed(phase: Phase, now: datetime.datetime | None = None) -> bool:
    return phase.closes_at is not None and (now or utcnow()) >= phase.closes_at


def current(phases: list[Phase], now: datetime.datetime | None = None) -> Phase | None:
    """The phase a benchmark is in: the last one that has opened (the first before any opens)."""
    now = now or utcnow()
    opened = [p for p in phases if p.opens_at is None or p.opens_at <= now]
    return opened[-1] if opened else (phases[0] if phases else None)


def board_phase(benchmark: Benchmark, slug: str | None, principal: Principal | None) -> Phase | None:
    """The phase whose board is asked for (`?phase=`, else the current one); None without phases."""
    if slug:
        return get_phase(benchmark, slug, principal)
    return current(visible_phases(benchmark, principal))


def submission_phase(benchmark: Benchmark, slug: str | None, principal: Principal,
                     now: datetime.datetime | None = None, *, baseline: bool = False) -> Phase | None:
    """The phase a new submission goes to: the named one, else the one open now; refuse a closed window.

    A manager's baseline may name a phase outside its window (a reference entry set up before it opens).
    """
    now = now or utcnow()
    if slug:
        phase = get_phase(benchmark, slug, principal)
    else:
        phases = visible_phases(benchmark, principal)
        if not phases:
            return None
        open_now = [p for p in phases if is_open(p, now)]
        if not open_now:
            raise Conflict(f"no phase of benchmark {benchmark.id} is open now: "
                           + "; ".join(_window(p) for p in phases))
        return open_now[-1]
    if not is_open(phase, now) and not (baseline and competition.manages(benchmark, principal)):
        raise Conflict(f"phase {phase.slug} of benchmark {benchmark.id} is not open: {_window(phase)}")
    return phase


def _window(phase: Phase) -> str:
    opens = f"opens {isoformat(phase.opens_at)}" if phase.opens_at else "open from the start"
    closes = f"closes {isoformat(phase.closes_at)}" if phase.closes_at else "no close"
    return f"{phase.slug} {opens}, {closes}"


def runs_in(benchmark: Benchmark, phase: Phase) -> peewee.Expression:
    """The filter of a phase's runs; runs from before the benchmark had phases count as the first phase's."""
    first = Phase.select(peewee.fn.MIN(Phase.ordinal)).where(Phase.benchmark == benchmark.id).scalar()
    if phase.ordinal == first:
        return (Run.phase == phase.id) | Run.phase.is_null()
    return Run.phase == phase.id


def serialize(phase: Phase, benchmark: Benchmark, now: datetime.datetime | None = None) -> dict:
    values = effective(benchmark, phase)
    dataset = dataset_of(benchmark, phase)
    return {
        "slug": phase.slug, "ordinal": phase.ordinal, "title": phase.title or phase.slug,
        "dataset": dataset.ref, "task": values.task, "primary_metric": values.primary_metric,
        "direction": values.direction, "metrics": values.metrics,
        "opens_at": isoformat(phase.opens_at), "closes_at": isoformat(phase.closes_at),
        "open": is_open(phase, now), "closed": is_closed(phase, now),
        "quota": values.quota, "limits": values.limits, "visibility": phase.visibility,
    }


# --- moving on -----------------------------------------------------------------------------


def _primary(run: Run, metric: str) -> float | None:
    value = ((run.metrics or {}).get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def selected_runs(benchmark: Benchmark, phase: Phase) -> tuple[list[Run], list[dict]]:
    """What moves on: each entrant's final selections, else its best run; each baseline's runs.

    Returns (runs, skipped): a predictions file answers the old phase's rows only, so it cannot move.
    """
    metric = effective(benchmark, phase).primary_metric
    maximize = scoring.direction(metric) == "maximize"
    query = list(Run.select(Run, Submission).join(Submission)
                 .where((Run.benchmark == benchmark.id) & (Run.status == RunStatus.SUCCEEDED.value)
                        & runs_in(benchmark, phase)).order_by(Run.finished_at))
    teams = CompetitionSettings.from_json(benchmark.settings).teams

    def entrant(run: Run) -> str:  # a participant, or (settings.teams) the team the run was made for
        return entrants.key(run.submission, teams)

    chosen: list[Run] = []
    best: dict[str, Run] = {}
    finals = {entrant(run) for run in query if run.final and not run.submission.baseline}
    for run in query:
        if run.submission.baseline or entrant(run) in finals:
            if run.final or run.submission.baseline:
                chosen.append(run)
            continue
        value = _primary(run, metric)
        if value is None:
            continue
        kept = best.get(entrant(run))
        kept_value = _primary(kept, metric) if kept is not None else None
        if kept_value is None or (value > kept_value if maximize else value < kept_value):
            best[entrant(run)] = run
    runs = chosen + list(best.values())
    skipped = [{"run_id": str(r.id), "participant": r.owner, "reason": "a predictions file cannot be re-evaluated "
                "on another phase's data"} for r in runs if r.submission.kind != "bundle"]
    return [r for r in runs if r.submission.kind == "bundle"], skipped


def migrate(benchmark_id: str, slug: str, principal: Principal, queues: object) -> dict:
    """Re-evaluate phase `slug`'s selected runs on the next phase; managers only; idempotent.

    Each moved run is a new run of the same submission in the next phase (queued for a worker,
    which reads the next phase's dataset, task and metrics from the run's phase). Running it
    again creates nothing new: one migrated run per submission and phase (a unique index).
    """
    from evaluator.benchmarks import get_benchmark

    benchmark = get_benchmark(benchmark_id, principal)
    if not competition.manages(benchmark, principal):
        raise Forbidden(f"only an admin or the owner of {benchmark_id} may move its phases on")
    phase = get_phase(benchmark, slug, principal)
    following = (Phase.select().where((Phase.benchmark == benchmark.id) & (Phase.ordinal > phase.ordinal))
                 .order_by(Phase.ordinal).first())
    if following is None:
        raise Conflict(f"phase {slug} is the last phase of benchmark {benchmark_id}; there is none to move to")
    require_ready(dataset_of(benchmark, following))
    moving, skipped = selected_runs(benchmark, phase)
    created, existing, messages = [], [], []
    with Benchmark._meta.database.atomic():
        for run in moving:
            new_id = uuid.uuid4()
            (Run.insert(id=new_id, submission=run.submission_id, benchmark=benchmark.id, owner=run.owner,
                        status=RunStatus.QUEUED.value, phase=following.id, migrated_from=run.id)
             .on_conflict_ignore().execute())
            moved = Run.get((Run.submission == run.submission_id) & (Run.phase == following.id)
                            & Run.migrated_from.is_null(False))
            if moved.id == new_id:
                created.append(str(moved.id))
                messages.append(outbox.add("evaluate_run", str(moved.id)))
            else:
                existing.append(str(moved.id))
    if messages:
        outbox.deliver(queues, messages)  # after commit; the relay sends what the broker refused now
    return {"from": phase.slug, "to": following.slug, "created": created, "existing": existing,
            "skipped": skipped}
