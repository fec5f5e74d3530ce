"""@operation: one declaration per responder that checks access, validates the request and documents it.

The declaration is the contract: the wrapper enforces it (auth hook, body and
query models, a 422 naming the field) and openapi.py renders the same object
into /openapi.json, so a route cannot be documented one way and parsed another.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import falcon
import pydantic

from evaluator.api import hooks
from evaluator.contract.constraints import PATTERN_RULES
from evaluator.errors import ValidationFailed

Hook = Callable[[falcon.Request, falcon.Response, object, dict], None]
COMMON_ERRORS = (400, 413, 500)  # on every route: control characters (400), the body limit (413), a bug (500)
BODY_ERRORS = (400, 408, 422)  # bad JSON or too deep, a body that does not arrive, a field that does not validate


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may call an operation: its OpenAPI security, the hook that enforces it, the errors it adds."""

    security: list[dict]
    hook: Hook | None = None
    errors: tuple[int, ...] = ()


def _events_token(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    resource.check_token(req)


ANYONE = Access([])
OPTIONAL = Access([{}, {"bearer": []}], hooks.optional_auth, (401,))  # anonymous callers too; a bad token is 401
TOKEN = Access([{"bearer": []}], hooks.authenticated, (401,))
EVENTS = Access([{"events": []}], _events_token, (401, 503))
PAGE = Access([{}, {"session": []}])  # a web page: anyone, as the visitor the session cookie names (if any)


def roles(*names: str) -> Access:
    """Access for a token of one of these roles (403 for the others)."""
    return Access([{"bearer": []}], hooks.role(*names), (401, 403))


@dataclasses.dataclass(frozen=True)
class Media:
    """A non-JSON (or schema-less) response body."""

    content_types: tuple[str, ...]
    schema: dict


TEXT = Media(("text/plain",), {"type": "string"})
HTML = Media(("text/html",), {"type": "string"})
SVG = Media(("image/svg+xml",), {"type": "string"})
EMPTY = Media((), {})
ANY_JSON = Media(("application/json",), {"type": "object"})


@dataclasses.dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    access: Access
    responses: dict[int, Any]  # status -> a pydantic model or a Media
    body: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""

    def error_statuses(self) -> list[int]:
        statuses = {*COMMON_ERRORS, *self.access.errors, *self.errors}
        if self.body is not None:
            statuses.update(BODY_ERRORS)
        if self.query is not None:
            statuses.add(422)
        return sorted(statuses - set(self.responses))


def operation(operation_id: str, summary: str, *, tag: str, access: Access, responses: dict[int, Any],
              body: type[pydantic.BaseModel] | None = None, query: type[pydantic.BaseModel] | None = None,
              errors: tuple[int, ...] = (), description: str = "") -> Callable:
    """Declare a responder's contract; the request reaches it checked, as req.context.body / .query."""
    spec = Operation(operation_id, summary, tag, access, responses, body, query, errors, description)

    def decorate(responder: Callable) -> Callable:
        @functools.wraps(responder)
        def checked(resource: object, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
            if access.hook is not None:
                access.hook(req, resp, resource, params)
            if body is not None:
                req.context.body = parse_body(req, resp, body)
            if query is not None:
                req.context.query = validated(query, dict(req.params))
            responder(resource, req, resp, **params)

        checked.operation = spec  # type: ignore[attr-defined]  # read back by openapi.operations()
        return checked

    return decorate


def parse_body(req: falcon.Request, resp: falcon.Response, model: type[pydantic.BaseModel]) -> dict:
    """Read the JSON body (bounded, depth- and NUL-checked) and validate it; returns the fields sent."""
    hooks.json_body(req, resp, None, {})
    return validated(model, req.context.body).model_dump(exclude_unset=True)


def validated(model: type[pydantic.BaseModel], data: dict) -> pydantic.BaseModel:
    """Validate data against a model; the first problem becomes ValidationFailed naming its field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as ex:
        problems = ex.errors(include_url=False)
        raise _refusal(problems[0], len(problems) - 1) from None


def _refusal(problem: Mapping[str, Any], others: int) -> ValidationFailed:
    field = ".".join(str(part) for part in problem["loc"]) or "body"
    kind, ctx = problem["type"], problem.get("ctx") or {}
    if kind == "missing":
        rule = "is required"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_RULES:
        rule = PATTERN_RULES[ctx["pattern"]]
    else:
        rule = problem["msg"].removeprefix("Value error, ")
        for lead in ("Input should", "String should", "List should", "Dictionary should"):
            if rule.startswith(lead):
                rule = "must" + rule[len(lead):]
    if kind == "literal_error":
        rule += f", not {str(problem.get('input'))[:40]!r}"
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    return ValidationFailed(f"'{field}' {rule}{more}", field=field)
