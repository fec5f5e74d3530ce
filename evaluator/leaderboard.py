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

With a RowStore (`rows`), evaluator.honest_board adds what needs the runs' per-row predictions: the
Ladder's public scores (settings.ladder) and ranks shared where adjacent entries are not significantly
different (settings.significance_level).

With settings.teams each team is one entrant: its entry is the best run made for it
(Submission.team, fixed when the run was submitted), named by the team; a participant
in no team competes alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence

from evaluator import competition, disclosure, entrants, honest_board, phases, scoring
from evaluator.row_store import RowStore, part_of
from evaluator.settings import CompetitionSettings
from evaluator.storage.models import (
    Benchmark,
    BenchmarkRevision,
    Phase,
    Run,
    RunStatus,
    Submission,
    isoformat,
    utcnow,
)
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


def _value(document: dict | None, metric: str) -> float | None:
    value = ((document or {}).get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _documents_at(run: Run, at: datetime.datetime | None) -> tuple[dict | None, dict | None]:
    """(metrics, private_metrics) the run had at `at`: the first document replaced after it, else the current."""
    if at is not None:
        for earlier in run.metrics_history or []:
            replaced = _parse(earlier.get("replaced_at"))
            if replaced is not None and replaced > at:
                return earlier.get("metrics"), earlier.get("private_metrics")
    return run.metrics, run.private_metrics


def _document(run: Run, private: bool, at: datetime.datetime | None = None) -> dict | None:
    public_doc, private_doc = _documents_at(run, at)
    return (private_doc or public_doc) if private else public_doc


def _sort_key(values: Sequence[float], directions: list[str]) -> tuple:
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions))


def board_for(benchmark: Benchmark, principal: Principal | None, *, view: str | None = None,
              at: str | None = None, now: datetime.datetime | None = None, phase: Phase | None = None,
              rows: RowStore | None = None) -> dict:
    """The board this caller may read: managers live and exact; others rounded, and frozen in the freeze window.

    `at` (ISO 8601, naive UTC) asks for the board as it stood then; a participant in the frozen
    window gets the board at the freeze instant for any later `at`.
    """
    now = now or utcnow()
    manager = competition.manages(benchmark, principal)
    asked = _parse(at)
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
                 rows=rows)


