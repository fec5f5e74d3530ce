"""GET /v1/benchmarks/{b}/compare: the paired test of two runs, as this caller may read it.

Managers compare any two succeeded runs of their benchmark, exactly, on the hidden part they choose
(default: the private part when the labels are split, else all rows). A participant compares two of
their own runs on the part they are scored on, with the plots' aggregation rules: values rounded
(evaluator.disclosure) and the discordant-row counts shown only when each holds at least k rows
(evaluator.plots.binning.min_bin_rows), as no bin of a participant's plot holds fewer. Under the Ladder a
participant cannot compare while the benchmark is open: it would give each run's public score.
"""

from __future__ import annotations

from evaluator import benchmarks, competition, disclosure, phases
from evaluator.config import Config
from evaluator.errors import Conflict, Forbidden, NotFound, ValidationFailed
from evaluator.plots.binning import min_bin_rows
from evaluator.row_store import RowStore, part_of
from evaluator.settings import settings_of
from evaluator.storage.models import Run, RunStatus
from evaluator.tokens import Principal

DEFAULT_LEVEL = 0.05  # when the benchmark sets no significance_level


def _run(benchmark_id: str, run_id: str, principal: Principal, manager: bool) -> Run:
    run = Run.get_or_none((Run.id == _uuid(run_id)) & (Run.benchmark == benchmark_id)) if _uuid(run_id) else None
    if run is None or (not manager and run.owner != principal.owner):
        raise NotFound(f"run {run_id[:40]} not found in benchmark {benchmark_id}")
    if run.status != RunStatus.SUCCEEDED.value:
        raise NotFound(f"run {run_id[:40]} has no score yet (status {run.status}); only succeeded runs compare")
    return run


def _uuid(value: str) -> str | None:
    import uuid

    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        return None


def compare(benchmark_id: str, a: str, b: str, principal: Principal, *, rows: RowStore, config: Config,
            metric: str | None = None, view: str | None = None) -> dict:
    """The comparison document of runs `a` and `b` for this caller."""
    benchmark = benchmarks.get_benchmark(benchmark_id, principal)
    manager = competition.manages(benchmark, principal)
    if competition.ladder_hides(benchmark, principal):
        raise Forbidden(f"benchmark {benchmark.id} uses the Ladder: while it is open, the leaderboard's score is "
                        "the only public feedback on a run; compare after the close")
    run_a, run_b = _run(benchmark.id, a, principal, manager), _run(benchmark.id, b, principal, manager)
    if run_a.phase_id != run_b.phase_id:
        raise Conflict("the two runs belong to different phases: they were scored on different rows")
    scope = phases.effective(benchmark, phases.phase_of_run(run_a))  # a phase's own dataset, task and metrics
    metric = metric or scope.primary_metric
    if metric not in (scope.metrics or [scope.primary_metric]):
        raise ValidationFailed(f"'metric' must be one of the benchmark's metrics {list(scope.metrics or [])}",
                               field="metric")
    split = bool(settings_of(benchmark).private_fraction)
    if manager:
        private = split and view != "public"
    else:
        private = split and view == "private" and competition.is_closed(benchmark)
    part = part_of(benchmark, private)
    result = rows.compare(scope, run_a, run_b, metric, part)
    level = settings_of(benchmark).significance_level or DEFAULT_LEVEL
    document = {"benchmark": benchmark.id, "part": part, "level": level,
                "significant": result.significant(level), **result.to_dict(),
                "a": {"run_id": str(run_a.id), "owner": run_a.owner, "value": result.a},
                "b": {"run_id": str(run_b.id), "owner": run_b.owner, "value": result.b},
                "exact": manager, "min_rows": None}
    if manager:
        return document
    k = min_bin_rows(result.n_rows, config.plot_min_bin_rows)
    discordant = document["discordant"]
    if discordant and min(discordant.values()) < k:
        document["discordant"] = None
    return {**disclosure.coarsen(document), "min_rows": k, "level": level}
