"""Resources for /health and /metrics: reachability of each part, worker liveness, Prometheus families."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import falcon

from evaluator.api.operations import ANYONE, TEXT, operation
from evaluator.contract import outputs

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], None]  # raises when the part is down
Advisory = Callable[[], "str | None"]  # returns why the platform is degraded (e.g. no live worker), or None


class Health:
    """200 `ok`, 200 `degraded` (it answers, but e.g. no worker is alive: runs wait), or 503 `unavailable`."""

    auth = "none"

    def __init__(self, checks: Mapping[str, HealthCheck], advisories: Mapping[str, Advisory] | None = None) -> None:
        self._checks = checks
        self._advisories = advisories or {}

    @operation("getHealth", "Reachability of the database, broker and object store; whether a worker is alive",
               tag="meta", access=ANYONE, responses={200: outputs.Health, 503: outputs.Health})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results: dict[str, dict[str, object]] = {}
        down: list[str] = []
        degraded: list[str] = []
        for name, check in self._checks.items():
            try:
                check()
                results[name] = {"ok": True}
            except Exception as ex:  # noqa: BLE001 - a health probe reports any failure, it never raises
                logger.info("health check %s failed: %s", name, ex)
                results[name] = {"ok": False, "error": f"{type(ex).__name__}: {ex}"[:300]}
                down.append(f"{name}: {results[name]['error']}")
        for name, advise in self._advisories.items():
            try:
                reason = advise()
            except Exception as ex:  # noqa: BLE001 - see above
                reason = f"{type(ex).__name__}: {ex}"[:300]
            results[name] = {"ok": reason is None} if reason is None else {"ok": False, "error": reason}
            if reason is not None:
                degraded.append(reason)
        status = "unavailable" if down else "degraded" if degraded else "ok"
        resp.status = falcon.HTTP_503 if down else falcon.HTTP_200
        resp.media = {"status": status, "reasons": [*down, *degraded], "checks": results}


class Metrics:
    """Prometheus text: this host's recorded samples (summed over processes) and the families read now."""

    auth = "none"

    def __init__(self, collectors: Sequence[Any]) -> None:
        self._collectors = collectors

    @operation("getMetrics", "Prometheus metrics: requests, intake, run stages and failures, queues, workers",
               tag="meta", access=ANYONE, responses={200: TEXT})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from evaluator.observability.scrape import CONTENT_TYPE, exposition

        resp.content_type = CONTENT_TYPE
        resp.data = exposition(self._collectors)
