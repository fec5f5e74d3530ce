"""Record samples from the code where things happen; a metrics failure never fails the request or the run.

The families are imported on first use, so importing this module costs nothing
and never fixes prometheus_client's mode before an entry point chose its folder.
"""

from __future__ import annotations

import logging
from typing import Iterable

from evaluator.stages import stage_durations

logger = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request(method: str, route: str, status: int | str, seconds: float) -> None:
    """One API request answered (route: the URI template, so ids never become labels)."""
    try:
        from evaluator.observability import families

        method = method if method in _METHODS else "other"
        families.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        families.HTTP_DURATION.labels(method, route).observe(max(seconds, 0.0))
    except Exception:  # noqa: BLE001 - a sample that cannot be written is logged, the request goes on
        logger.warning("Could not record a request sample", exc_info=True)


def intake(outcomes: Iterable[tuple[str, str]]) -> None:
    """Events taken in, as (outcome, kind): outcome new, duplicate or ignored; kind run, dataset or other."""
    try:
        from evaluator.observability import families

        for outcome, kind in outcomes:
            families.INTAKE_EVENTS.labels(outcome, kind).inc()
    except Exception:  # noqa: BLE001 - see request()
        logger.warning("Could not record intake samples", exc_info=True)


def run_ended(status: str, failure_code: str | None, provenance: dict | None) -> None:
    """A run reached its final state (once per run: the callers' compare-and-set decided it)."""
    try:
        from evaluator.observability import families

        families.RUNS_FINISHED.labels(status).inc()
        if failure_code:
            families.RUN_FAILURES.labels(failure_code).inc()
        for stage, seconds in stage_durations(provenance).items():
            families.RUN_STAGE.labels(stage).observe(seconds)
    except Exception:  # noqa: BLE001 - see request()
        logger.warning("Could not record the end of a run", exc_info=True)
