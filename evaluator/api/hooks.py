"""falcon.before hooks: JSON bodies and roles, shared by the resources."""

from __future__ import annotations

import json
import urllib.parse

import falcon

from evaluator.errors import BadRequest, Forbidden, Unauthorized, ValidationFailed

MAX_JSON_DEPTH = 32  # our bodies are a few levels deep; a deeper one is an attack on the parser or its callers


def json_body(req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
    """Parse the body into req.context.body (an object), with 400/422 for bad JSON.

    The body's size is already bounded (middleware.BodyLimit); its depth and
    its NULs (PostgreSQL stores neither a NUL in text nor \\u0000 in jsonb) are checked here.
    """
    try:
        raw = req.bounded_stream.read()
    except OSError as ex:  # TimeoutError included: the server bounds how long a body may take
        raise falcon.HTTPError(falcon.HTTP_408, description="the request body did not arrive in time") from ex
    if not raw.strip():
        req.context.body = {}
        return
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as ex:
        raise BadRequest(f"the body is not valid JSON: {ex}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", field="body")
    _refuse_nul(body)
    req.context.body = body


MAX_FORM_FIELDS = 100


def form_body(req: falcon.Request) -> dict[str, str]:
    """Parse an HTML form (application/x-www-form-urlencoded) into {name: first value}; {} for other bodies.

    The body's size is already bounded (middleware.BodyLimit); NULs are refused as in JSON bodies.
    """
    if (req.content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        raw = req.bounded_stream.read().decode("utf-8")
    except OSError as ex:
        raise falcon.HTTPError(falcon.HTTP_408, description="the request body did not arrive in time") from ex
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    try:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS,
                                       errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"the form is malformed or has more than {MAX_FORM_FIELDS} fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise ValidationFailed("a form field contains a NUL character", field=name[:40] or "form")
        form.setdefault(name, value)
    return form


def _refuse_nul(value: object, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationFailed("a string in the body contains a NUL character", field="body")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, depth + 1)
            _refuse_nul(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item, depth + 1)


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
