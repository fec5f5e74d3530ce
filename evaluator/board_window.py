"""A leaderboard ranked in PostgreSQL, of which only the rows a caller is shown come back to Python.

A cold board of 10,000 participants spent most of its time in Python: fetching 10,000 pre-selected
rows, making an Entrant of each, keeping each entrant's best and sorting them, to show 100. Here
PostgreSQL does all of it over the same slim rows (standings.pool_sql), in one sort after one
DISTINCT ON: each entrant's best run, the ranks (1 + the ranked entries of every better value:
equal values, equal rank), the baselines' places, the count of entries and of participants; and it
returns only the window asked for, the viewer's own rows, the first ranked entries (the paired
tests read them) and the first row (the counts, whatever the window).

The rules are leaderboard.build's, in SQL, and the board is the same (a test builds both):
- per entrant (participant or team) the best run on the ranked metrics, a missing tie-breaker
  ranking last; equal values: the earlier completion, then the smaller run id;
- private boards with final selections: an entrant's final selections, else its best public run;
- baselines: the best per (owner, name), listed at their score after an equal ranked entry, unranked;
- board order: the ranked metrics, completion time, ranked before baseline, run id (code points).
What it cannot read the same way is left to the Python ranking: SQLite, the Ladder (every run of an
entrant), and under `at` a scope with re-scored runs (their document then is in metrics_history).
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from collections.abc import Sequence

import peewee

from evaluator.standings import Entrant, PhaseRuns, entrant_of, order_sql, pool_sql
from evaluator.storage.db import database
from evaluator.storage.models import Run, RunStatus


class Placed(typing.NamedTuple):
    """One entry of a board in board order: ranked (kind 0, a rank) or a baseline (kind 1, no rank)."""

    kind: int
    rank: int | None
    run: Entrant
    values: Sequence[float | None]  # the ranked metrics' values it is shown with (None: missing)


@dataclasses.dataclass(frozen=True)
class Window:
    """The rows of a board one request shows, and what the page says of the whole board."""

    rows: list[Placed]  # entries offset+1 .. offset+limit, in board order
    mine: Placed | None  # the first entry of the asked entrant, wherever it falls
    top: list[Placed]  # the first `top` ranked entries, in order (the paired tests' pairs)
    total: int  # every entry, baselines too
    participants: int  # ranked entries


def applies(benchmark_id: str, at: datetime.datetime | None, phase: PhaseRuns | None) -> bool:
    """Whether window() ranks this board exactly: PostgreSQL, and under `at` no re-scored run in its scope."""
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        return False
    if at is None:
        return True
    scope = ((Run.benchmark == benchmark_id) & (Run.status == RunStatus.SUCCEEDED.value) & (Run.finished_at <= at)
             & (Run.metrics_history != []))
    if phase is not None:
        scope &= phase.where()
    return not Run.select(Run.id).where(scope).exists()


def window(benchmark_id: str, metrics: Sequence[str], directions: Sequence[str], *, private: bool, finals: bool,
           at: datetime.datetime | None, teams: bool, phase: PhaseRuns | None, offset: int, limit: int | None,
           entrant: str | None, top: int) -> Window:
    """The board's entries offset+1 .. offset+limit (limit None: to the end), `entrant`'s own entry and the
    first `top` ranked entries, ranked in one query (only where applies() says so)."""
    pool, params = pool_sql(benchmark_id, metrics, private=private, at=at, teams=teams, phase=phase)
    count = len(metrics)
    ranks = ", ".join(order_sql(f"v{i}", d) for i, d in enumerate(directions))
    if finals:  # baselines, final selections, and the best public run of each entrant who chose none
        candidates = (
            "(SELECT * FROM pool WHERE baseline) UNION ALL (SELECT * FROM pool WHERE NOT baseline AND final) "
            "UNION ALL (SELECT DISTINCT ON (entrant) * FROM pool WHERE NOT baseline AND public IS NOT NULL "
            "AND entrant NOT IN (SELECT entrant FROM pool WHERE NOT baseline AND final) "
            f'ORDER BY entrant, {order_sql("public", directions[0])}, finished_at, id COLLATE "C")')
    else:
        candidates = "SELECT * FROM pool"
    # NOTE: one DISTINCT ON keeps each entrant's best run and each baseline's (owner, name) best (a baseline's
    # entrant is its owner), and one sort places them all: the pool is read once, not once per part
    group = "entrant, baseline, CASE WHEN baseline THEN name END"  # entrant first: most comparisons end there
    board_order = f'ORDER BY {ranks}, finished_at, kind, id COLLATE "C"'
    sql = (
        f"WITH pool AS ({pool}), candidates AS ({candidates}), "
        f"board AS (SELECT DISTINCT ON ({group}) *, baseline::int AS kind FROM candidates WHERE v0 IS NOT NULL "
        f'ORDER BY {group}, {ranks}, finished_at, id COLLATE "C"), '
        "placed AS (SELECT *, row_number() OVER upto AS position, "
        "count(*) FILTER (WHERE kind = 0) OVER upto AS ranked, "
        # a rank: 1 + the ranked entries of every better value (GROUPS: the peers, equal on every ranked metric)
        "1 + count(*) FILTER (WHERE kind = 0) OVER "
        f"(ORDER BY {ranks} GROUPS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS rank, "
        "count(*) OVER whole AS total, count(*) FILTER (WHERE kind = 0) OVER whole AS participants FROM board "
        f"WINDOW upto AS ({board_order} ROWS UNBOUNDED PRECEDING), "
        f"whole AS ({board_order} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) "
        "SELECT * FROM placed WHERE position = 1 OR entrant = %(me)s OR (kind = 0 AND ranked <= %(top)s) "
        "OR (position > %(offset)s AND (%(end)s::bigint IS NULL OR position <= %(end)s)) ORDER BY position")
    end = None if limit is None else offset + limit
    params.update(me=entrant, top=top, offset=offset, end=end)
    rows, mine, first = [], None, []
    total = participants = 0
    for row in database.execute_sql(sql, params).fetchall():
        run = entrant_of(row, count)
        kind, position, ranked, rank, total, participants = row[9 + count:15 + count]
        placed = Placed(kind, rank if kind == 0 else None, run, run.found)
        if offset < position and (end is None or position <= end):
            rows.append(placed)
        if mine is None and entrant is not None and run.entrant == entrant:
            mine = placed  # the first, in board order
        if kind == 0 and ranked <= top:
            first.append(placed)
    return Window(rows, mine, first, total, participants)
