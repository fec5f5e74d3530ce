"""Foundation through HTTP: benchmarks, upload grants the real S3 server enforces, JSON errors."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from tests.integration.helpers import register_dataset_over_http

pytestmark = pytest.mark.integration


def create_benchmark(api, admin, benchmark_id="iris", **overrides) -> dict:
    if api.simulate_get("/v1/datasets/iris:1", headers=admin).status_code == 404:
        register_dataset_over_http(api, admin)  # a benchmark stands only on a ready dataset
    body = {"id": benchmark_id, "dataset": "iris:1", "task": "classification",
            "limits": {"max_bundle_bytes": 1000}, **overrides}
    response = api.simulate_post("/v1/benchmarks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json


def grant(api, headers, benchmark="iris", **body) -> dict:
    response = api.simulate_post(f"/v1/benchmarks/{benchmark}/submissions", json={"name": "logreg", **body},
                                 headers=headers)
    assert response.status_code == 201, response.text
    return response.json


def test_admin_creates_benchmark_and_participant_uploads_with_plain_http(api, admin, alice, blobs, config):
    # Given a benchmark created by an admin over HTTP
    benchmark = create_benchmark(api, admin)
    assert benchmark["primary_metric"] and benchmark["direction"] in ("maximize", "minimize")
    assert api.simulate_get("/v1/benchmarks/iris", headers=alice).json["id"] == "iris"

    # When a participant asks for a presigned PUT and uploads with plain requests
    put = grant(api, alice, method="put", version="1.0.0", size=11)
    assert requests.put(put["upload"]["url"], data=b"hello world", headers=put["upload"]["headers"],
                        timeout=10).status_code == 200

    # Then the bytes are in the bucket under the DESIGN key
    submission = put["submission"]
    assert submission["key"] == f"bundles/iris/alice/logreg/1.0.0/{submission['id']}.tar.gz"
    assert blobs.get_bytes(config.bundles_bucket, submission["key"]) == b"hello world"
    assert submission["status"] == "awaiting_upload"
    assert api.simulate_get(f"/v1/submissions/{submission['id']}", headers=alice).json["id"] == submission["id"]

    # And a presigned POST policy works too (the default method)
    post = grant(api, alice)
    assert post["upload"]["method"] == "post"
    response = requests.post(post["upload"]["url"], data=post["upload"]["fields"],
                             files={"file": ("bundle.tar.gz", b"0123456789")}, timeout=10)
    assert response.status_code == 204, response.text
    assert blobs.head(config.bundles_bucket, post["submission"]["key"])["size"] == 10


def test_post_policy_caps_size_at_the_benchmark_limit(api, admin, alice):
    create_benchmark(api, admin)
    post = grant(api, alice)["upload"]
    policy = json.loads(base64.b64decode(
        post["fields"]["Policy"] if "Policy" in post["fields"] else post["fields"]["policy"]))
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    # The store itself refuses a body over the policy.
    response = requests.post(post["url"], data=post["fields"], files={"file": ("b.tar.gz", b"x" * 1001)}, timeout=10)
    assert response.status_code == 400 and "EntityTooLarge" in response.text


def test_store_refuses_expired_and_tampered_grants(api, admin, alice, config):
    create_benchmark(api, admin)
    upload = grant(api, alice, method="put", size=1)["upload"]
    url, headers = upload["url"], upload["headers"]
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    response = requests.put(tampered, data=b"x", headers=headers, timeout=10)
    assert response.status_code == 403 and "SignatureDoesNotMatch" in response.text
    wrong_key = url.replace("/logreg/", "/other/")
    assert requests.put(wrong_key, data=b"x", headers=headers, timeout=10).status_code == 403


def test_store_refuses_an_expired_grant(api, admin, alice, config, blobs, db, sent):
    import falcon.testing

    from evaluator.api.app import create_app

    short = create_app(config.replace(upload_expiry_s=1), database=db, blobs=blobs, queues=sent.as_queues(),
                       health_checks={})
    client = falcon.testing.TestClient(short)
    create_benchmark(api, admin)  # the dataset's own uploads use the default expiry: only this grant is short
    upload = grant(client, alice, method="put", size=4)["upload"]
    time.sleep(2.2)
    response = requests.put(upload["url"], data=b"late", headers=upload["headers"], timeout=10)
    assert response.status_code == 403 and "expired" in response.text.lower()


def test_multipart_grant_uploads_parts_and_completes(api, admin, alice, blobs, config):
    create_benchmark(api, admin, limits={"max_bundle_bytes": 64 * 1024 * 1024})
    size = 6 * 1024 * 1024 + 5
    upload = grant(api, alice, method="multipart", size=size)["upload"]
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    parts = []
    for part in upload["parts"]:
        start = (part["part_number"] - 1) * upload["part_size"]
        chunk = data[start:start + upload["part_size"]]
        response = requests.put(part["url"], data=chunk, timeout=30)
        assert response.status_code == 200, response.text
        parts.append({"part_number": part["part_number"], "etag": response.headers["ETag"]})
    assert len(parts) == 1  # 16 MiB parts by default
    done = api.simulate_post(upload["complete"], json={"parts": parts}, headers=alice)
    assert done.status_code == 200, done.text
    assert blobs.head(config.bundles_bucket, upload["key"])["size"] == size


@pytest.mark.parametrize("case", ["no_token", "bad_token", "wrong_role", "unknown_benchmark", "malformed_json",
                                  "missing_field", "invalid_field", "too_large", "not_an_object"])
def test_bad_input_gets_a_json_error_and_the_service_keeps_serving(api, admin, alice, case):
    create_benchmark(api, admin)
    path, headers, kwargs = "/v1/benchmarks/iris/submissions", alice, {"json": {"name": "m"}}
    expected = {
        "no_token": (401, "unauthorized"), "bad_token": (401, "unauthorized"), "wrong_role": (403, "forbidden"),
        "unknown_benchmark": (404, "not_found"), "malformed_json": (400, "bad_request"),
        "missing_field": (422, "invalid"), "invalid_field": (422, "invalid"), "too_large": (413, "too_large"),
        "not_an_object": (422, "invalid"),
    }[case]
    if case == "no_token":
        headers = {}
    elif case == "bad_token":
        headers = {"Authorization": "Bearer evt_nope"}
    elif case == "wrong_role":
        path, kwargs = "/v1/benchmarks", {"json": {"id": "x", "dataset": "iris:1", "task": "classification"}}
    elif case == "unknown_benchmark":
        path = "/v1/benchmarks/nope/submissions"
    elif case == "malformed_json":
        kwargs = {"body": b'{"name": ', "headers": {"Content-Type": "application/json"}}
    elif case == "missing_field":
        kwargs = {"json": {}}
    elif case == "invalid_field":
        kwargs = {"json": {"name": "../etc"}}
    elif case == "too_large":
        kwargs = {"json": {"name": "m", "size": 1001}}
    elif case == "not_an_object":
        kwargs = {"json": [1, 2]}
    headers = {**headers, **kwargs.pop("headers", {})}
    response = api.simulate_post(path, headers=headers, **kwargs)
    assert (response.status_code, response.json["error"]["code"]) == expected, response.text
    assert response.json["error"]["message"]
    if case in ("missing_field", "invalid_field"):
        assert response.json["error"]["field"] == "name"
    if case == "too_large":
        assert "1000" in response.json["error"]["message"]
    # The service keeps serving.
    assert api.simulate_get("/v1/benchmarks/iris", headers=alice).status_code == 200


def test_unknown_routes_methods_and_crashes_are_json_errors(api, admin):
    response = api.simulate_get("/v1/nothing-here")
    assert (response.status_code, response.json["error"]["code"]) == (404, "not_found")
    response = api.simulate_delete("/health")
    assert (response.status_code, response.json["error"]["code"]) == (405, "method_not_allowed")

    class Boom:
        auth = "none"

        def on_get(self, req, resp):
            raise RuntimeError("secret internals")

    api.app.add_route("/boom", Boom())
    response = api.simulate_get("/boom")
    assert (response.status_code, response.json["error"]["code"]) == (500, "internal")
    assert "secret internals" not in response.text


def test_health_reports_each_part_and_503_when_one_is_down(api, config, db, sent):
    import falcon.testing

    from evaluator.api.app import create_app
    from evaluator.storage.blobs import BlobStore
    from evaluator.storage.db import ping

    ok = api.simulate_get("/health")
    assert ok.status_code == 200 and ok.json["checks"] == {
        "database": {"ok": True}, "broker": {"ok": True}, "object_store": {"ok": True}}

    dead = BlobStore.from_config(config.replace(s3_endpoint_url="http://127.0.0.1:9"))
    app = create_app(config, database=db, blobs=dead, queues=sent.as_queues(),
                     health_checks={"database": lambda: ping(db), "object_store": lambda: dead.ping("x")})
    response = falcon.testing.TestClient(app).simulate_get("/health")
    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is True
    assert response.json["checks"]["object_store"]["ok"] is False


def test_openapi_and_docs_describe_the_routes(api):
    spec = api.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/v1/benchmarks/{benchmark_id}/submissions" in spec["paths"]
    page = api.simulate_get("/docs")
    assert page.status_code == 200 and "/v1/benchmarks" in page.text
    metrics = api.simulate_get("/metrics")
    assert "evaluator_http_requests_total" in metrics.text
    assert 'evaluator_runs{status="queued"} 0' in metrics.text


def test_participant_cannot_read_another_participants_submission(api, admin, alice, bob):
    create_benchmark(api, admin)
    submission = grant(api, alice)["submission"]
    response = api.simulate_get(f"/v1/submissions/{submission['id']}", headers=bob)
    assert response.status_code == 404
    assert api.simulate_get(f"/v1/submissions/{submission['id']}", headers=admin).status_code == 200
