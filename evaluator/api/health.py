"""Resources for /health and /metrics: reachability of each part, and request counters."""

from __future__ import annotations

import logging
from typing import Callable, Mapping

import falcon

from evaluator.api.middleware import RequestMetrics

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], None]  # raises when the part is down


class Health:
    auth = "none"

    def __init__(self, checks: Mapping[str, HealthCheck]) -> None:
        self._checks = checks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results, healthy = {}, True
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
    """Prometheus text exposition of the request counters of this process."""

    auth = "none"

    def __init__(self, metrics: RequestMetrics) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lines = ["# TYPE evaluator_http_requests_total counter"]
        with self._metrics.lock:
            for (method, route, status), count in sorted(self._metrics.requests.items()):
                lines.append(f'evaluator_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}')
            lines.append("# TYPE evaluator_http_request_seconds_total counter")
            for (method, route), seconds in sorted(self._metrics.seconds.items()):
                lines.append(f'evaluator_http_request_seconds_total{{method="{method}",route="{route}"}} {seconds:.6f}')
        resp.content_type = "text/plain; version=0.0.4"
        resp.text = "\n".join(lines) + "\n"
