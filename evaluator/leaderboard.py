"""Leaderboard: the best run per participant, ranked by the primary metric then the tie-breakers.

While a benchmark is open everyone ranks on the public part of the labels;
after it closes (or for its managers) the private part decides, over each
participant's final selections (their best public run when they chose none).

Baselines (a manager's reference submissions) are listed among the entries at
their score, with no rank, and are not counted as participants. A board `at` an
instant is built from the runs finished by then, the metric documents they had
then (re-scores keep the earlier ones) and the rules then in force
(BenchmarkRevision); a participant's board in the frozen window is the board at
the freeze instant.

With settings.teams each team is one entrant: its entry is the best run made for it
(Submission.team, fixed when the run was submitted), named by the team; a participant
in no team competes alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import uuid
from collections.abc import Callable, Hashable, Sequence

from evaluator import (
    board_cache,
    board_window,
    competition,
    disclosure,
    entrants,
    honest_board,
    phases,
    scoring,
    standings,
)
from evaluator.board_window import Placed
from evaluator.row_store import RowStore, part_of
from evaluator.settings import CompetitionSettings
from evaluator.standings import Entrant
from evaluator.storage.models import Benchmark, BenchmarkRevision, Phase, isoformat, utcnow
from evaluator.tokens import Principal


@dataclasses.dataclass(frozen=True)
class Rules:
    """What ranks a board: the primary metric and the competition settings, as of some instant."""

    primary_metric: str
    settings: CompetitionSettings

    @classmethod
    def current(cls, benchmark: Benchmark) -> Rules:
        return cls(benchmark.primary_metric, CompetitionSettings.from_json(benchmark.settings))

    @classmethod
    def at(cls, benchmark: Benchmark, at: datetime.datetime) -> Rules:
        """The revision in force at `at` (the first one when `at` is before it; the row's when none)."""
        query = BenchmarkRevision.select().where(BenchmarkRevision.benchmark == benchmark.id)
        revision = (query.where(BenchmarkRevision.changed_at <= at)
                    .order_by(BenchmarkRevision.changed_at.desc(), BenchmarkRevision.id.desc()).first()
                    or query.order_by(BenchmarkRevision.changed_at, BenchmarkRevision.id).first())
        if revision is None:
            return cls.current(benchmark)
        return cls(revision.primary_metric, CompetitionSettings.from_json(revision.settings))

    @classmethod
    def of_phase(cls, benchmark: Benchmark, phase: Phase) -> Rules:
        """A phase ranks on its own primary metric and closes at its own close."""
        values = phases.effective(benchmark, phase)
        return cls(values.primary_metric, CompetitionSettings.from_json(values.settings))

    def closed(self, now: datetime.datetime) -> bool:
        closes = self.settings.closes_at
        return closes is not None and now >= datetime.datetime.fromisoformat(closes)


def _sort_key(values: Sequence[float], directions: list[str]) -> tuple:
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions))


def board_for(benchmark: Benchmark, principal: Principal | None, *, view: str | None = None,
              at: str | None = None, now: datetime.datetime | None = None, phase: Phase | None = None,
              offset: int = 0, limit: int | None = None, entrant: str | None = None,
              rows: RowStore | None = None) -> dict:
    """The board this caller may read: managers live and exact; others rounded, and frozen in the freeze window.

    `at` (ISO 8601, naive UTC) asks for the board as it stood then; a participant in the frozen
    window gets the board at the freeze instant for any later `at`.
    """
    now = now or utcnow()
    manager = competition.manages(benchmark, principal)
    asked = standings.parse_time(at)
    instant = min(asked, now) if asked is not None else None
    frozen = False
    if not manager:
        since = competition.frozen_since(benchmark, now)
        if since is not None and (instant is None or instant > since):
            instant, frozen = since, True
    if phase is not None:  # a phase's board: its runs, its rules, its close
        rules = Rules.of_phase(benchmark, phase)
        closed = rules.closed(instant or now) or competition.is_closed(benchmark, now)
    else:
        rules = Rules.at(benchmark, instant) if instant is not None else Rules.current(benchmark)
        closed = rules.closed(instant) if instant is not None else competition.is_closed(benchmark, now)
    private = closed or (view == "private" and manager)
    return build(benchmark, private=private, exact=manager, at=instant, frozen=frozen, rules=rules, phase=phase,
                 offset=offset, limit=limit, entrant=entrant, rows=rows)


