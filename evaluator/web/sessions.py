"""Browser sessions: an API token exchanged for a server-side session row behind an HttpOnly cookie.

The cookie carries a random secret (only its hash is stored), so signing out revokes the
session on the server, and revoking the API token ends every session made from it. Each
session has its own CSRF token, which every form and every unsafe request must carry; a
visitor who is not signed in gets a double-submit CSRF cookie for the sign-in form.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import secrets
import uuid

import falcon

from evaluator import tokens
from evaluator.errors import Forbidden, Unauthorized
from evaluator.storage.models import ApiToken, WebSession, utcnow
from evaluator.tokens import Principal

COOKIE = "evaluator_session"
CSRF_COOKIE = "evaluator_csrf"  # the anonymous visitor's double-submit token (the sign-in form)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclasses.dataclass(frozen=True)
class Session:
    """A live browser session: who it signs in as and the CSRF token its forms carry."""

    id: uuid.UUID
    principal: Principal
    csrf_token: str
    expires_at: datetime.datetime


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def sign_in(api_token: str, ttl_s: int) -> tuple[str, Session]:
    """Exchange a live API token for a session; returns (cookie secret, session). Unauthorized otherwise."""
    principal = tokens.authenticate(api_token.strip()) if api_token and api_token.strip() else None
    if principal is None:
        raise Unauthorized("the token is unknown or revoked; paste an API token (evt_...) from `evaluator tokens`")
    secret = secrets.token_urlsafe(32)
    row = WebSession.create(secret_hash=_hash(secret), token=principal.token_id, csrf_token=secrets.token_urlsafe(32),
                            expires_at=utcnow() + datetime.timedelta(seconds=ttl_s))
    return secret, Session(row.id, principal, row.csrf_token, row.expires_at)


def resolve(secret: str | None) -> Session | None:
    """Return the live session of a cookie secret: not signed out, not expired, its API token not revoked."""
    if not secret or len(secret) > 200:
        return None
    row = (WebSession.select(WebSession, ApiToken).join(ApiToken)
           .where((WebSession.secret_hash == _hash(secret)) & WebSession.revoked_at.is_null()
                  & (WebSession.expires_at > utcnow()) & ApiToken.revoked_at.is_null())
           .first())
    if row is None:
        return None
    return Session(row.id, Principal(row.token.owner, row.token.role, row.token.id), row.csrf_token, row.expires_at)


def sign_out(session_id: uuid.UUID) -> None:
    """Revoke a session on the server: its cookie stops working even if a copy of it survives."""
    WebSession.update(revoked_at=utcnow()).where((WebSession.id == session_id)
                                                 & WebSession.revoked_at.is_null()).execute()


def check_csrf(expected: str | None, sent: str | None) -> None:
    """Refuse an unsafe request whose CSRF token is missing or is not this visitor's."""
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden("the form's CSRF token is missing or stale; reload the page and send it again")


def is_https(req: falcon.Request) -> bool:
    """Behind TLS (directly, or a proxy saying X-Forwarded-Proto: https): cookies are then Secure."""
    return req.scheme == "https" or (req.get_header("X-Forwarded-Proto") or "").lower() == "https"


def set_cookie(req: falcon.Request, resp: falcon.Response, name: str, value: str, max_age: int | None) -> None:
    """Set an HttpOnly, SameSite=Strict cookie on the whole site (Secure behind TLS)."""
    resp.set_cookie(name, value, max_age=max_age, path="/", secure=is_https(req), http_only=True, same_site="Strict")


def clear_cookie(req: falcon.Request, resp: falcon.Response, name: str) -> None:
    resp.set_cookie(name, "", max_age=0, path="/", secure=is_https(req), http_only=True, same_site="Strict")


def cookie(req: falcon.Request, name: str) -> str | None:
    values = req.get_cookie_values(name)
    return values[0] if values else None


def anonymous_csrf(req: falcon.Request, resp: falcon.Response) -> str:
    """The double-submit CSRF token of a visitor without a session (set as a cookie when new)."""
    token = cookie(req, CSRF_COOKIE)
    if not token or not 20 <= len(token) <= 100:
        token = secrets.token_urlsafe(32)
        set_cookie(req, resp, CSRF_COOKIE, token, None)
    return token
