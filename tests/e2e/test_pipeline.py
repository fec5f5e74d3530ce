"""Upload -> the store's own notification -> worker -> sandbox -> metrics, through the real processes."""

from __future__ import annotations

import io
import signal
import time

import pyarrow.parquet as pq
import pytest
import requests
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from evaluator.sandbox.runner import run_containers
from evaluator.stages import stage_durations
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import ObjectEvent, Run
from tests.conftest import EVENTS_HEADERS
from tests.e2e.bundles import sklearn_bundle, sleepy_bundle
from tests.integration.helpers import minio_event

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture
def stack(emptied_shared_stack):
    """The module's one stack, emptied before each test and put back after one that kills or restarts a process."""
    return emptied_shared_stack


@pytest.fixture
def competition(stack, images_built):
    """A ready dataset and benchmark on the live stack; yields (admin token, alice token)."""
    images_built("sklearn")
    return stack.competition({"id": "iris", "task": "classification", "limits": {"timeout_s": 60, "memory": "512m"}})


def submit(stack, token: str, bundle: bytes, name: str = "model") -> dict:
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", token,
                       json={"name": name, "method": "put", "size": len(bundle)}).json()
    assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
    return grant["submission"]


def run_of(stack, token: str, submission_id: str, timeout_s: float = 60) -> str:
    body = stack.wait_for(f"/v1/submissions/{submission_id}", token, lambda s: s["runs"], timeout_s)
    return body["runs"][0]["id"]


def test_upload_alone_runs_the_model_and_metrics_equal_sklearns(stack, competition):
    admin, alice, labels = competition
    submission = submit(stack, alice, sklearn_bundle())
    run_id = run_of(stack, alice, submission["id"])
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded", run

    # metrics.json, predictions and the log are in S3 under results/<benchmark>/<run-id>/
    blobs = BlobStore.from_config(stack.config)
    bucket, prefix = stack.config.results_bucket, f"results/iris/{run_id}/"
    assert run["results_prefix"] == prefix
    document = blobs.get_json(bucket, prefix + "metrics.json")
    predictions = pq.read_table(io.BytesIO(blobs.get_bytes(bucket, prefix + "predictions.parquet"))).to_pandas()
    truth = labels.to_pandas().set_index("row_id").loc[predictions["row_id"], "target"].to_numpy()
    expected = {"accuracy": accuracy_score(truth, predictions["prediction"]),
                "balanced_accuracy": balanced_accuracy_score(truth, predictions["prediction"]),
                "f1_macro": f1_score(truth, predictions["prediction"], average="macro")}
    exact = stack.call("GET", f"/v1/runs/{run_id}", admin).json()  # managers read exact values, participants 4 decimals
    for name, value in expected.items():
        assert exact["metrics"]["metrics"][name] == pytest.approx(value, abs=1e-12)
        assert document["metrics"]["metrics"][name] == pytest.approx(value, abs=1e-12)
        assert run["metrics"]["metrics"][name] == round(value, 4)
    assert run["metrics"]["metrics"]["accuracy"] > 0.8  # a real model, really evaluated
    # ... the row in Postgres, and the provenance of what ran
    row = Run.get_by_id(run_id)
    assert row.metrics["metrics"]["accuracy"] == run["metrics"]["metrics"]["accuracy"]
    assert len(run["provenance"]["bundle_sha256"]) == 64 and run["provenance"]["image_id"].startswith("sha256:")
    assert stack.call("GET", f"/v1/runs/{run_id}/logs", alice).status_code == 200
    assert all(run["timestamps"][t] for t in ("queued", "preparing", "running", "scoring", "finished"))
    # ... per-stage timings, in the provenance GET /v1/runs/{id} serves; a warm container (the pool is on) served it
    order = ["queued_at", "picked_up_at", "staged_at", "sandbox_ready_at", "predicted_at", "scored_at", "published_at"]
    stamps = run["provenance"]["stages"]  # a JSONB object: key order is the database's
    assert set(stamps) == set(order) and [stamps[k] for k in order] == sorted(stamps.values())
    assert set(stage_durations(run["provenance"]).to_dict()) == {
        "queued", "staging", "sandbox_ready", "predicting", "scoring", "publishing", "total"}
    assert run["provenance"]["sandbox"] == "warm"

    # The same object announced again, in MinIO's shape and SeaweedFS's, three times: still one run and result.
    head = blobs.head(stack.config.bundles_bucket, submission["key"])
    for _ in range(3):
        reply = requests.post(stack.url + "/v1/events/s3", headers=EVENTS_HEADERS,
                              json=minio_event(stack.config.bundles_bucket, submission["key"], head["size"],
                                               head["etag"]), timeout=10)
        assert reply.json()["outcomes"][0]["run_id"] == run_id
    stack.wait_drained()
    assert Run.select().count() == 1 and Run.get_by_id(run_id).attempts == 1
    assert ObjectEvent.get(ObjectEvent.key == submission["key"]).deliveries >= 4
    files = {k["key"][len(prefix):] for k in blobs.list_keys(bucket, prefix) if "/plots/" not in k["key"]}
    assert files == {"metrics.json", "predictions.parquet", "sandbox.log"}  # written once (and its plots)


