"""Leaderboard: the best run per participant, ranked by the primary metric then the tie-breakers.

While a benchmark is open everyone ranks on the public part of the labels;
after it closes (or for its managers) the private part decides, over each
participant's final selections (their best public run when they chose none).
"""

from __future__ import annotations

import math

from evaluator import competition, disclosure, scoring
from evaluator.storage.models import Benchmark, Run, RunStatus, isoformat


def _value(document: dict | None, metric: str) -> float | None:
    value = ((document or {}).get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _document(run, private: bool) -> dict | None:
    return (run.private_metrics or run.metrics) if private else run.metrics


def _sort_key(values: list[float], directions: list[str]) -> tuple:
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions))


def build(benchmark: Benchmark, *, private: bool, exact: bool = False) -> dict:
    """Rank on exact values; show them exactly only when `exact` (managers), else rounded."""
    shown = (lambda value: value) if exact else disclosure.coarsen
    settings = competition.settings_of(benchmark)
    metrics = [benchmark.primary_metric, *settings["tie_breakers"]]
    directions = [scoring.direction(m) for m in metrics]
    # NOTE: only the columns ranking reads, as named tuples: model instances of every column (provenance,
    # history) made a 10,000-run board several times slower (bench/pages.py).
    columns = [Run.id, Run.owner, Run.final, Run.finished_at, Run.metrics] + ([Run.private_metrics] if private else [])
    runs = list(Run.select(*columns).where((Run.benchmark == benchmark.id)
                                           & (Run.status == RunStatus.SUCCEEDED.value))
                .order_by(Run.finished_at).namedtuples())
    candidates = _candidates(runs, private and settings["final_selections"] > 0, metrics, directions)

    best: dict[str, tuple[tuple, Run, list[float]]] = {}
    for run in candidates:
        values = [_value(_document(run, private), m) for m in metrics]
        if values[0] is None:
            continue
        values = [v if v is not None else (-math.inf if d == "maximize" else math.inf) for v, d in
                  zip(values, directions)]
        key = _sort_key(values, directions) + (run.finished_at,)
        if run.owner not in best or key < best[run.owner][0]:
            best[run.owner] = (key, run, values)

    entries, rank, previous = [], 0, None
    for position, (key, run, values) in enumerate(sorted(best.values(), key=lambda item: item[0]), start=1):
        if key[:-1] != previous:  # equal on every ranked metric: an equal rank
            rank, previous = position, key[:-1]
        document = _document(run, private) or {}
        entries.append({
            "rank": rank, "participant": run.owner, "score": shown(values[0]),
            # NOTE: a missing tie-breaker ranks last (an infinity) but reads as null: JSON has no Infinity
            "tie_breakers": shown({m: v if math.isfinite(v) else None for m, v in zip(metrics[1:], values[1:])}),
            "ci": shown((document.get("primary_metric") or {}).get("ci")),
            "run_id": str(run.id), "final": run.final, "finished_at": isoformat(run.finished_at),
        })
    return {
        "benchmark": benchmark.id,
        "view": "private" if private else "public",
        "closed": competition.is_closed(benchmark),
        "rules": {
            "metric": benchmark.primary_metric, "direction": benchmark.direction,
            "tie_breakers": [{"metric": m, "direction": d} for m, d in zip(metrics[1:], directions[1:])],
            "per_participant": "final selections (best public run if none)" if private and settings[
                "final_selections"] else "best run",
            "ties": "equal on every ranked metric: equal rank; then earlier completion is listed first",
            "final_selections": settings["final_selections"], "closes_at": settings["closes_at"],
        },
        "entries": entries,
    }


def _candidates(runs: list[Run], use_finals: bool, metrics: list[str], directions: list[str]) -> list[Run]:
    if not use_finals:
        return runs
    chosen = [run for run in runs if run.final]
    owners_with_choice = {run.owner for run in chosen}
    fallback: dict[str, Run] = {}
    for run in runs:
        if run.owner in owners_with_choice or _value(run.metrics, metrics[0]) is None:
            continue
        key = _sort_key([_value(run.metrics, metrics[0])], directions[:1])
        if run.owner not in fallback or key < _sort_key([_value(fallback[run.owner].metrics, metrics[0])],
                                                        directions[:1]):
            fallback[run.owner] = run
    return chosen + list(fallback.values())
