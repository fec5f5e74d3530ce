"""What each page shows, as plain data: built from the same functions the JSON resources call.

Visibility and rounding are never decided here: benchmarks.visible_to / get_benchmark,
runs.get_run, api.runs.shape (runs.serialize), leaderboard.board_for and competition.log_view
decide them, exactly as for the API, so a page and the JSON it mirrors cannot disagree.
"""

from __future__ import annotations

import datetime
import re

import markupsafe
import peewee

from evaluator import (
    benchmarks,
    competition,
    datasets,
    entrants,
    leaderboard,
    phases,
    quotas,
    run_plots,
    runs,
    submissions,
)
from evaluator.api.runs import shape as shape_run
from evaluator.config import Config
from evaluator.errors import EvaluatorError
from evaluator.row_store import RowStore
from evaluator.settings import settings_of
from evaluator.storage.blobs import BlobStore
from evaluator.storage.db import rows as db_rows
from evaluator.storage.models import TERMINAL_RUN_STATUSES, Benchmark, Dataset, Run, Submission
from evaluator.tokens import Principal

STAGES = ("created", "queued", "preparing", "running", "scoring", "finished")
BOARD_PAGE = 100  # leaderboard rows per page (the JSON endpoint's default page too)
RUNS_PAGE = 50
LOG_PAGE_BYTES = 64 * 1024  # what a page shows of a log (the sandbox already caps it)
# Controls other than newline and tab, and the bidi/format characters that reorder what a browser shows.
_LOG_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def participant_counts(benchmark_ids: list[str]) -> dict[str, int]:
    """Distinct participants who submitted to each benchmark (one grouped query)."""
    if not benchmark_ids:
        return {}
    rows = (Submission.select(Submission.benchmark, peewee.fn.COUNT(Submission.owner.distinct()))
            .where(Submission.benchmark.in_(benchmark_ids)).group_by(Submission.benchmark).tuples())
    return {benchmark_id: count for benchmark_id, count in db_rows(rows)}


def benchmark_rows(principal: Principal | None) -> list[dict]:
    """The home page's table: what GET /v1/benchmarks lists for this caller, with sizes and participants."""
    rows = list(benchmarks.visible_to(principal).select(Benchmark, Dataset).join(Dataset))
    counts = participant_counts([b.id for b in rows])
    return [{**benchmarks.serialize(b), "rows": b.dataset.row_count, "participants": counts.get(b.id, 0)}
            for b in rows]


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def timeline(timestamps: dict, attempts: list[dict]) -> dict:
    """The stage timeline: each stage reached, when, and how long until the next one; then each attempt's."""
    reached = [(stage, timestamps.get(stage)) for stage in STAGES if timestamps.get(stage)]
    stages = []
    for index, (stage, at) in enumerate(reached):
        after = _parse(reached[index + 1][1]) if index + 1 < len(reached) else None
        began = _parse(at)
        stages.append({"stage": stage, "at": at,
                       "seconds": (after - began).total_seconds() if after and began else None})
    tries = []
    for attempt in attempts:
        if not isinstance(attempt, dict):
            continue
        began, ended = _parse(attempt.get("preparing_at")), _parse(attempt.get("ended_at"))
        tries.append({"attempt": attempt.get("attempt"), "worker": attempt.get("worker"),
                      "stages": [(s, attempt.get(f"{s}_at")) for s in ("preparing", "running", "scoring")
                                 if attempt.get(f"{s}_at")],
                      "ended_at": attempt.get("ended_at"), "outcome": attempt.get("outcome"),
                      "seconds": (ended - began).total_seconds() if began and ended else None})
    return {"stages": stages, "attempts": tries}


def visible_log(log: bytes) -> str:
    """A log as text a page may show: decoded, capped, control and bidi characters escaped visibly."""
    text = log[-LOG_PAGE_BYTES:].decode("utf-8", errors="replace")
    return _LOG_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                           else f"\\u{ord(m.group()):04x}", text)


