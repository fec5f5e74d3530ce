"""falcon.before hooks: JSON bodies and roles, shared by the resources."""

from __future__ import annotations

import json

import falcon

from evaluator.errors import BadRequest, Forbidden, Unauthorized, ValidationFailed


def json_body(req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
    """Parse the body into req.context.body (an object), with 400/422 for bad JSON."""
    raw = req.bounded_stream.read()
    if not raw.strip():
        req.context.body = {}
        return
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as ex:
        raise BadRequest(f"the body is not valid JSON: {ex}") from None
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", field="body")
    req.context.body = body


def authenticated(req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
    if req.context.principal is None:
        raise Unauthorized(req.context.auth_problem or "a bearer token is required")


def optional_auth(req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
    """Admit anonymous callers, but refuse a token that was sent and is wrong."""
    if req.context.principal is None and req.context.auth_problem:
        raise Unauthorized(req.context.auth_problem)


def role(*roles: str):
    """Return a hook that admits only the given roles (after authentication)."""

    def hook(req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        authenticated(req, resp, resource, params)
        if req.context.principal.role not in roles:
            raise Forbidden(f"this needs the {' or '.join(roles)} role; your token has '{req.context.principal.role}'")

    return hook


admin_only = role("admin")
publisher = role("admin", "owner")
