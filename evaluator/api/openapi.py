"""The OpenAPI document of /v1 and a self-contained docs page that renders it."""

from __future__ import annotations

import html

import falcon

import evaluator

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, *, auth: str | None = "bearer", body: str | None = None, ok: str = "200",
        errors: tuple[int, ...] = (401, 404)) -> dict:
    operation = {"summary": summary, "responses": {ok: {"description": "OK", "content": {"application/json": {}}}}}
    for status in errors:
        operation["responses"][str(status)] = {
            "description": "error", "content": {"application/json": {"schema": _ERROR}}}
    if auth:
        operation["security"] = [{auth: []}]
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return operation


PATHS = {
    "/health": {"get": _op("Reachability of the database, broker and object store", auth=None, errors=(503,))},
    "/metrics": {"get": _op("Prometheus metrics of this API process", auth=None, errors=())},
    "/v1/datasets": {
        "get": _op("List datasets (admin)", errors=(401, 403)),
        "post": _op("Declare a dataset and get upload URLs for its features and labels (admin)", body="DatasetIn",
                    ok="201", errors=(400, 401, 403, 409, 422)),
    },
    "/v1/datasets/{dataset_id}": {"get": _op("One dataset, by id or name:version (admin)", errors=(401, 403, 404))},
    "/v1/benchmarks": {
        "get": _op("Benchmarks visible to the caller", errors=(401,)),
        "post": _op("Create a benchmark (admin)", body="BenchmarkIn", ok="201", errors=(400, 401, 403, 404, 409, 422)),
    },
    "/v1/benchmarks/{benchmark_id}": {
        "get": _op("One benchmark"),
        "patch": _op("Change metrics, primary metric, dataset or settings (admin or owner)", body="BenchmarkIn",
                     errors=(400, 401, 403, 404, 422))},
    "/v1/benchmarks/{benchmark_id}/rescore": {
        "post": _op("Re-score every succeeded run from its stored predictions (admin or owner)", ok="202",
                    errors=(401, 403, 404))},
    "/v1/benchmarks/{benchmark_id}/submissions": {
        "get": _op("The caller's submissions to a benchmark"),
        "post": _op("Create a submission and get its upload grant (presigned PUT, POST policy or multipart)",
                    body="SubmissionIn", ok="201", errors=(400, 401, 403, 404, 413, 422, 429)),
    },
    "/v1/benchmarks/{benchmark_id}/quota": {"get": _op("The caller's remaining submissions and when they reset")},
    "/v1/benchmarks/{benchmark_id}/leaderboard": {"get": _op("Best run per participant, ranked")},
    "/v1/submissions/{submission_id}": {"get": _op("One of the caller's submissions")},
    "/v1/submissions/{submission_id}/complete": {
        "post": _op("Complete a multipart upload", body="MultipartComplete", errors=(400, 401, 404, 409, 422))},
    "/v1/runs": {"get": _op("The caller's runs (filters: benchmark, status, owner; limit/offset)")},
    "/v1/runs/{run_id}": {"get": _op("One run: status, metrics, failure, provenance")},
    "/v1/runs/{run_id}/logs": {"get": _op("The run's capped sandbox log")},
    "/v1/runs/{run_id}/predictions": {"get": _op("A short-lived presigned GET of the run's predictions")},
    "/v1/runs/{run_id}/final": {"post": _op("Select (or unselect) the run for the final leaderboard",
                                            errors=(401, 404, 409, 422))},
    "/v1/runs/{run_id}/cancel": {"post": _op("Cancel a run (stops its container)", errors=(401, 404, 409))},
    "/v1/tokens": {"post": _op("Issue an API token, shown once (admin)", ok="201", errors=(401, 403, 422))},
    "/v1/tokens/{token_id}": {"delete": _op("Revoke an API token (admin)", ok="204", errors=(401, 403, 404))},
    "/v1/events/s3": {"post": _op("Bucket notifications (MinIO webhook, SeaweedFS filer webhook)", auth="events",
                                  errors=(400, 401))},
}

SCHEMAS = {
    "Error": {"type": "object", "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
    "DatasetIn": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string", "default": "1"},
        "format": {"enum": ["parquet", "csv"]}, "row_id_column": {"type": "string", "default": "row_id"},
        "target_column": {"type": "string", "default": "target"}}},
    "BenchmarkIn": {"type": "object", "required": ["id", "dataset", "task"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"},
        "dataset": {"type": "string", "description": "id or name:version"},
        "task": {"enum": ["classification", "regression"]}, "primary_metric": {"type": "string"},
        "metrics": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": "object", "properties": {"timeout_s": {"type": "integer"}, "memory": {"type": "string"},
                                                    "cpus": {"type": "number"}, "pids": {"type": "integer"},
                                                    "max_bundle_bytes": {"type": "integer"}}},
        "allowed_frameworks": {"type": "array", "items": {"type": "string"}},
        "quota": {"type": "object"}, "visibility": {"enum": ["public", "participants", "private"]}}},
    "SubmissionIn": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "filename": {"type": "string", "default": "bundle.tar.gz"},
        "size": {"type": "integer", "description": "declared size in bytes; over the limit is refused with 413"},
        "method": {"enum": ["put", "post", "multipart"]}}},
    "MultipartComplete": {"type": "object", "required": ["parts"], "properties": {"parts": {"type": "array", "items": {
        "type": "object", "properties": {"part_number": {"type": "integer"}, "etag": {"type": "string"}}}}}},
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "evaluator", "version": evaluator.__version__,
                 "description": "Batch evaluator for ML models: presigned uploads, event-driven sandboxed runs."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "API token (evaluator tokens create)"},
            "events": {"type": "http", "scheme": "bearer", "description": "shared secret of the store's webhook"}}},
    }


class OpenApi:
    auth = "none"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = document()


class Docs:
    """A plain HTML page of the endpoints: no script from any CDN is needed to read it."""

    auth = "none"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = []
        for path, methods in PATHS.items():
            for method, op in methods.items():
                codes = ", ".join(op["responses"])
                rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                            f"<td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>")
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (
            "<!doctype html><html><head><meta charset='utf-8'><title>evaluator API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            f"</head><body><h1>evaluator API v{evaluator.__version__}</h1>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are "
            "<code>{\"error\": {\"code\", \"message\"}}</code>.</p><table><tr><th>method</th><th>path</th>"
            f"<th>what</th><th>statuses</th></tr>{''.join(rows)}</table></body></html>"
        )