def run_log(run: Run, benchmark: Benchmark, principal: Principal, *, config: Config,
            blobs: BlobStore) -> tuple[str | None, str | None]:
    """(log text, why it is not shown): the API's log policy (competition.log_view) decides."""
    if not run.results_prefix:
        return None, "no log yet"
    try:
        log = blobs.get_bytes(config.results_bucket, run.results_prefix + "sandbox.log")
        return visible_log(competition.log_view(benchmark, principal, log)), None
    except EvaluatorError as ex:
        return None, ex.message


def _ordered(values: dict, order: list[str]) -> dict:
    """Metrics in the benchmark's order, the primary first (jsonb keeps no order), others after."""
    rank = {name: index for index, name in enumerate(dict.fromkeys(order))}
    return dict(sorted(values.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def run_page(run: Run, principal: Principal, *, config: Config, blobs: BlobStore) -> dict:
    """Everything the run page shows; the run document is GET /v1/runs/{id}'s for this caller."""
    benchmark = Benchmark.get_by_id(run.benchmark_id)
    document = shape_run(run, principal)
    metrics = document["metrics"] or {}
    log, log_note = run_log(run, benchmark, principal, config=config, blobs=blobs)
    return {
        "run": document,
        "benchmark": benchmarks.serialize(benchmark),
        "manager": competition.manages(benchmark, principal),
        "timeline": timeline(document["timestamps"], (document["provenance"] or {}).get("attempts") or []),
        "metrics": _ordered(metrics.get("metrics") or {}, [benchmark.primary_metric, *benchmark.metrics]),
        "primary": metrics.get("primary_metric") or {},
        "interval": interval((metrics.get("primary_metric") or {}).get("ci")),
        "per_class": metrics.get("per_class") or {},
        "private_metrics": ((document["private_metrics"] or {}).get("metrics") or {}),
        "log": log, "log_note": log_note,
        "provenance": {k: v for k, v in (document["provenance"] or {}).items() if k != "attempts"},
        "ended": document["status"] in {s.value for s in TERMINAL_RUN_STATUSES},
        **plots_view(run, principal, config=config, blobs=blobs),
    }


def plots_view(run: Run, principal: Principal, *, config: Config, blobs: BlobStore) -> dict:
    """The run's plots for the page: the caller's variant (run_plots decides it, as for the API), inline SVG.

    NOTE: the SVG is the platform's own (evaluator.plots draws it from scored counts, text escaped by
    matplotlib's writer), so it is marked safe; nothing in it comes from the participant but numbers.
    """
    plots, drawn = run_plots.inline_plots(run, principal, blobs=blobs, bucket=config.results_bucket)
    return {"plots": [{"name": entry.name, "title": entry.title, "svg": markupsafe.Markup(svg.decode("utf-8"))}
                      for entry, svg in drawn],
            "plots_exact": plots.exact, "plots_min_bin_rows": plots.min_bin_rows, "plots_pending": plots.pending}


def interval(ci: object) -> tuple[float, float] | None:
    """(low, high) of a metrics document's bootstrap interval ({low, high, level, ...}); None without one."""
    if not isinstance(ci, dict):
        return None
    low, high = ci.get("low"), ci.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers:
        return None
    low_f, high_f = float(low), float(high)  # type: ignore[arg-type]  # both numbers, checked above
    return min(low_f, high_f), max(low_f, high_f)


def _ci_bars(entries: list[dict]) -> dict:
    """One scale for every row's 95% CI bar: the lowest and highest of the scores and interval ends shown."""
    for entry in entries:
        entry["interval"] = interval(entry["ci"])
    values = [v for e in entries for v in [e["score"], *(e["interval"] or ())] if isinstance(v, (int, float))]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span = (high - low) or 1.0

    def at(value: float) -> float:
        return round(4 + 152 * (value - low) / span, 2)  # an SVG 160 wide, 4 of margin each side

    for entry in entries:
        ci = entry["interval"]
        entry["bar"] = None if ci is None else {
            "x": at(ci[0]), "width": max(at(ci[1]) - at(ci[0]), 1.0),
            "point": at(entry["score"]) if isinstance(entry["score"], (int, float)) else None}
    return {"low": low, "high": high}


def entry_counts(benchmark_id: str, keys: set[str], teams: bool = False) -> dict[str, dict]:
    """Per listed entrant (a participant, or with `teams` a team): how many submissions, the first and last
    (Kaggle's "entries" and "last"); keyed as entrants.key names them. Only the listed entrants' rows are read."""
    owners = [key for key in keys if not key.startswith("team:")]
    team_ids = [key[len("team:"):] for key in keys if key.startswith("team:")]
    if not keys:
        return {}
    rows = (Submission.select(Submission.owner, Submission.team, peewee.fn.COUNT(peewee.SQL("*")),
                              peewee.fn.MIN(Submission.created_at), peewee.fn.MAX(Submission.created_at))
            .where((Submission.benchmark == benchmark_id)
                   & (Submission.owner.in_(owners) | Submission.team.in_(team_ids)))
            .group_by(Submission.owner, Submission.team).tuples())
    counts: dict[str, dict] = {}
    for owner, team, count, first, last in db_rows(rows):
        key = f"team:{team}" if teams and team is not None else owner
        kept = counts.setdefault(key, {"submissions": 0, "first": first, "last": last})
        kept.update(submissions=kept["submissions"] + count, first=min(kept["first"], first),
                    last=max(kept["last"], last))
    return counts


def _entrant(entry: dict) -> str:
    """An entry's entrant, as entry_counts keys it."""
    return f"team:{entry['team']['id']}" if entry.get("team") else entry["participant"]


def submission_totals(benchmark_id: str, teams: bool = False) -> dict:
    """The benchmark's entrants (participants, or with `teams` teams and those alone) and submissions, and its
    first and last submission (one aggregate)."""
    team = peewee.Value("team:").concat(peewee.Cast(Submission.team, "text"))
    entrant = peewee.Case(None, [(Submission.team.is_null(False), team)], Submission.owner) if teams \
        else Submission.owner
    query = (Submission.select(peewee.fn.COUNT(entrant.distinct()), peewee.fn.COUNT(peewee.SQL("*")),
                               peewee.fn.MIN(Submission.created_at), peewee.fn.MAX(Submission.created_at))
             .where(Submission.benchmark == benchmark_id).tuples())
    participants, count, first, last = next(iter(db_rows(query)))
    return {"participants": participants, "submissions": count, "first": first, "last": last}


def benchmark_page(benchmark_id: str, principal: Principal | None, *, view: str | None, page: int,
                   rows: RowStore | None = None) -> dict:
    """The benchmark page: its rules and one page of the leaderboard GET /v1/benchmarks/{id}/leaderboard gives.

    The viewer's own row is added to every page it is not on.
    """
    benchmark = benchmarks.get_benchmark(benchmark_id, principal)
    teams = settings_of(benchmark).teams
    me = None
    if principal is not None:
        team = entrants.team_of(benchmark.id, principal.owner) if teams else None
        me = f"team:{team.id}" if team is not None else principal.owner  # the viewer's row: theirs, or their team's

    phase = phases.board_phase(benchmark, None, principal)  # the current phase's board, as the JSON's default

    def board_page(number: int) -> dict:  # the JSON endpoint's rule (api.benchmarks.leaderboard_for), one page
        return leaderboard.board_for(benchmark, principal, view=view, phase=phase, offset=(number - 1) * BOARD_PAGE,
                                     limit=BOARD_PAGE, entrant=me, rows=rows)

    page = max(page, 1)
    board = board_page(page)
    pages = max(1, -(-board["total"] // BOARD_PAGE))
    if page > pages:  # past the end: the last page
        page = pages
        board = board_page(page)
    teams = board["rules"].get("entrant") == "team"  # the rules the board was ranked with
    shown = [dict(e) for e in board["entries"]]
    mine = board.get("mine")
    if mine is not None and all(_entrant(e) != me for e in shown):
        shown.append(dict(mine))  # the viewer's own row, whatever the page
    scale = _ci_bars(shown)
    counts = entry_counts(benchmark.id, {_entrant(e) for e in shown}, teams)
    for entry in shown:
        entry.update(counts.get(_entrant(entry), {}))
        entry["yours"] = me is not None and _entrant(entry) == me
    totals = {**submission_totals(benchmark.id, teams), "ranked": board["total"]}
    document = benchmarks.serialize(benchmark)
    quota = quotas.state(benchmark, principal.owner).to_dict() if principal is not None else None
    return {"benchmark": document, "board": board, "entries": shown, "scale": scale, "page": page, "pages": pages,
            "totals": totals, "rows": benchmark.dataset.row_count, "quota": quota, "mine": mine,
            "manager": competition.manages(benchmark, principal)}


def _score(run: dict, metric: str):
    return ((run.get("metrics") or {}).get("metrics") or {}).get(metric)


def me_page(principal: Principal, *, page: int) -> dict:
    """My runs (GET /v1/runs for this caller, my own), my submissions without a run, my quotas, what I may submit to."""
    rows, total = runs.list_runs(principal, owner=principal.owner, limit=RUNS_PAGE,
                                 offset=(max(page, 1) - 1) * RUNS_PAGE)
    visible = list(benchmarks.visible_to(principal))
    by_id = {b.id: b for b in visible}
    my_runs = []
    for run in rows:
        shaped = shape_run(run, principal)
        benchmark = by_id.get(run.benchmark_id)
        metric = benchmark.primary_metric if benchmark is not None else None
        submission = Submission.get_by_id(run.submission_id)
        my_runs.append({**shaped, "metric": metric, "score": _score(shaped, metric) if metric else None,
                        "name": submission.name, "version": submission.version})
    waiting = [submissions.serialize(s) for s in
               Submission.select().where((Submission.owner == principal.owner) & ~peewee.fn.EXISTS(
                   Run.select(Run.id).where(Run.submission == Submission.id)))
               .order_by(Submission.created_at.desc()).limit(RUNS_PAGE)]
    quota_rows, open_benchmarks = [], []
    for benchmark in visible:
        quota_rows.append({"benchmark": benchmark.id, "title": benchmark.title,
                           **quotas.state(benchmark, principal.owner).to_dict()})
        try:
            competition.check_open(benchmark)
            open_benchmarks.append({"id": benchmark.id, "title": benchmark.title,
                                    "max_bytes": (benchmark.limits or {}).get("max_bundle_bytes")})
        except EvaluatorError:
            continue
    return {"runs": my_runs, "total": total, "page": max(page, 1), "pages": max(1, -(-total // RUNS_PAGE)),
            "waiting": waiting, "quotas": quota_rows, "open_benchmarks": open_benchmarks,
            "may_submit": principal.role in ("participant", "admin")}


def manage_page(principal: Principal, *, benchmark: str | None, status: str | None, page: int) -> dict:
    """Managers' page: the ready datasets they may build on, and every run GET /v1/runs shows them."""
    from evaluator import scoring

    ready = [datasets.serialize(d) for d in datasets.list_datasets(principal) if d.status == "ready"]
    rows, total = runs.list_runs(principal, benchmark=benchmark or None, status=status or None, limit=RUNS_PAGE,
                                 offset=(max(page, 1) - 1) * RUNS_PAGE)
    managed = [benchmarks.serialize(b) for b in benchmarks.visible_to(principal)
               if competition.manages(b, principal)]
    return {"datasets": ready, "runs": [shape_run(r, principal) for r in rows], "total": total,
            "page": max(page, 1), "pages": max(1, -(-total // RUNS_PAGE)), "managed": managed,
            "filter": {"benchmark": benchmark or "", "status": status or ""},
            "metrics": {task: scoring.metric_names(task) for task in benchmarks.TASKS},
            "visibilities": benchmarks.VISIBILITIES}


def benchmark_body(form: dict[str, str]) -> dict:
    """The create-benchmark form as the JSON body POST /v1/benchmarks takes (validated by the same model)."""
    body: dict = {key: form[key].strip() for key in ("id", "title", "dataset", "task", "primary_metric", "visibility")
                  if form.get(key, "").strip()}
    settings = {key: form[key].strip() for key in ("opens_at", "closes_at") if form.get(key, "").strip()}
    if settings:
        body["settings"] = settings
    if form.get("quota_limit", "").strip():
        limit = form["quota_limit"].strip()
        body["quota"] = {"limit": int(limit) if limit.isdigit() else limit,
                         "window": form.get("quota_window") or "utc_day"}
    return body