def build(benchmark: Benchmark, *, private: bool, exact: bool = False, at: datetime.datetime | None = None,
          frozen: bool = False, rules: Rules | None = None, offset: int = 0, limit: int | None = None,
          entrant: str | None = None, phase: Phase | None = None, preselect: bool = True,
          rows: RowStore | None = None) -> dict:
    """Rank on exact values; show them exactly only when `exact` (managers), else rounded.

    Ranks are over the whole board; `offset`/`limit` window the entries shown (`total` counts them
    all), and `entrant` (a participant, or `team:<id>` as entrants.key names it) adds that entrant's
    own row as `mine`, wherever it falls. Where PostgreSQL can rank the board (evaluator.board_window) it
    does, and only the rows shown are read; else the best run per entrant (evaluator.standings) is ranked
    here. `preselect` False ranks every run in Python: the reference both SQL paths match.
    """
    shown = (lambda value: value) if exact else disclosure.coarsen
    rules = rules or (Rules.at(benchmark, at) if at is not None else Rules.current(benchmark))
    settings = rules.settings
    metrics = [rules.primary_metric, *settings.tie_breakers]
    directions = [scoring.direction(m) for m in metrics]
    use_finals = private and settings.final_selections > 0
    phase_runs = standings.PhaseRuns.of(benchmark.id, phase) if phase is not None else None
    scope = phases.effective(benchmark, phase)  # the dataset and task the rows are read with
    laddered = settings.ladder and not private and rows is not None
    level = settings.significance_level if rows is not None else 0.0

    def rank() -> tuple[list[Placed], int, dict, dict, dict[int, int]]:
        """Every entry in board order; the participants; the Ladder's steps per entrant; the paired tests'
        fields per run id and the ranks they share."""
        # NOTE: the Ladder reads every run of an entrant (in finish order), so it cannot pre-select the best
        runs = standings.entrants(benchmark.id, metrics, directions, private=private, finals=use_finals, at=at,
                                  teams=settings.teams, phase=phase_runs, preselect=preselect and not laddered)
        baselines = [run for run in runs if run.baseline]
        ranked = [run for run in runs if not run.baseline]
        candidates = _candidates(ranked, use_finals, directions)  # per entrant: a participant or a team

        # NOTE: per run of 10,000 on a cold board: one list, one key tuple, one lookup (as _sort_key orders)
        worst = [-math.inf if d == "maximize" else math.inf for d in directions]
        negate = [d == "maximize" for d in directions]

        def best_of(pool: list[Entrant], group: Callable[[Entrant], Hashable]) -> dict:
            best: dict = {}
            for run in pool:
                found = run.found
                if found[0] is None:
                    continue
                values = [w if v is None else v for v, w in zip(found, worst)]
                key = (*[-v if n else v for v, n in zip(values, negate)], run.finished_at)
                name = group(run)
                kept = best.get(name)
                if kept is None or key < kept[0]:
                    best[name] = (key, run, values)
            return best

        # equal keys (values and completion time) list by run id: the same order however the runs were read
        contenders = sorted(best_of(candidates, lambda run: run.entrant).values(),
                            key=lambda item: (item[0], item[1].id))
        steps: dict = {}
        if laddered and rows is not None:  # each entrant's Ladder score, carried by the run that set it
            received = sorted(candidates, key=lambda run: (run.finished_at, run.id))
            steps = honest_board.ladder_steps(scope, received, metric=metrics[0], part=part_of(scope, False),
                                              rows=rows, value_of=lambda run: run.found[0],
                                              group=lambda run: run.entrant)
            contenders = _ladder_contenders(contenders, candidates, steps, directions)
        references = best_of(baselines, lambda run: (run.owner, run.name)).values()
        listed: list[tuple] = []
        rank, previous = 0, None
        for position, (key, run, values) in enumerate(contenders, start=1):
            if key[:-1] != previous:  # equal on every ranked metric: an equal rank
                rank, previous = position, key[:-1]
            listed.append((key, 0, rank, run, values))
        if references:  # the ranked entries are in this order already
            listed += [(key, 1, None, run, values) for key, run, values in references]
            listed.sort(key=lambda item: (*item[:2], item[3].id))  # a baseline sits after an equal ranked entry
        placed = [Placed(kind, rank, run, values) for _, kind, rank, run, values in listed]
        return (placed, len(contenders), steps, *tested([item for item in placed if item.kind == 0][:top]))

    def ranked_in_sql() -> tuple[board_window.Window, dict, dict[int, int]]:
        """The rows this request shows, ranked in PostgreSQL (evaluator.board_window); the paired tests."""
        found = board_window.window(benchmark.id, metrics, directions, private=private, finals=use_finals, at=at,
                                    teams=settings.teams, phase=phase_runs, offset=offset, limit=limit,
                                    entrant=entrant, top=top)
        return (found, *tested(found.top))

    def tested(first: list[Placed]) -> tuple[dict, dict[int, int]]:
        """The paired tests' fields per run id, and the ranks they share: {rank as ordered: rank shown}.

        A rank moves with every entry that has it (honest_board.tie_ranks moves an exact tie along), so
        the map read from the first entries holds for any entry of the board."""
        if not (level and rows is not None and first):
            return {}, {}
        order = [(item.rank or 0, item.run.id) for item in first]  # ranked entries: each has a rank
        ranks, tests = honest_board.tie_ranks(scope, order, metric=metrics[0], part=part_of(scope, private),
                                              level=level, rows=rows)
        return tests, {rank: ranks[run_id] for rank, run_id in order if ranks[run_id] != rank}

    # NOTE: the ranking is kept while the benchmark's succeeded runs are unchanged (evaluator.board_cache): the
    # live board and the frozen one; a board `at` any other instant is computed each time (no key per instant)
    kept = preselect and (at is None or frozen)
    top = honest_board.TOP_PAIRS + 1 if level else 0
    inputs = (rules, private, at, phase_runs, laddered, level)
    steps: dict = {}
    if preselect and not laddered and board_window.applies(benchmark.id, at, phase_runs):
        found, tests, moved = (board_cache.remember(benchmark.id, (*inputs, offset, limit, entrant), ranked_in_sql,
                                                    board_cache.WINDOWS) if kept else ranked_in_sql())
        window, mine, total, participants = found.rows, found.mine, found.total, found.participants
    else:
        listed, participants, steps, tests, moved = (
            board_cache.remember(benchmark.id, inputs, rank) if kept else rank())
        window, total = listed[offset:None if limit is None else offset + limit], len(listed)
        mine = next((item for item in listed if item.run.entrant == entrant), None) if entrant is not None else None
    shown_runs = [item.run for item in [*window, *([mine] if mine else [])]]
    intervals = standings.intervals([run.id for run in shown_runs], private, at)
    team_names = {str(team): name for team, name in
                  entrants.names(uuid.UUID(run.team) for run in shown_runs if run.team).items()}

    def entry(item: Placed) -> dict:
        _, rank, run, values = item
        if item.kind == 0:
            rank = moved.get(rank, rank)  # type: ignore[arg-type]  # a ranked entry has a rank
        team = run.team
        return {
            "rank": rank, "participant": team_names[team] if team else run.owner, "score": shown(values[0]),
            # NOTE: a missing tie-breaker ranks last (None, or an infinity) but reads as null: JSON has no Infinity
            "tie_breakers": shown({m: v if v is not None and math.isfinite(v) else None
                                   for m, v in zip(metrics[1:], values[1:])}),
            "ci": shown(intervals.get(run.id)),
            "run_id": run.id, "final": run.final, "finished_at": isoformat(run.finished_at),
            "baseline": run.baseline, "name": run.name if run.baseline else None,
            "team": {"id": team, "name": team_names[team]} if team else None, "submitted_by": run.owner,
            **tests.get(run.id, honest_board.UNTESTED),
            **_ladder_fields(steps.get(run.entrant) if not run.baseline else None, exact),
        }

    board = {
        "benchmark": benchmark.id,
        "view": "private" if private else "public",
        "closed": (rules.closed(at or utcnow()) or competition.is_closed(benchmark)) if phase is not None
        else rules.closed(at) if at is not None else competition.is_closed(benchmark),
        "phase": phase.slug if phase is not None else None,
        "at": isoformat(at),
        "frozen": frozen,
        "participants": participants,
        "rules": {
            "metric": rules.primary_metric, "direction": scoring.direction(rules.primary_metric),
            "tie_breakers": [{"metric": m, "direction": d} for m, d in zip(metrics[1:], directions[1:])],
            "per_participant": "final selections (best public run if none)" if private and
            settings.final_selections else "best run",
            "ties": "equal on every ranked metric: equal rank; then earlier completion is listed first",
            "final_selections": settings.final_selections, "closes_at": settings.closes_at,
            "baselines": "a manager's reference entries: listed at their score, never ranked nor counted",
            "entrant": "team" if settings.teams else "participant",
            "significance": {"level": level, "test": "paired: McNemar mid-p for accuracy, else paired bootstrap",
                             "pairs_tested": f"adjacent ranked entries, the first {honest_board.TOP_PAIRS}",
                             "ties": "not significantly different from the entry above: the same rank"}
            if level else None,
            "ladder": laddered,
        },
        "total": total, "offset": offset, "limit": limit,
        "entries": [entry(item) for item in window],
    }
    if entrant is not None:
        board["mine"] = entry(mine) if mine is not None else None
    return board


