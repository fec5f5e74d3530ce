"""Render a page: one Jinja2 environment (autoescape on), the viewer's context, safe response headers."""

from __future__ import annotations

import datetime
import functools
import math
from typing import Any

import falcon
import jinja2

from evaluator.web import sessions

HTML = "text/html; charset=utf-8"


def when(value: str | datetime.datetime | None) -> str:
    """An ISO timestamp (ours end in Z) as `2026-12-02 10:04:05 UTC`; an em dash when absent."""
    if not value:
        return "\u2014"
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value[:40]
        value = parsed
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """A duration a person reads: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None or not math.isfinite(seconds):
        return "\u2014"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def number(value: Any, decimals: int = 4) -> str:
    """A metric as shown: the value already rounded by the API's disclosure rules, never re-rounded coarser."""
    if isinstance(value, bool) or value is None:
        return "\u2014" if value is None else str(value)
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else f"{value:.{decimals}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def filesize(value: int | float | None) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "\u2014"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates shipped in this package; autoescape on for every template (participant text is hostile)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("evaluator.web", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, duration=duration, number=number, filesize=filesize)
    return env


def csrf_token(req: falcon.Request, resp: falcon.Response) -> str:
    """The token this visitor's forms carry: the session's, or the anonymous double-submit cookie's."""
    session = getattr(req.context, "session", None)
    return session.csrf_token if session is not None else sessions.anonymous_csrf(req, resp)


def security_headers(resp: falcon.Response, connect: str = "") -> None:
    """No inline script, no frames, no CDN: everything comes from this app (and the store, for uploads)."""
    resp.set_header("Content-Security-Policy",
                    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                    f"connect-src 'self' {connect}".rstrip() + "; form-action 'self'; frame-ancestors 'none'; "
                    "base-uri 'none'; object-src 'none'")
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("X-Frame-Options", "DENY")
    resp.set_header("Referrer-Policy", "same-origin")
    resp.cache_control = ["no-store"]


def render(req: falcon.Request, resp: falcon.Response, template: str, *, status: int = 200, connect: str = "",
           **context: Any) -> None:
    """Render `template` with the viewer (principal or None) and its CSRF token into the response."""
    page = environment().get_template(template)
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = HTML
    security_headers(resp, connect)
    resp.text = page.render(viewer=getattr(req.context, "principal", None), csrf_token=csrf_token(req, resp),
                            path=req.path, **context)


def wants_html(req: falcon.Request) -> bool:
    """A page's error is a page for a browser (Accept: text/html); so is an unmatched URL outside the JSON API.

    Other clients of a page (no text/html in Accept) get the API's JSON error body.
    """
    if "text/html" not in (req.get_header("Accept") or ""):
        return False
    if getattr(req.context, "page", False):
        return True
    return req.uri_template is None and not req.path.startswith(("/v1/", "/health", "/metrics", "/openapi.json"))


TITLES = {400: "Bad request", 401: "Sign in needed", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
          409: "Conflict", 413: "Too large", 422: "Invalid", 429: "Quota used up", 500: "Something broke",
          503: "Unavailable"}


def error_page(req: falcon.Request, resp: falcon.Response, status: int, code: str, message: str) -> None:
    """Render an error as a page with the same code and message the JSON API would give."""
    render(req, resp, "error.html", status=status, code=code, message=message,
           title=TITLES.get(status, "Error"), status_code=status)
