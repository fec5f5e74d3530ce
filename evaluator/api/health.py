"""Resources for /health and /metrics: reachability of each part, and request counters."""

from __future__ import annotations

import logging
from typing import Callable, Mapping

import falcon
import peewee

from evaluator.api.middleware import RequestMetrics
from evaluator.api.operations import ANYONE, TEXT, operation
from evaluator.contract import outputs
from evaluator.storage.db import rows
from evaluator.storage.models import OutboxMessage, Run, RunStatus, utcnow

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], None]  # raises when the part is down


class Health:
    auth = "none"

    def __init__(self, checks: Mapping[str, HealthCheck]) -> None:
        self._checks = checks

    @operation("getHealth", "Reachability of the database, broker and object store", tag="meta", access=ANYONE,
               responses={200: outputs.Health, 503: outputs.Health})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results: dict[str, dict[str, object]] = {}
        healthy = True
        for name, check in self._checks.items():
            try:
                check()
                results[name] = {"ok": True}
            except Exception as ex:  # noqa: BLE001 - a health probe reports any failure, it never raises
                logger.info("health check %s failed: %s", name, ex)
                results[name] = {"ok": False, "error": f"{type(ex).__name__}: {ex}"[:300]}
                healthy = False
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {"status": "ok" if healthy else "unavailable", "checks": results}


class Metrics:
    """Prometheus text: request counters of this process, and runs by status across the platform."""

    auth = "none"

    def __init__(self, metrics: RequestMetrics, database: peewee.Database) -> None:
        self._metrics = metrics
        self._database = database

    @operation("getMetrics", "Prometheus metrics: this process's requests, runs by status, recovery gauges",
               tag="meta", access=ANYONE, responses={200: TEXT})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lines = ["# TYPE evaluator_http_requests_total counter"]
        with self._metrics.lock:
            for (method, route, status), count in sorted(self._metrics.requests.items()):
                labels = f'method="{method}",route="{route}",status="{status}"'
                lines.append(f"evaluator_http_requests_total{{{labels}}} {count}")
            lines.append("# TYPE evaluator_http_request_seconds_total counter")
            for (method, route), seconds in sorted(self._metrics.seconds.items()):
                lines.append(f'evaluator_http_request_seconds_total{{method="{method}",route="{route}"}} {seconds:.6f}')
        lines.append("# TYPE evaluator_runs gauge")
        with self._database.connection_context():
            counts = dict(rows(Run.select(Run.status, peewee.fn.COUNT(Run.id)).group_by(Run.status).tuples()))
        for status in RunStatus:
            lines.append(f'evaluator_runs{{status="{status.value}"}} {counts.get(status.value, 0)}')
        lines.extend(_recovery_lines(self._database))
        resp.content_type = "text/plain; version=0.0.4"
        resp.text = "\n".join(lines) + "\n"


def _recovery_lines(database: peewee.Database) -> list[str]:
    """Active runs whose worker stopped renewing (dead or stuck), takeovers after a worker died, and broker
    messages committed but not yet sent (the relay is behind, or the broker is down)."""
    active = [RunStatus.PREPARING.value, RunStatus.RUNNING.value, RunStatus.SCORING.value]
    with database.connection_context():
        expired = Run.select().where(Run.status.in_(active) & (
            Run.lease_expires_at.is_null() | (Run.lease_expires_at < utcnow()))).count()
        crashes = Run.select(peewee.fn.COALESCE(peewee.fn.SUM(Run.crashes), 0)).scalar()
        waiting = OutboxMessage.select().where(OutboxMessage.sent_at.is_null()).count()
    return ["# TYPE evaluator_runs_lease_expired gauge", f"evaluator_runs_lease_expired {expired}",
            "# TYPE evaluator_run_worker_crashes_total counter", f"evaluator_run_worker_crashes_total {int(crashes)}",
            "# TYPE evaluator_outbox_messages_waiting gauge", f"evaluator_outbox_messages_waiting {waiting}"]
