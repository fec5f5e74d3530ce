"""The metric families this platform records as things happen (the scrape-time ones are in scrape.py).

Import only through evaluator.observability.record, after folders.use_folder()
in a long-running process: the first import of prometheus_client fixes whether
samples go to this host's files (summed over processes) or stay in memory.
"""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Histogram

# In memory, this process only: what /metrics shows where no sample folder is in use (tests in one process).
LOCAL = CollectorRegistry(auto_describe=True)

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                 float("inf"))

HTTP_REQUESTS = Counter("evaluator_http_requests", "API requests answered, by method, route template and status.",
                        ["method", "route", "status"], registry=LOCAL)
HTTP_DURATION = Histogram("evaluator_http_request_duration_seconds",
                          "Seconds from a request's arrival at the app to its response, by method and route template.",
                          ["method", "route"], buckets=HTTP_BUCKETS, registry=LOCAL)
INTAKE_EVENTS = Counter("evaluator_intake_events",
                        "Object-created events taken in (webhook, SQS, reconciler): outcome new, duplicate or ignored.",
                        ["outcome", "kind"], registry=LOCAL)
RUN_STAGE = Histogram("evaluator_run_stage_duration_seconds",
                      "Seconds each step of a run's last attempt took, observed when the run ends "
                      "(queued, staging, sandbox_ready, predicting, scoring, publishing, and total).",
                      ["stage"], buckets=STAGE_BUCKETS, registry=LOCAL)
RUN_FAILURES = Counter("evaluator_run_failures", "Runs that ended with a failure code, by code.", ["code"],
                       registry=LOCAL)
RUNS_FINISHED = Counter("evaluator_runs_finished", "Runs that reached a final state, by status.", ["status"],
                        registry=LOCAL)


def failure_codes() -> list[str]:
    """Every code a run can fail with: the RunFailure classes' codes, and `internal` (the platform's side)."""
    from evaluator.errors import RunFailure

    codes, pending = {"internal"}, list(RunFailure.__subclasses__())
    while pending:
        kind = pending.pop()
        codes.add(kind.code)
        pending.extend(kind.__subclasses__())
    return sorted(codes)


def _known_series() -> None:
    """Create the series of every known label value at 0, so a family is there before its first event."""
    from evaluator.stages import StageDurations
    from evaluator.storage.models import TERMINAL_RUN_STATUSES

    for outcome, kind in (("new", "run"), ("duplicate", "run"), ("new", "dataset"), ("duplicate", "dataset"),
                          ("ignored", "other")):
        INTAKE_EVENTS.labels(outcome, kind)
    for status in sorted(s.value for s in TERMINAL_RUN_STATUSES):
        RUNS_FINISHED.labels(status)
    for code in failure_codes():
        RUN_FAILURES.labels(code)
    for stage in (field.name for field in dataclasses.fields(StageDurations)):
        RUN_STAGE.labels(stage)


_known_series()
