"""/v1/runs over HTTP: filters, pagination, isolation, cancel; and `evaluator reconcile` for lost events."""

from __future__ import annotations

import os
import subprocess

import pytest

from evaluator.storage.models import Run
from tests.conftest import BIN
from tests.conftest import EVENTS_HEADERS as EVENTS
from tests.integration.helpers import (
    create_benchmark,
    minio_event,
    register_dataset_over_http,
    request_grant,
    upload_with_grant,
)

pytestmark = pytest.mark.integration


def submit(api, headers, blobs, config, name="model") -> str:
    grant = request_grant(api, headers, method="put", name=name, size=len(b"bundle"))
    upload_with_grant(grant, b"bundle")
    head = blobs.head(config.bundles_bucket, grant["submission"]["key"])
    response = api.simulate_post("/v1/events/s3", headers=EVENTS,
                                 json=minio_event(config.bundles_bucket, grant["submission"]["key"], 6, head["etag"]))
    return response.json["outcomes"][0]["run_id"]


@pytest.fixture
def benchmark(api, admin):
    register_dataset_over_http(api, admin)
    return create_benchmark(api, admin)


def test_runs_are_filtered_paginated_and_private_to_their_owner(api, benchmark, admin, alice, bob, blobs, config):
    alice_runs = [submit(api, alice, blobs, config, f"m{i}") for i in range(3)]
    bob_run = submit(api, bob, blobs, config)

    page = api.simulate_get("/v1/runs", params={"limit": 2}, headers=alice).json
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = api.simulate_get("/v1/runs", params={"limit": 2, "offset": 2}, headers=alice).json
    assert {r["id"] for r in page["items"] + rest["items"]} == set(alice_runs)
    # Bob's run is invisible to Alice, even when she asks for Bob's runs or the run itself.
    assert api.simulate_get("/v1/runs", params={"owner": "bob"}, headers=alice).json["total"] == 0
    assert api.simulate_get(f"/v1/runs/{bob_run}", headers=alice).status_code == 404
    assert api.simulate_get(f"/v1/runs/{bob_run}/logs", headers=alice).status_code == 404
    assert api.simulate_post(f"/v1/runs/{bob_run}/cancel", headers=alice).status_code == 404
    # An admin sees everything and can filter.
    assert api.simulate_get("/v1/runs", params={"owner": "bob"}, headers=admin).json["total"] == 1
    assert api.simulate_get("/v1/runs", params={"status": "queued", "benchmark": "iris"},
                            headers=admin).json["total"] == 4
    bad = api.simulate_get("/v1/runs", params={"status": "nope"}, headers=admin)
    assert (bad.status_code, bad.json["error"]["field"]) == (422, "status")


def test_cancelled_run_stays_cancelled(api, benchmark, alice, blobs, config):
    from evaluator import runs

    run_id = submit(api, alice, blobs, config)
    cancelled = api.simulate_post(f"/v1/runs/{run_id}/cancel", headers=alice).json
    assert cancelled["status"] == "cancelled" and cancelled["failure"]["code"] == "cancelled"
    # A redelivered message cannot claim or finish it.
    assert runs.claim(run_id, "worker-x") is False
    assert runs.finish(run_id, status="succeeded") is False
    assert Run.get_by_id(run_id).status == "cancelled"
    assert api.simulate_post(f"/v1/runs/{run_id}/cancel", headers=alice).status_code == 200  # idempotent


def test_reconcile_creates_the_run_of_an_upload_whose_event_was_lost(api, benchmark, alice, blobs, config, redis_url):
    # Given an upload whose notification never arrived (webhook down)
    grant = request_grant(api, alice, method="put", size=len(b"bundle"))
    upload_with_grant(grant, b"bundle")
    assert Run.select().count() == 0
    # When an operator runs the reconciler (the worker also runs it periodically)
    env = {**os.environ, **config.to_env()}
    result = subprocess.run([str(BIN / "evaluator"), "reconcile"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # Then the run exists, queued, and its message is on the broker
    run = Run.get()
    assert run.submission_id == __import__("uuid").UUID(grant["submission"]["id"]) and run.status == "queued"
    assert grant["submission"]["key"] in result.stdout
    import redis

    assert redis.Redis.from_url(redis_url).hlen(f"{config.broker_namespace}:cpu.msgs") == 1
