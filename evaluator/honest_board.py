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
from typing import Any

from evaluator import ladder, scoring
from evaluator.errors import EvaluatorError
from evaluator.row_store import RowStore, Scope
from evaluator.storage.models import Run

logger = logging.getLogger(__name__)

TOP_PAIRS = 20  # adjacent pairs tested per board (the bound of the board's cost)
UNTESTED = {"tied_with_next": False, "p_value_vs_next": None, "test_vs_next": None}


def ladder_steps(benchmark: Scope, runs: Sequence[Any], *, metric: str, part: str, rows: RowStore,
                 value_of: Callable[[Any], float | None],
                 group: Callable[[Any], str] = lambda run: run.owner) -> dict[str, list[ladder.Step]]:
    """Each entrant's Ladder steps over their runs (in `runs`' order, which is finish order).

    `runs` are Runs or standings.Entrants (an `id` each); `group` names a run's entrant (its owner, or
    its team under settings.teams). A step not stored yet reads the two runs' rows (RowStore.step).
    """
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
            if (run_id, best_id) in known:
                error = known[(run_id, best_id)]
            else:
                loaded = {str(run.id): run for run in Run.select().where(Run.id.in_([run_id, best_id]))}
                error = rows.step(benchmark, loaded[run_id], loaded[best_id], metric, part)
        except (EvaluatorError, KeyError) as ex:  # NOTE: a run whose rows cannot be read never moves the score
            logger.warning("Ladder step of run %s on %s not computed: %s", run_id, benchmark.id, ex)
            return math.inf
        return error if error is not None else (1 / math.sqrt(n_rows) if n_rows else math.inf)

    per_entrant: dict[str, list[tuple[str, float]]] = {}
    for run in runs:
        value = value_of(run)
        if value is not None:
            per_entrant.setdefault(group(run), []).append((str(run.id), value))
    maximize = scoring.direction(metric) == "maximize"
    return {who: ladder.steps(values, maximize=maximize, n_rows=max(n_rows, 0), threshold=threshold)
            for who, values in per_entrant.items()}


def tie_ranks(benchmark: Scope, ranked: list[tuple[int, str]], *, metric: str, part: str, level: float,
              rows: RowStore) -> tuple[dict[str, int], dict[str, dict]]:
    """Shared ranks and each tested entry's fields, from the board's (rank, run id) in order.

    Returns ({run id: new rank}, {run id: {tied_with_next, p_value_vs_next, test_vs_next}}).
    """
    ranks = {run_id: rank for rank, run_id in ranked}
    info: dict[str, dict] = {}
    top = [run_id for _, run_id in ranked[:TOP_PAIRS + 1]]
    runs = {str(run.id): run for run in Run.select().where(Run.id.in_(top))} if top else {}
    for upper, lower in zip(top, top[1:]):
        try:
            result = rows.compare(benchmark, runs[upper], runs[lower], metric, part)
        except EvaluatorError as ex:
            info[upper] = {**UNTESTED, "test_vs_next": f"not tested: {ex.message}"}
            continue
        significant = result.significant(level)
        info[upper] = {"tied_with_next": significant is False, "p_value_vs_next": result.p_value,
                       "test_vs_next": result.test if result.p_value is not None else f"not tested: {result.reason}"}
        if significant is False and ranks[lower] != ranks[upper]:
            old = ranks[lower]
            for run_id, rank in ranks.items():  # NOTE: an exact tie below moves along with it
                if rank == old:
                    ranks[run_id] = ranks[upper]
    return ranks, info
