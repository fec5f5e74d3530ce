"""The runs a leaderboard ranks, as slim rows: on PostgreSQL the best run per participant is chosen in SQL.

A board of 10,000 participants used to load and decode every run's metrics documents in Python
(about a second); the ranking itself needs only a few numbers per run. So PostgreSQL reads the
ranked metrics out of the JSONB documents and keeps, per participant, the one run that can win
(DISTINCT ON), and leaderboard.build ranks those `Entrant`s with its usual rules; the documents of
the rows a caller is shown are loaded afterwards (`documents`). Where it can, the board is ranked
in SQL from the same slim rows (`pool_sql`, evaluator.board_window) and this ranking in Python is
the one for the rest (the Ladder, `at` over re-scored runs, SQLite) and the reference.

The pre-selection only narrows: every run it drops loses to the one it keeps under build's own
rule, so build gives the same board as ranking every run (a test builds both). What SQL cannot
read the same way is read in Python from the full rows: SQLite (the embedded default), and under
`at` the re-scored runs, whose document then is in metrics_history.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import typing
from collections.abc import Sequence

import peewee

from evaluator.storage.db import database
from evaluator.storage.models import Phase, Run, RunStatus, Submission


class Entrant(typing.NamedTuple):
    """One succeeded run as a board ranks it: whose, when, and its ranked metrics' values.

    A named tuple, not a frozen dataclass: a cold board makes one per participant (10,000), and a
    frozen dataclass's __init__ (one object.__setattr__ per field) cost more than the SQL.
    """

    id: str
    owner: str
    entrant: str  # whom it ranks for: the owner, or `team:<id>` (settings.teams; entrants.key); baselines: the owner
    team: str | None  # the team it was made for, when teams count (never for a baseline)
    finished_at: datetime.datetime | None  # set on every succeeded run
    final: bool
    baseline: bool
    name: str
    found: tuple[float | None, ...]  # the ranked metrics in the board's document (private or public) at `at`
    public: float | None  # the primary metric in the public document: final selections fall back on it


@dataclasses.dataclass(frozen=True)
class PhaseRuns:
    """The runs of a phase's board, as phases.runs_in filters them: its own, and for the first phase those
    from before the benchmark had phases."""

    phase_id: int
    unphased: bool

    @classmethod
    def of(cls, benchmark_id: str, phase: Phase) -> PhaseRuns:
        first = Phase.select(peewee.fn.MIN(Phase.ordinal)).where(Phase.benchmark == benchmark_id).scalar()
        return cls(phase.id, phase.ordinal == first)

    def where(self) -> peewee.Expression:
        return (Run.phase == self.phase_id) | Run.phase.is_null() if self.unphased else Run.phase == self.phase_id


def value(document: dict | None, metric: str) -> float | None:
    """A metric of a metrics document as a finite float; None when missing or not a number."""
    found = ((document or {}).get("metrics") or {}).get(metric)
    return float(found) if isinstance(found, (int, float)) and math.isfinite(found) else None


def parse_time(value: str | None) -> datetime.datetime | None:
    """ISO 8601 (a trailing Z or an offset allowed) as naive UTC."""
    if not value:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def documents_at(run: Run, at: datetime.datetime | None) -> tuple[dict | None, dict | None]:
    """(metrics, private_metrics) the run had at `at`: the first document replaced after it, else the current."""
    if at is not None:
        for earlier in run.metrics_history or []:
            replaced = parse_time(earlier.get("replaced_at"))
            if replaced is not None and replaced > at:
                return earlier.get("metrics"), earlier.get("private_metrics")
    return run.metrics, run.private_metrics


def document(run: Run, private: bool, at: datetime.datetime | None = None) -> dict | None:
    """The document a board reads: the private part on a private board (the public one when unsplit)."""
    public_doc, private_doc = documents_at(run, at)
    return (private_doc or public_doc) if private else public_doc


def entrants(benchmark_id: str, metrics: Sequence[str], directions: Sequence[str], *, private: bool,
             finals: bool, at: datetime.datetime | None, teams: bool = False, phase: PhaseRuns | None = None,
             preselect: bool = True) -> list[Entrant]:
    """Succeeded runs finished by `at` that can decide the board, in completion order (equal times: by run id).

    With `preselect` (and PostgreSQL): baselines, and per entrant (a participant, or with `teams` the
    team a run was made for) the best run on the ranked metrics (`finals`: their final selections
    and their best public run instead). Without: every run.
    """
    succeeded = (Run.benchmark == benchmark_id) & (Run.status == RunStatus.SUCCEEDED.value)
    if at is not None:
        succeeded &= Run.finished_at <= at
    if phase is not None:
        succeeded &= phase.where()
    if not (preselect and isinstance(database.obj, peewee.PostgresqlDatabase)):
        return _read(succeeded, metrics, private, at, teams)
    chosen = _select(benchmark_id, metrics, directions, private=private, finals=finals, at=at, teams=teams,
                     phase=phase)
    if at is None:  # already in completion order; a final selection may also be its owner's best public run
        return list({entrant.id: entrant for entrant in chosen}.values())
    # a re-scored run's document at `at` may be an earlier one: read those in Python
    chosen += _read(succeeded & (Run.metrics_history != []), metrics, private, at, teams)
    unique = {entrant.id: entrant for entrant in chosen}
    return sorted(unique.values(), key=_completion)


def _completion(entrant: Entrant) -> tuple:
    """Completion order; equal times by run id (as the SQL orders them), so equal runs resolve one way."""
    return entrant.finished_at is None, entrant.finished_at or datetime.datetime.min, entrant.id


def intervals(run_ids: Sequence[str], private: bool, at: datetime.datetime | None) -> dict[str, dict | None]:
    """The confidence interval (primary_metric.ci) each listed run's row shows, by run id: for the rows shown only.

    PostgreSQL reads just that part of the documents, except a re-scored run's under `at` (read in Python).
    """
    if not run_ids:
        return {}
    ids = list(run_ids)
    if not isinstance(database.obj, peewee.PostgresqlDatabase):
        return _intervals_read(Run.id.in_(ids), private, at)
    doc = _private_doc("") if private else "metrics"
    sql = f"SELECT id::text, ({doc}) -> 'primary_metric' -> 'ci' FROM run WHERE id = ANY(%s::uuid[])"
    if at is not None:
        sql += " AND (metrics_history IS NULL OR metrics_history = '[]'::jsonb)"
    found: dict[str, dict | None] = dict(database.execute_sql(sql, (ids,)).fetchall())
    if at is not None:
        found.update(_intervals_read(Run.id.in_(ids) & (Run.metrics_history != []), private, at))
    return found


def _intervals_read(where: peewee.Expression, private: bool, at: datetime.datetime | None) -> dict[str, dict | None]:
    query = Run.select(Run.id, Run.metrics, Run.private_metrics, Run.metrics_history).where(where)
    return {str(run.id): ((document(run, private, at) or {}).get("primary_metric") or {}).get("ci") for run in query}


def _read(where: peewee.Expression, metrics: Sequence[str], private: bool, at: datetime.datetime | None,
          teams: bool) -> list[Entrant]:
    """Entrants from full rows, their documents read in Python (the reference the SQL matches)."""
    query = Run.select(Run, Submission).join(Submission).where(where)
    read = []
    for run in query:
        submission = run.submission
        team = str(submission.team_id) if teams and submission.team_id is not None and not submission.baseline \
            else None
        read.append(Entrant(str(run.id), run.owner, f"team:{team}" if team else run.owner, team, run.finished_at,
                            run.final, submission.baseline, submission.name,
                            tuple(value(document(run, private, at), m) for m in metrics),
                            value(document(run, False, at), metrics[0])))
    return sorted(read, key=_completion)


def _private_doc(row: str) -> str:
    """SQL for the private part of a run's documents when it has one (Python's `private_metrics or metrics`)."""
    return f"COALESCE(NULLIF({row}private_metrics, '{{}}'::jsonb), {row}metrics)"


def _number(json: str) -> str:
    """SQL for a JSONB value as float8: NULL unless a JSON number (a boolean counts as 0 or 1, as in Python).

    NOTE: PostgreSQL's JSONB keeps a number exactly and float8 parses it to the nearest double, as
    Python's json module does; the scorer writes finite Python floats only, so no value overflows.
    """
    return (f"CASE jsonb_typeof({json}) WHEN 'number' THEN ({json})::float8 "
            f"WHEN 'boolean' THEN ({json})::boolean::int::float8 END")


def pool_sql(benchmark_id: str, metrics: Sequence[str], *, private: bool, at: datetime.datetime | None,
             teams: bool, phase: PhaseRuns | None) -> tuple[str, dict]:
    """SQL for the succeeded runs a board reads, one slim row each (`pool`), and its parameters.

    Columns: id, owner, team, finished_at, final, baseline, name, v0..v<n-1> (the ranked metrics in the
    board's document), public (the primary metric in the public document), entrant. Under `at` the
    re-scored runs are left out: their document at `at` may be an earlier one (read in Python).
    """
    doc = _private_doc("r.") if private else "r.metrics"
    part = "private" if private else "public"

    def read(document: str, compact: str, metric: str) -> str:
        """A ranked metric as float8 from the compact values (finite numbers only: board_values.of), and
        from the documents where a row has none (written before migration 0012 and not backfilled)."""
        in_document = _number(f"{document} #> ARRAY['metrics', {metric}]")
        return (f"CASE WHEN r.board_values IS NULL THEN {in_document} "
                f"ELSE (r.board_values #>> ARRAY['{compact}', {metric}])::float8 END")

    values = ", ".join(f"{read(doc, part, f'%(m{i})s')} AS v{i}" for i in range(len(metrics)))
    params: dict = {"benchmark": benchmark_id, "succeeded": RunStatus.SUCCEEDED.value, "at": at,
                    **{f"m{i}": m for i, m in enumerate(metrics)}}
    when = " AND r.finished_at <= %(at)s AND (r.metrics_history IS NULL OR r.metrics_history = '[]'::jsonb)" \
        if at is not None else ""
    if phase is not None:
        params.update(phase=phase.phase_id, unphased=phase.unphased)
        when += " AND (r.phase_id = %(phase)s OR (%(unphased)s AND r.phase_id IS NULL))"
    # the numbers first, then the submission's flags: the join then carries slim rows, not documents
    # a public board's primary metric is the public one: read once
    public = f", {read('r.metrics', 'public', '%(m0)s')} AS public" if private else ""
    numbers = (f"SELECT r.id, r.submission_id, r.owner, r.finished_at, r.final, {values}{public} FROM run r "
               f"WHERE r.benchmark_id = %(benchmark)s AND r.status = %(succeeded)s{when} OFFSET 0")
    columns = ", ".join(f"n.v{i}" for i in range(len(metrics)))
    team = "CASE WHEN s.team_id IS NOT NULL AND NOT s.baseline THEN s.team_id::text END" if teams else "NULL::text"
    # NOTE: a run's submission is of the run's benchmark (runs.create_or_get_run): the join reads that benchmark's only
    pool = (f"SELECT t.*, COALESCE('team:' || t.team, t.owner) AS entrant FROM ("
            f"SELECT n.id::text AS id, n.owner, {team} AS team, n.finished_at, n.final, s.baseline, s.name, "
            f"{columns}, n.{'public' if private else 'v0'} AS public FROM ({numbers}) n "
            f"JOIN submission s ON s.id = n.submission_id AND s.benchmark_id = %(benchmark)s) t")
    return pool, params


def order_sql(column: str, direction: str) -> str:
    return f"{column} {'DESC' if direction == 'maximize' else 'ASC'} NULLS LAST"


def entrant_of(row: Sequence, count: int) -> Entrant:
    """An Entrant from a row whose first columns are the pool's (`count` ranked metrics)."""
    return Entrant(row[0], row[1], row[8 + count], row[2], row[3], row[4], row[5], row[6], tuple(row[7:7 + count]),
                   row[7 + count])


def _select(benchmark_id: str, metrics: Sequence[str], directions: Sequence[str], *, private: bool,
            finals: bool, at: datetime.datetime | None, teams: bool, phase: PhaseRuns | None) -> list[Entrant]:
    """The SQL pre-selection: baselines, and each entrant's best run (DISTINCT ON the entrant)."""
    pool, params = pool_sql(benchmark_id, metrics, private=private, at=at, teams=teams, phase=phase)
    if finals:  # final selections, and each participant's best public run (theirs when they chose none)
        parts = [f"SELECT DISTINCT ON (entrant) * FROM pool WHERE NOT baseline AND public IS NOT NULL "
                 f"ORDER BY entrant, {order_sql('public', directions[0])}, finished_at, id",
                 "SELECT * FROM pool WHERE NOT baseline AND final"]
    else:
        ranks = ", ".join(order_sql(f"v{i}", d) for i, d in enumerate(directions))
        parts = [f"SELECT DISTINCT ON (entrant) * FROM pool WHERE NOT baseline AND v0 IS NOT NULL "
                 f"ORDER BY entrant, {ranks}, finished_at, id"]
    parts.append("SELECT * FROM pool WHERE baseline")
    union = " UNION ALL ".join(f"({part})" for part in parts)
    # in completion order, equal times by run id (as _completion orders them: "C" compares code points)
    sql = f'WITH pool AS ({pool}) SELECT * FROM ({union}) chosen ORDER BY finished_at NULLS LAST, id COLLATE "C"'
    cursor = database.execute_sql(sql, params)
    count = len(metrics)
    return [entrant_of(row, count) for row in cursor.fetchall()]
