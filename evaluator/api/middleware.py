"""Cross-cutting request concerns: body limit, safe parameters, DB connection, request id, auth, metrics."""

from __future__ import annotations

import io
import re
import time
import uuid

import falcon
import peewee

from evaluator import tokens
from evaluator.api.hooks import form_body
from evaluator.errors import BadRequest, PayloadTooLarge
from evaluator.observability import record
from evaluator.web import sessions

# C0 controls, DEL and C1 controls: psycopg2 refuses NUL, terminals act on escapes, no id or filter has one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_READ_CHUNK = 64 * 1024
# Routes that never touch the database (/health and /metrics open their own connections).
_NO_DATABASE = ("/health", "/metrics", "/openapi.json", "/docs", "/static/")


class BodyLimit:
    """Answer 413 to a body over max_bytes, on every route: by Content-Length up front, else while reading.

    A body without Content-Length (chunked) is read here, at most max_bytes + 1
    of it, and handed on as if it had one; where the server does not delimit
    such a body (wsgi.input_terminated unset, e.g. wsgiref), it is not read.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length  # a malformed value is Falcon's 400
        if length is not None:
            if length > self._max:
                raise self._too_large(f"{length} bytes")
            return
        if not req.get_header("Transfer-Encoding") or not req.env.get("wsgi.input_terminated"):
            return
        data = bytearray()
        try:
            while chunk := req.stream.read(min(_READ_CHUNK, self._max + 1 - len(data))):
                data += chunk
                if len(data) > self._max:
                    raise self._too_large("more than that")
        except OSError as ex:  # TimeoutError included: the server bounds how long a body may take
            raise falcon.HTTPError(falcon.HTTP_408, description="the request body did not arrive in time") from ex
        req.env["CONTENT_LENGTH"] = str(len(data))
        req.env["wsgi.input"] = req.stream = io.BytesIO(bytes(data))  # bounded_stream wraps wsgi.input

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is {size}; this API takes at most {self._max} bytes")


class SafeParameters:
    """Answer 400 to a control character in the path or the query, before any resource or query sees it."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if _CONTROL.search(req.path):
            raise BadRequest("the URL path contains a control character; no id or name has one")
        for name, value in req.params.items():
            for text in (name, *(value if isinstance(value, list) else [value])):
                if _CONTROL.search(text):
                    raise BadRequest(f"the query parameter {name[:40]!r} contains a control character")


class DatabaseConnection:
    """Open a connection per request and close it after (peewee's recommended web pattern)."""

    def __init__(self, database: peewee.Database) -> None:
        self._database = database

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path.startswith(_NO_DATABASE):
            return  # /health checks the database itself; docs need none; pages and the API do
        self._database.connect(reuse_if_open=True)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        if not self._database.is_closed():
            self._database.close()


class RequestId:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        sent = req.get_header("X-Request-ID") or ""
        req.context.request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
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


class SessionAuth:
    """Resolve the web pages' session cookie into req.context.principal where no Authorization header was sent.

    The same principal then meets the same access rules (the @operation hooks and the plain
    functions), so a page shows what the API would. Every unsafe request a session authenticates,
    and every form posted to a page, must carry the visitor's CSRF token (header X-CSRF-Token or
    the form field csrf_token): the session's own, or the anonymous double-submit cookie's.
    """

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        req.context.session = None
        req.context.page = page = bool(getattr(resource, "page", False))
        req.context.form = {}
        if getattr(resource, "auth", "token") not in ("token", "session"):
            return
        if req.get_header("Authorization") and not page:
            return  # a bearer token decides (pages ignore it: their forms are always CSRF-checked)
        session = sessions.resolve(sessions.cookie(req, sessions.COOKIE))
        unsafe = req.method not in sessions.SAFE_METHODS
        if page and unsafe:
            req.context.form = form_body(req)
        if unsafe and (session is not None or page):
            expected = session.csrf_token if session else sessions.cookie(req, sessions.CSRF_COOKIE)
            sent = req.get_header(sessions.CSRF_HEADER) or req.context.form.get(sessions.CSRF_FIELD)
            sessions.check_csrf(expected, sent)
        if session is not None:
            req.context.session, req.context.principal = session, session.principal


class RequestMetrics:
    """Count and time every request by method, route template and status (Prometheus, summed over processes)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        status = resp.status_code if hasattr(resp, "status_code") else str(resp.status)[:3]
        record.request(req.method, req.uri_template or "unmatched", status, seconds)
