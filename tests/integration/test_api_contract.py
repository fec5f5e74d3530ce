"""The served OpenAPI document is valid, complete and the one contract requests are validated against."""

from __future__ import annotations

import re

import falcon.inspect
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

pytestmark = pytest.mark.integration

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_served_document_passes_openapi_spec_validator(api):
    response = api.simulate_get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.1")
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert not errors, f"{len(errors)} errors:\n" + "\n".join(errors[:20])


def test_every_registered_route_is_in_the_spec_with_its_path_parameters(api):
    spec = api.simulate_get("/openapi.json").json
    for route in falcon.inspect.inspect_routes(api.app):
        for method in route.methods:
            if method.internal:
                continue
            path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.path)
            operation = spec["paths"].get(path, {}).get(method.method.lower())
            assert operation is not None, f"{method.method} {path} is not in the spec"
            declared = {p["name"] for p in operation.get("parameters", []) + spec["paths"][path].get(
                "parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method.method, path, declared)


def test_every_operation_has_an_id_a_tag_and_a_schema_for_each_response(api):
    spec = api.simulate_get("/openapi.json").json
    ids = []
    for path, method, operation in operations(spec):
        ids.append(operation.get("operationId"))
        assert operation.get("description") != "x-undocumented", f"{method} {path} has no @operation"
        assert operation.get("tags"), (method, path)
        for status, response in operation["responses"].items():
            if status == "204" or method == "head":
                continue
            content = response.get("content") or {}
            assert content and all("schema" in media for media in content.values()), (method, path, status)
    assert None not in ids and len(ids) == len(set(ids))


def test_text_routes_are_declared_as_text(api):
    spec = api.simulate_get("/openapi.json").json
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "text/plain" in spec["paths"]["/v1/runs/{run_id}/logs"]["get"]["responses"]["200"]["content"]


def test_security_is_declared_only_where_it_applies(api):
    spec = api.simulate_get("/openapi.json").json
    anonymous = [{}, {"bearer": []}]
    assert spec["paths"]["/v1/benchmarks/{benchmark_id}/leaderboard"]["get"]["security"] == anonymous
    assert spec["paths"]["/v1/benchmarks"]["get"]["security"] == anonymous
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/v1/runs"]["get"]["security"] == [{"bearer": []}]
    # And an anonymous caller really is answered where the spec allows it
    assert api.simulate_get("/v1/benchmarks").status_code == 200


def test_request_bodies_and_query_parameters_come_from_the_models(api):
    spec = api.simulate_get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    create = spec["paths"]["/v1/benchmarks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    patch = spec["paths"]["/v1/benchmarks/{benchmark_id}"]["patch"]["requestBody"]["content"]["application/json"][
        "schema"]
    assert create != patch
    assert "settings" in schemas[create["$ref"].rsplit("/", 1)[1]]["properties"]
    assert not schemas[patch["$ref"].rsplit("/", 1)[1]].get("required")
    query = {p["name"] for p in spec["paths"]["/v1/runs"]["get"]["parameters"] if p["in"] == "query"}
    assert query >= {"benchmark", "status", "owner", "limit", "offset"}


def test_docs_page_is_swagger_ui_served_by_the_api(api):
    page = api.simulate_get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    scripts = re.findall(r"<script[^>]+src=['\"]([^'\"]+)", page.text)
    styles = re.findall(r"<link[^>]+href=['\"]([^'\"]+)", page.text)
    assert scripts and all(src.startswith("/docs/") for src in scripts + styles), (scripts, styles)
    for asset in scripts + styles:
        served = api.simulate_get(asset)
        assert served.status_code == 200 and served.content, asset
    bundle = api.simulate_get("/docs/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000 and "javascript" in bundle.headers["content-type"]
    assert api.simulate_get("/docs/../setup.cfg").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"dataset": "iris:1", "task": "classification"}, "id"),
    ({"id": "b", "dataset": "iris:1", "task": "ranking"}, "task"),
    ({"id": "b", "dataset": "iris:1", "task": "classification", "limits": {"timeout_s": "soon"}},
     "limits.timeout_s"),
    ({"id": "b", "dataset": "iris:1", "task": "classification", "settings": {"final_selections": -1}},
     "settings.final_selections"),
    ({"id": "b", "dataset": "iris:1", "task": "classification", "quota": {"limit": 0}}, "quota.limit"),
    ({"id": "../b", "dataset": "iris:1", "task": "classification"}, "id"),
])
def test_invalid_body_is_422_naming_the_field_in_our_error_body(api, admin, body, field):
    response = api.simulate_post("/v1/benchmarks", json=body, headers=admin)
    assert response.status_code == 422, response.text
    error = response.json["error"]
    assert error["code"] == "invalid" and error["field"] == field and field in error["message"]


def test_invalid_query_parameter_is_422_naming_it(api, admin):
    response = api.simulate_get("/v1/runs", params={"limit": "many"}, headers=admin)
    assert response.status_code in (400, 422), response.text
    assert response.json["error"]["field"] == "limit"