def _candidates(runs: list[Entrant], use_finals: bool, directions: list[str]) -> list[Entrant]:
    """Each entrant's final selections, or its best public run when it chose none (private boards)."""
    if not use_finals:
        return runs
    chosen = [run for run in runs if run.final]
    with_choice = {run.entrant for run in chosen}
    fallback: dict[str, Entrant] = {}
    for run in runs:
        value = run.public
        if run.entrant in with_choice or value is None:
            continue
        key = _sort_key([value], directions[:1])
        kept = fallback.get(run.entrant)  # a kept run has a value
        if kept is None or key < _sort_key([kept.public or 0.0], directions[:1]):
            fallback[run.entrant] = run
    return chosen + list(fallback.values())


def _ladder_contenders(contenders: list, candidates: list[Entrant], steps: dict, directions: list[str]) -> list:
    """Contenders re-keyed on each entrant's Ladder score, with the run that set it (its tie-breakers)."""
    by_id = {run.id: run for run in candidates}
    out = []
    for key, run, values in contenders:
        last = steps.get(run.entrant)
        if not last:
            out.append((key, run, values))
            continue
        best = by_id[last[-1].best_run_id]
        rest = [v if v is not None else (-math.inf if d == "maximize" else math.inf) for v, d in
                zip(best.found[1:], directions[1:])]
        ladder_values = [last[-1].score, *rest]
        out.append((_sort_key(ladder_values, directions) + (best.finished_at,), best, ladder_values))
    return sorted(out, key=lambda item: (item[0], item[1].id))


def _ladder_fields(steps: list | None, exact: bool) -> dict:
    """An entry's Ladder part: its score at the threshold's precision for participants (exact for managers)."""
    if not steps:
        return {"ladder": None}
    last = steps[-1]
    fields = {"ladder": {"threshold": last.threshold if exact else round(last.threshold, 4),
                         "decimals": last.decimals, "submissions": len(steps),
                         "accepted": sum(1 for step in steps if step.accepted)}}
    if not exact:
        fields["score"] = last.shown
    return fields
