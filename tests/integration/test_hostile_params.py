"""Hostile path and query parameters get a 4xx JSON error on every route, never a 500.

psycopg2 refuses a NUL in a string and PostgreSQL refuses out-of-range integers:
either used to surface as a 500 (`GET /v1/benchmarks/%00`). The routes are
enumerated from the app, so a new route is covered without editing this file.
"""

from __future__ import annotations

import re

import falcon.inspect
import pytest

pytestmark = pytest.mark.integration

# Percent-encoded as a client sends them: NUL, other C0 controls, DEL, a C1 control (NEL), an ANSI escape.
HOSTILE = ["%00", "a%00b", "%01", "%0a", "%1b%5b2J", "%7f", "%c2%85", "x%00" * 200]
QUERY_NAMES = ["limit", "offset", "benchmark", "status", "owner", "view"]


def routes(app) -> list[tuple[str, str]]:
    return sorted({(m.method, r.path) for r in falcon.inspect.inspect_routes(app) for m in r.methods
                   if not m.internal})


def assert_json_4xx(response, what: str) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    if not what.startswith("HEAD "):  # a HEAD answer has no body
        assert set(response.json["error"]) >= {"code", "message"}, what


@pytest.mark.parametrize("as_admin", [False, True], ids=["anonymous", "admin"])
def test_hostile_path_parameters_are_refused_on_every_route(api, admin, as_admin):
    headers = admin if as_admin else {}
    templated = [(m, p) for m, p in routes(api.app) if "{" in p]
    assert len(templated) >= 15  # the enumeration found the app's id routes
    for method, template in templated:
        for name in re.findall(r"{(\w+)}", template):
            for value in HOSTILE:
                path = re.sub(r"{(\w+)}", lambda m: value if m.group(1) == name else "x", template)
                response = api.simulate_request(method, path, headers=headers, json={})
                assert_json_4xx(response, f"{method} {path[:80]}")


@pytest.mark.parametrize("as_admin", [False, True], ids=["anonymous", "admin"])
def test_hostile_query_parameters_are_refused_on_every_route(api, admin, as_admin):
    headers = admin if as_admin else {}
    for method, template in routes(api.app):
        path = template.replace("{", "").replace("}", "")
        for value in HOSTILE:
            for query in [f"{n}={value}" for n in QUERY_NAMES] + [f"{value}=1"]:
                response = api.simulate_request(method, path, headers=headers, query_string=query, json={})
                assert_json_4xx(response, f"{method} {path}?{query[:60]}")


def test_out_of_range_integers_in_the_query_are_refused(api, admin):
    for query in ["offset=99999999999999999999999", "offset=-1", "limit=99999999999999999999", "limit=1e400"]:
        response = api.simulate_get("/v1/runs", headers=admin, query_string=query)
        assert_json_4xx(response, query)


def test_the_anonymous_nul_benchmark_of_the_report_is_a_400(api):
    response = api.simulate_get("/v1/benchmarks/%00")
    assert response.status_code == 400, response.text
    assert response.json["error"]["code"] == "bad_request"
    assert "control character" in response.json["error"]["message"]


def test_hostile_json_bodies_are_refused_on_every_route_that_takes_one(api, admin):
    deep = "[" * 5000 + "]" * 5000
    bodies = ['{"id": "a\\u0000b", "name": "a\\u0000b", "dataset": "x", "version": "1"}',
              '{"name": {"\\u0000": 1}}', '{"x": ' + deep + '}', '{"x": ' + "[" * 100_000 + "]" * 100_000 + '}']
    for method, template in routes(api.app):
        if method not in ("POST", "PATCH", "PUT"):
            continue
        path = template.replace("{", "").replace("}", "")
        for body in bodies:
            response = api.simulate_request(method, path, headers={**admin, "Content-Type": "application/json"},
                                            body=body)
            assert_json_4xx(response, f"{method} {path} {body[:40]}")


def test_a_body_over_the_limit_is_413_on_every_route(api, admin, config):
    limit = config.api_max_body_bytes
    for method, template in routes(api.app):
        path = template.replace("{", "").replace("}", "")
        response = api.simulate_request(method, path, headers={**admin, "Content-Type": "application/json"},
                                        body=b"{" + b" " * limit + b"}")
        assert response.status_code == 413, (method, path, response.status_code)
        if method != "HEAD":
            assert response.json["error"]["code"] == "too_large", (method, path)