def build(benchmark: Benchmark, *, private: bool, exact: bool = False, at: datetime.datetime | None = None,
          frozen: bool = False, rules: Rules | None = None, phase: Phase | None = None,
          rows: RowStore | None = None) -> dict:
    """Rank on exact values; show them exactly only when `exact` (managers), else rounded."""
    shown = (lambda value: value) if exact else disclosure.coarsen
    rules = rules or (Rules.at(benchmark, at) if at is not None else Rules.current(benchmark))
    settings = rules.settings
    metrics = [rules.primary_metric, *settings.tie_breakers]
    directions = [scoring.direction(m) for m in metrics]
    query = (Run.select(Run, Submission).join(Submission)
             .where((Run.benchmark == benchmark.id) & (Run.status == RunStatus.SUCCEEDED.value))
             .order_by(Run.finished_at))
    if at is not None:
        query = query.where(Run.finished_at <= at)
    if phase is not None:
        query = query.where(phases.runs_in(benchmark, phase))
    runs = list(query)
    baselines = [run for run in runs if run.submission.baseline]
    ranked = [run for run in runs if not run.submission.baseline]

    def entrant(run: Run) -> str:
        return entrants.key(run.submission, settings.teams)

    candidates = _candidates(ranked, private and settings.final_selections > 0, metrics, directions, at,
                             group=entrant)

    def best_of(pool: list[Run], group) -> dict:
        best: dict = {}
        for run in pool:
            found = [_value(_document(run, private, at), m) for m in metrics]
            if found[0] is None:
                continue
            values = [v if v is not None else (-math.inf if d == "maximize" else math.inf) for v, d in
                      zip(found, directions)]
            key = _sort_key(values, directions) + (run.finished_at,)
            if group(run) not in best or key < best[group(run)][0]:
                best[group(run)] = (key, run, values)
        return best

    contenders = sorted(best_of(candidates, entrant).values(), key=lambda item: item[0])
    steps: dict = {}
    if settings.ladder and not private and rows is not None:  # the Ladder's score, from the run that set it
        steps = honest_board.ladder_steps(phases.effective(benchmark, phase), candidates, metric=metrics[0],
                                          part=part_of(benchmark, False),
                                          rows=rows, value_of=lambda run: _value(_document(run, False, at),
                                                                                 metrics[0]), group=entrant)
        contenders = _ladder_contenders(contenders, candidates, steps, metrics, directions, at, entrant)
    team_names = entrants.names(run.submission.team_id for _, run, _ in contenders) if settings.teams else {}
    references = best_of(baselines, lambda run: (run.owner, run.submission.name)).values()

    def entry(rank: int | None, run: Run, values: list[float]) -> dict:
        document = _document(run, private, at) or {}
        team = run.submission.team_id if settings.teams and not run.submission.baseline else None
        return {
            "rank": rank, "participant": team_names[team] if team else run.owner, "score": shown(values[0]),
            # NOTE: a missing tie-breaker ranks last (an infinity) but reads as null: JSON has no Infinity
            "tie_breakers": shown({m: v if math.isfinite(v) else None for m, v in zip(metrics[1:], values[1:])}),
            "ci": shown((document.get("primary_metric") or {}).get("ci")),
            "run_id": str(run.id), "final": run.final, "finished_at": isoformat(run.finished_at),
            "baseline": run.submission.baseline, "name": run.submission.name if run.submission.baseline else None,
            "team": {"id": str(team), "name": team_names[team]} if team else None, "submitted_by": run.owner,
            **_ladder_fields(steps.get(entrant(run)) if not run.submission.baseline else None, exact),
        }

    listed, rank, previous = [], 0, None
    for position, (key, run, values) in enumerate(contenders, start=1):
        if key[:-1] != previous:  # equal on every ranked metric: an equal rank
            rank, previous = position, key[:-1]
        listed.append((key, 0, entry(rank, run, values)))
    listed += [(key, 1, entry(None, run, values)) for key, run, values in references]
    listed.sort(key=lambda item: item[:2])  # a baseline sits at its score, after an equal ranked entry
    entries = [honest_board.defaults(item) for _, _, item in listed]
    level = settings.significance_level
    if level and rows is not None:
        honest_board.mark_ties(phases.effective(benchmark, phase), entries, metric=metrics[0],
                               part=part_of(benchmark, private),
                               level=level, rows=rows)
    return {
        "benchmark": benchmark.id,
        "view": "private" if private else "public",
        "closed": (rules.closed(at or utcnow()) or competition.is_closed(benchmark)) if phase is not None
        else rules.closed(at) if at is not None else competition.is_closed(benchmark),
        "phase": phase.slug if phase is not None else None,
        "at": isoformat(at),
        "frozen": frozen,
        "participants": len(contenders),
        "rules": {
            "metric": rules.primary_metric, "direction": scoring.direction(rules.primary_metric),
            "tie_breakers": [{"metric": m, "direction": d} for m, d in zip(metrics[1:], directions[1:])],
            "per_participant": "final selections (best public run if none)" if private and
            settings.final_selections else "best run",
            "ties": "equal on every ranked metric: equal rank; then earlier completion is listed first",
            "final_selections": settings.final_selections, "closes_at": settings.closes_at,
            "baselines": "a manager's reference entries: listed at their score, never ranked nor counted",
            "significance": {"level": level, "test": "paired: McNemar mid-p for accuracy, else paired bootstrap",
                             "pairs_tested": f"adjacent ranked entries, the first {honest_board.TOP_PAIRS}",
                             "ties": "not significantly different from the entry above: the same rank"}
            if level else None,
            "ladder": settings.ladder and not private,
            "entrant": "team" if settings.teams else "participant",
        },
        "entries": entries,
    }


def _candidates(runs: list[Run], use_finals: bool, metrics: list[str], directions: list[str],
                at: datetime.datetime | None = None, group: Callable[[Run], str] = lambda run: run.owner) -> list[Run]:
    """Each entrant's final selections, or its best public run when it chose none (`group` names entrants)."""
    if not use_finals:
        return runs
    chosen = [run for run in runs if run.final]
    owners_with_choice = {group(run) for run in chosen}
    fallback: dict[str, Run] = {}

    def primary(run: Run) -> float | None:
        return _value(_document(run, False, at), metrics[0])

    for run in runs:
        value = primary(run)
        if group(run) in owners_with_choice or value is None:
            continue
        key = _sort_key([value], directions[:1])
        kept = fallback.get(group(run))  # a kept run has a value
        if kept is None or key < _sort_key([primary(kept) or 0.0], directions[:1]):
            fallback[group(run)] = run
    return chosen + list(fallback.values())


def _ladder_contenders(contenders: list, candidates: list[Run], steps: dict, metrics: list[str],
                       directions: list[str], at: datetime.datetime | None, group: Callable[[Run], str]) -> list:
    """Contenders re-keyed on each participant's Ladder score, with the run that set it."""
    by_id = {str(run.id): run for run in candidates}
    out = []
    for key, run, values in contenders:
        last = steps.get(group(run))
        if not last:
            out.append((key, run, values))
            continue
        best = by_id[last[-1].best_run_id]
        found = [_value(_document(best, False, at), m) for m in metrics[1:]]
        rest = [v if v is not None else (-math.inf if d == "maximize" else math.inf) for v, d in
                zip(found, directions[1:])]
        ladder_values = [last[-1].score, *rest]
        out.append((_sort_key(ladder_values, directions) + (best.finished_at,), best, ladder_values))
    return sorted(out, key=lambda item: item[0])


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
