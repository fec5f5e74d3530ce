"""Cross-cutting request concerns: DB connection, request id, bearer auth, request metrics."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import falcon
import peewee

from evaluator import tokens


class DatabaseConnection:
    """Open a connection per request and close it after (peewee's recommended web pattern)."""

    def __init__(self, database: peewee.Database) -> None:
        self._database = database

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.path.startswith("/v1/"):
            return  # /health checks the database itself; docs need none
        self._database.connect(reuse_if_open=True)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        if not self._database.is_closed():
            self._database.close()


class RequestId:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = req.get_header("X-Request-ID") or uuid.uuid4().hex
        resp.set_header("X-Request-ID", req.context.request_id)


class BearerAuth:
    """Resolve `Authorization: Bearer <token>` into req.context.principal (None when absent/invalid)."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        req.context.principal = None
        req.context.auth_problem = None
        header = req.get_header("Authorization")
        if not header or getattr(resource, "auth", "token") != "token":
            return
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            req.context.auth_problem = "the Authorization header must be 'Bearer <token>'"
            return
        req.context.principal = tokens.authenticate(secret.strip())
        if req.context.principal is None:
            req.context.auth_problem = "the token is unknown or revoked"


class RequestMetrics:
    """Count requests by route and status for /metrics (per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.seconds: Counter = Counter()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        route = req.uri_template or "unmatched"
        key = (req.method, route, resp.status_code if hasattr(resp, "status_code") else str(resp.status)[:3])
        with self.lock:
            self.requests[key] += 1
            self.seconds[(req.method, route)] += (
                time.perf_counter() - getattr(req.context, "started", time.perf_counter()))
