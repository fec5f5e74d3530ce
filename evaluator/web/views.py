"""What each page shows, as plain data: built from the same functions the JSON resources call.

Visibility and rounding are never decided here: benchmarks.visible_to / get_benchmark,
runs.get_run, api.runs.shape (runs.serialize), leaderboard.build and competition.log_view
decide them, exactly as for the API, so a page and the JSON it mirrors cannot disagree.
"""

from __future__ import annotations

import datetime
import re

import markupsafe
import peewee

from evaluator import benchmarks, competition, run_plots
from evaluator.api.runs import shape as shape_run
from evaluator.config import Config
from evaluator.errors import EvaluatorError
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import TERMINAL_RUN_STATUSES, Benchmark, Dataset, Run, Submission
from evaluator.tokens import Principal

STAGES = ("created", "queued", "preparing", "running", "scoring", "finished")
LOG_PAGE_BYTES = 64 * 1024  # what a page shows of a log (the sandbox already caps it)
# Controls other than newline and tab, and the bidi/format characters that reorder what a browser shows.
_LOG_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def participant_counts(benchmark_ids: list[str]) -> dict[str, int]:
    """Distinct participants who submitted to each benchmark (one grouped query)."""
    if not benchmark_ids:
        return {}
    rows = (Submission.select(Submission.benchmark, peewee.fn.COUNT(Submission.owner.distinct()))
            .where(Submission.benchmark.in_(benchmark_ids)).group_by(Submission.benchmark).tuples())
    return {benchmark_id: count for benchmark_id, count in rows}


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
        "metrics": metrics.get("metrics") or {},
        "primary": metrics.get("primary_metric") or {},
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
            "plots_exact": plots.exact, "plots_min_bin_rows": plots.min_bin_rows}
