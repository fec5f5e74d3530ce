"""One place where failures become HTTP: {"error": {"code", "message"}} for every status."""

from __future__ import annotations

import logging

import falcon
import peewee

from evaluator.errors import EvaluatorError
from evaluator.web.render import error_page, wants_html

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    411: "length_required",
    413: "too_large",
    414: "too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "invalid",
    429: "quota_exceeded",
    431: "too_large",
    500: "internal",
    501: "not_implemented",
    503: "unavailable",
}


def code_for(status: int) -> str:
    """Return our stable error code for an HTTP status (also used for the server's own errors)."""
    return _CODES.get(status, "error")


def serialize_error(req: falcon.Request, resp: falcon.Response, exception: falcon.HTTPError) -> None:
    """Render any falcon.HTTPError (ours or Falcon's own 404/405/400) as our JSON error body."""
    status = exception.status_code
    code = getattr(exception, "code", None) or _CODES.get(status, "error")
    message = exception.description or exception.title or "error"
    body = {"code": code, "message": message}
    body.update(getattr(exception, "extra", None) or {})
    if exception.headers:
        resp.set_headers(exception.headers)
    if wants_html(req):
        try:
            error_page(req, resp, status, code, message)
            return
        except Exception:  # the page itself failed (the database is down, say): the JSON body still answers
            logger.exception("The error page of %s %s did not render", req.method, req.path)
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": body}


class _Error(falcon.HTTPError):
    def __init__(self, status: int, code: str, message: str, extra: dict | None = None, headers=None) -> None:
        super().__init__(falcon.code_to_http_status(status), description=message, headers=headers)
        self.code = code  # type: ignore[assignment]  # our stable code (a string), not falcon's numeric one
        self.extra = extra


def handle_evaluator_error(req: falcon.Request, resp: falcon.Response, ex: EvaluatorError, params: dict) -> None:
    logger.info("%s %s -> %s: %s", req.method, req.path, ex.code, ex.message)
    body = ex.to_dict()
    extra = {k: v for k, v in body.items() if k not in ("code", "message")}
    headers = {"WWW-Authenticate": "Bearer"} if ex.http_status == 401 else None
    retry_after_s = getattr(ex, "retry_after_s", None)  # only some errors say when to come back
    if retry_after_s is not None:
        headers = {"Retry-After": str(int(retry_after_s))}
    raise _Error(ex.http_status, ex.code, ex.message, extra, headers)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex
    logger.error("Unhandled error on %s %s", req.method, req.path, exc_info=ex)
    raise _Error(500, "internal", "an internal error occurred; it has been logged")


def handle_data_error(req: falcon.Request, resp: falcon.Response, ex: peewee.DataError, params: dict) -> None:
    """The database refused a value the request carried (e.g. an offset past bigint): the caller's to fix."""
    logger.warning("%s %s: the database refused a value: %s", req.method, req.path, ex, exc_info=ex)
    raise _Error(400, "bad_request", "a value in the request is out of range or malformed")


def register(app: falcon.App) -> None:
    """Route every failure through one serializer (order: most generic first)."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(peewee.DataError, handle_data_error)
    app.add_error_handler(EvaluatorError, handle_evaluator_error)
    app.set_error_serializer(serialize_error)
