"""What the leaderboard adds from per-row predictions: Ladder scores and ties where #1 is not really better.

Both read runs' stored rows through a RowStore (evaluator.row_store) and are optional per benchmark:
- settings.ladder: a participant's public score is their Ladder score (evaluator.ladder) over their runs in
  the order they finished; the entry's run is the one that set it.
- settings.significance_level: each adjacent pair of the first TOP_PAIRS + 1 ranked entries gets a paired
  test (evaluator.significance); where p >= level the lower one shares the upper one's rank, and both
  say so (`tied_with_next`, `p_value_vs_next`). Below them ranks are as ordered and nothing is tested, so
  a board of 10,000 runs costs at most TOP_PAIRS tests (each cached) and TOP_PAIRS + 1 runs' reads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from evaluator import ladder, scoring
from evaluator.errors import EvaluatorError
from evaluator.row_store import RowStore, Scope
from evaluator.storage.models import Run

logger = logging.getLogger(__name__)

TOP_PAIRS = 20  # adjacent pairs tested per board (the bound of the board's cost)


def ladder_steps(benchmark: Scope, runs: Sequence[Run], *, metric: str, part: str, rows: RowStore,
                 value_of: Callable[[Run], float | None],
                 group: Callable[[Run], str] = lambda run: run.owner) -> dict[str, list[ladder.Step]]:
    """Each entrant's Ladder steps over their runs (in `runs`' order, which is finish order).

    `group` names the entrant of a run (the leaderboard's: its owner, or its team under settings.teams).
    """
    by_id = {str(run.id): run for run in runs}
    try:
        n_rows = rows.part_rows(benchmark, part)
    except EvaluatorError as ex:  # NOTE: no labels to read: nothing moves a first score (and nothing is read)
        logger.warning("Ladder of %s cannot read the labels; each score stays at its first run: %s", benchmark.id, ex)
        n_rows = -1

    known = rows.known_steps(benchmark, metric, part) if n_rows >= 0 else {}

    def threshold(run_id: str, best_id: str) -> float:
        if n_rows < 0:
            return math.inf
        try:
            error = (known[(run_id, best_id)] if (run_id, best_id) in known
                     else rows.step(benchmark, by_id[run_id], by_id[best_id], metric, part))
        except EvaluatorError as ex:  # NOTE: a run whose rows cannot be read never moves the score
            logger.warning("Ladder step of run %s on %s not computed: %s", run_id, benchmark.id, ex)
            return math.inf
        return error if error is not None else (1 / math.sqrt(n_rows) if n_rows else math.inf)

    per_owner: dict[str, list[tuple[str, float]]] = {}
    for run in runs:
        value = value_of(run)
        if value is not None:
            per_owner.setdefault(group(run), []).append((str(run.id), value))
    maximize = scoring.direction(metric) == "maximize"
    return {owner: ladder.steps(values, maximize=maximize, n_rows=max(n_rows, 0), threshold=threshold)
            for owner, values in per_owner.items()}


def mark_ties(benchmark: Scope, entries: list[dict], *, metric: str, part: str, level: float,
              rows: RowStore) -> int:
    """Add tied_with_next / p_value_vs_next to ranked entries and share ranks where p >= level; return tests run."""
    ranked = [entry for entry in entries if entry.get("rank") is not None]
    runs = {str(run.id): run for run in Run.select().where(
        Run.id.in_([entry["run_id"] for entry in ranked[:TOP_PAIRS + 1]]))} if ranked else {}
    tested = 0
    for upper, lower in zip(ranked[:TOP_PAIRS], ranked[1:TOP_PAIRS + 1]):
        try:
            result = rows.compare(benchmark, runs[upper["run_id"]], runs[lower["run_id"]], metric, part)
        except EvaluatorError as ex:
            upper["test_vs_next"] = f"not tested: {ex.message}"
            continue
        tested += 1
        upper["p_value_vs_next"] = result.p_value
        upper["test_vs_next"] = result.test if result.p_value is not None else f"not tested: {result.reason}"
        significant = result.significant(level)
        upper["tied_with_next"] = significant is False
        if significant is False and lower["rank"] != upper["rank"]:
            old = lower["rank"]
            for entry in ranked:  # NOTE: an exact tie below moves along with it
                if entry["rank"] == old:
                    entry["rank"] = upper["rank"]
    return tested


def defaults(entry: dict) -> dict:
    """The fields mark_ties fills, as they read when nothing was tested."""
    return {"tied_with_next": False, "p_value_vs_next": None, "test_vs_next": None, **entry}