def test_cancel_while_running_kills_the_container_and_stays_cancelled(stack, competition, docker_client):
    admin, alice, _ = competition
    submission = submit(stack, alice, sleepy_bundle(60))
    run_id = run_of(stack, alice, submission["id"])
    stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] == "running", 60)
    deadline = time.monotonic() + 20
    while not run_containers(docker_client, run_id, all=False):  # by label (cold) or name (warm)
        assert time.monotonic() < deadline, "the run's container never started"
        time.sleep(0.2)

    cancelled = stack.call("POST", f"/v1/runs/{run_id}/cancel", alice).json()
    assert cancelled["status"] == "cancelled"
    deadline = time.monotonic() + 20
    while run_containers(docker_client, run_id):
        assert time.monotonic() < deadline, "the cancelled run's container is still there"
        time.sleep(0.5)
    # A redelivered message does not revive it.
    from evaluator.worker.broker import create_broker

    broker = create_broker(stack.config)
    from dramatiq import Message

    broker.enqueue(Message(queue_name="cpu", actor_name="evaluate_run", args=(run_id,), kwargs={},
                           options={}))
    stack.wait_drained()
    assert stack.call("GET", f"/v1/runs/{run_id}", alice).json()["status"] == "cancelled"


def test_worker_killed_mid_run_is_taken_over_and_finishes_once(stack, competition):
    admin, alice, _ = competition
    submission = submit(stack, alice, sleepy_bundle(6))
    run_id = run_of(stack, alice, submission["id"])
    stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] == "running", 60)
    stack.kill(stack.workers[0])                     # kill -9 of the whole worker process group
    stack.start_worker()
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 240)
    assert run["status"] == "succeeded" and run["attempts"] >= 2, run
    assert Run.select().count() == 1


def test_upload_while_the_webhook_is_down_is_started_by_reconcile(stack, competition):
    import os
    import subprocess

    from evaluator.storage.models import Submission
    from tests.e2e.conftest import BIN

    admin, alice, _ = competition
    stack.kill(stack.workers[0], signal.SIGTERM)
    # only the command below may notice the lost upload (no periodic pass, no quick check of pending uploads)
    stack.start_worker(reconcile_interval_s=0, reconcile_uploads_interval_s=0)
    bundle = sklearn_bundle()
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "late", "method": "put", "size": len(bundle)}).json()
    stack.kill(stack.api)                          # the webhook target is down: no event arrives
    assert requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"]["headers"], timeout=30).ok
    assert Run.select().count() == 0

    result = subprocess.run([str(BIN / "evaluator"), "reconcile"], env={**os.environ, **stack.config.to_env()},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert grant["submission"]["key"] in result.stdout
    stack.start_api()
    run_id = Run.get(Run.submission == Submission.get_by_id(grant["submission"]["id"])).id
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded" and Run.select().count() == 1
