"""Leaderboard: the best succeeded run per participant, ranked by the benchmark's primary metric."""

from __future__ import annotations

import math

from evaluator.storage.models import Benchmark, Run, RunStatus, isoformat


def _score(run: Run, metric: str) -> float | None:
    value = ((run.metrics or {}).get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def build(benchmark: Benchmark) -> dict:
    """Rank participants: best score first, ties share a rank, earlier completion breaks display order."""
    metric, maximize = benchmark.primary_metric, benchmark.direction == "maximize"
    best: dict[str, tuple[float, Run]] = {}
    for run in Run.select().where((Run.benchmark == benchmark.id) & (Run.status == RunStatus.SUCCEEDED.value)):
        score = _score(run, metric)
        if score is None:
            continue
        current = best.get(run.owner)
        better = current is None or (score > current[0] if maximize else score < current[0]) or (
            score == current[0] and run.finished_at < current[1].finished_at)
        if better:
            best[run.owner] = (score, run)
    ordered = sorted(best.values(), key=lambda item: ((-item[0] if maximize else item[0]), item[1].finished_at))
    entries, rank, previous = [], 0, None
    for position, (score, run) in enumerate(ordered, start=1):
        if score != previous:
            rank, previous = position, score
        interval = ((run.metrics or {}).get("primary_metric") or {}).get("ci")
        entries.append({"rank": rank, "participant": run.owner, "score": score, "ci": interval,
                        "run_id": str(run.id), "submission": str(run.submission_id),
                        "finished_at": isoformat(run.finished_at)})
    return {"benchmark": benchmark.id, "rules": {
        "metric": metric, "direction": benchmark.direction, "per_participant": "best run",
        "ties": "equal scores share a rank; earlier completion is listed first"}, "entries": entries}
