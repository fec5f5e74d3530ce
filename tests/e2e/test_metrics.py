"""/metrics of the live stack (gunicorn with 2 workers, a dramatiq worker) parsed by prometheus_client's parser.

After a few runs every family is there with sane values, and every scrape, whichever
gunicorn worker answers it, reports the same counts (multiprocess mode). /health is
degraded while no worker beats, and ok once one does.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from evaluator.storage.blobs import BlobStore
from evaluator.storage.seaweed import free_port
from tests.conftest import EVENTS_HEADERS
from tests.e2e.bundles import sklearn_bundle, sleepy_bundle, trained_model
from tests.e2e.conftest import start_stack
from tests.e2e.test_pipeline import FINAL, run_of, submit
from tests.integration.helpers import minio_event, tar_bundle

pytestmark = pytest.mark.integration

RUN_FAMILIES = {"evaluator_run_stage_duration_seconds", "evaluator_run_failures", "evaluator_runs_finished"}
DRAMATIQ_FAMILIES = {"dramatiq_messages", "dramatiq_message_errors", "dramatiq_message_retries",
                     "dramatiq_message_rejects", "dramatiq_messages_inprogress", "dramatiq_delayed_messages_inprogress",
                     "dramatiq_message_duration_milliseconds"}
FAMILIES = {"evaluator_http_requests", "evaluator_http_request_duration_seconds", "evaluator_intake_events",
            *RUN_FAMILIES, *DRAMATIQ_FAMILIES, "evaluator_runs", "evaluator_runs_lease_expired",
            "evaluator_run_worker_crashes", "evaluator_outbox_messages_waiting", "evaluator_queue_depth",
            "evaluator_queue_delayed", "evaluator_queue_dead_letters", "evaluator_workers_live",
            "evaluator_worker_processes", "evaluator_sandboxes_in_use"}


def scrape(url: str) -> dict:
    """Return {family name: family} of one scrape (a new connection: any gunicorn worker may answer)."""
    response = requests.get(url, timeout=30, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "# HELP evaluator_http_requests_total " in response.text
    assert "# TYPE evaluator_http_requests_total counter" in response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict, sample: str, **labels: str) -> float:
    """The value of the one sample of this name whose labels include these."""
    name = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    family = families[name]
    found = [s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


def failing_bundle() -> bytes:
    """A model whose predict raises: the run ends failed with a code, after its sandbox ran."""
    buffer = io.BytesIO()
    joblib.dump(trained_model(), buffer)
    manifest = b"name: broken\nversion: 1\nframework: sklearn\nmodel: model.joblib\npredict: predict.py:predict\n"
    code = b"def predict(batch, model):\n    raise RuntimeError('this model is broken')\n"
    return tar_bundle({"evaluator.yaml": manifest, "model.joblib": buffer.getvalue(), "predict.py": code})


@pytest.fixture
def metrics_stack(webhook_s3, database_url, redis_url, db, tmp_path, images_built):
    images_built("sklearn")
    platform = start_stack(webhook_s3, database_url, redis_url, tmp_path, api_workers=2, worker_heartbeat_s=0.5,
                           worker_metrics_port=free_port())
    yield platform
    platform.stop()


def test_metrics_show_every_family_with_the_same_counts_from_every_api_worker(metrics_stack):
    stack = metrics_stack
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification",
                                         "limits": {"timeout_s": 300, "memory": "512m"}})
    # Given two runs that succeed, one that fails, and one slow enough to be seen in its sandbox
    submissions = [submit(stack, alice, bundle, name) for name, bundle in (
        ("good", sklearn_bundle()), ("good2", sklearn_bundle(seed=2)), ("broken", failing_bundle()))]
    run_ids = [run_of(stack, alice, s["id"]) for s in submissions]
    runs = [stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 400) for run_id in run_ids]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded", "failed"], runs
    code = runs[2]["failure"]["code"]
    slow = submit(stack, alice, sleepy_bundle(4), "slow")
    deadline = time.monotonic() + 300
    while value(scrape(stack.url + "/metrics"), "evaluator_sandboxes_in_use") != 1:
        assert time.monotonic() < deadline, "the slow run was never seen in its sandbox"
        time.sleep(0.3)
    slow_run = stack.wait_for(f"/v1/runs/{run_of(stack, alice, slow['id'])}", alice,
                              lambda r: r["status"] in FINAL, 400)
    assert slow_run["status"] == "succeeded"
    # ... an event delivered again (a duplicate) and one for a key that is not ours (ignored)
    bucket = stack.config.bundles_bucket
    key = submissions[0]["key"]
    head = BlobStore.from_config(stack.config).head(bucket, key)
    for event in (minio_event(bucket, key, head["size"], head["etag"]), minio_event(bucket, "elsewhere/x", 1, "e")):
        assert requests.post(stack.url + "/v1/events/s3", headers=EVENTS_HEADERS, json=event, timeout=30).ok
    stack.wait_drained()
    # ... and 20 requests of one route, over new connections (both gunicorn workers serve some)
    for _ in range(20):
        assert requests.get(stack.url + "/openapi.json", timeout=30, headers={"Connection": "close"}).ok

    # When /metrics is scraped several times
    scrapes = [scrape(stack.url + "/metrics") for _ in range(8)]

    # Then both gunicorn workers wrote samples, and every scrape has every family, with the same counts
    pids = {int(p.stem.rsplit("_", 1)[1]) for p in (Path(stack.config.metrics_dir) / "api").glob("counter_*.db")}
    assert len(pids) == 2, pids
    for families in scrapes:
        assert FAMILIES <= set(families), FAMILIES - set(families)
        assert value(families, "evaluator_http_requests_total", method="GET", route="/openapi.json",
                     status="200") == 20
        assert value(families, "evaluator_http_request_duration_seconds_count", route="/openapi.json") == 20
        assert value(families, "evaluator_http_request_duration_seconds_bucket", route="/openapi.json",
                     le="+Inf") == 20
        assert value(families, "evaluator_http_request_duration_seconds_sum", route="/openapi.json") > 0
        assert value(families, "evaluator_intake_events_total", outcome="new", kind="run") == 4
        assert value(families, "evaluator_intake_events_total", outcome="duplicate", kind="run") >= 1
        assert value(families, "evaluator_intake_events_total", outcome="ignored", kind="other") >= 1
        assert value(families, "evaluator_runs_finished_total", status="succeeded") == 3
        assert value(families, "evaluator_runs_finished_total", status="failed") == 1
        assert value(families, "evaluator_run_failures_total", code=code) == 1
        assert value(families, "evaluator_run_stage_duration_seconds_count", stage="total") == 4
        assert value(families, "evaluator_run_stage_duration_seconds_count", stage="predicting") == 4
        assert value(families, "evaluator_run_stage_duration_seconds_count", stage="scoring") == 3
        assert value(families, "evaluator_run_stage_duration_seconds_sum", stage="predicting") >= 4  # the slow one
        assert value(families, "evaluator_runs", status="succeeded") == 3
        assert value(families, "evaluator_runs", status="failed") == 1
        assert value(families, "evaluator_runs_lease_expired") == 0
        assert value(families, "evaluator_outbox_messages_waiting") == 0
        assert value(families, "evaluator_queue_depth", queue="cpu") == 0
        assert value(families, "evaluator_queue_delayed", queue="cpu") == 0
        assert value(families, "evaluator_workers_live") == 1
        assert value(families, "evaluator_worker_processes", host=socket.gethostname()) == 1
        assert value(families, "evaluator_sandboxes_in_use") == 0
        assert value(families, "dramatiq_messages_total", actor_name="evaluate_run") >= 4
        assert value(families, "dramatiq_message_duration_milliseconds_count", actor_name="evaluate_run") >= 4
        assert value(families, "dramatiq_messages_inprogress", actor_name="evaluate_run") == 0
        for family in families.values():  # histogram buckets only grow with `le`
            if family.type == "histogram":
                _assert_cumulative(family)
    # ... and /metrics' own count grows by one per scrape, whichever worker answered
    own = [value(f, "evaluator_http_requests_total", method="GET", route="/metrics", status="200") for f in scrapes]
    assert own == sorted(own) and own[-1] - own[0] == len(scrapes) - 1, own

    # The worker host's own exposition server serves what its processes recorded
    worker = scrape_worker(f"http://127.0.0.1:{stack.config.worker_metrics_port}/metrics")
    assert RUN_FAMILIES | DRAMATIQ_FAMILIES <= set(worker)
    assert value(worker, "evaluator_run_stage_duration_seconds_count", stage="total") == 4


def scrape_worker(url: str) -> dict:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _assert_cumulative(family) -> None:
    series: dict = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            series.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
    for points in series.values():
        counts = [count for _, count in sorted(points)]
        assert counts == sorted(counts), (family.name, points)


def health(stack) -> dict:
    response = stack.call("GET", "/health")
    assert response.status_code == 200, response.text
    return response.json()


def wait_health(stack, status: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while (body := health(stack))["status"] != status:
        assert time.monotonic() < deadline, f"/health stayed {body}\n{stack.log_tail()}"
        time.sleep(0.2)
    return body


def test_health_is_degraded_without_a_live_worker(webhook_s3, database_url, redis_url, db, tmp_path):
    # Given an API and no worker
    stack = start_stack(webhook_s3, database_url, redis_url, tmp_path, worker=False, worker_heartbeat_s=0.5,
                        worker_stale_s=3)
    try:
        body = health(stack)
        assert body["status"] == "degraded" and body["checks"]["database"] == {"ok": True}
        assert [reason for reason in body["reasons"] if "heartbeat" in reason], body
        assert body["checks"]["workers"]["ok"] is False
        # When a worker starts, it is ok
        worker = stack.start_worker()
        assert wait_health(stack, "ok") == {"status": "ok", "reasons": [], "checks": {
            "database": {"ok": True}, "broker": {"ok": True}, "object_store": {"ok": True}, "workers": {"ok": True}}}
        # ... and its container's health check says healthy while it beats, unhealthy once it hangs
        assert worker_healthcheck(stack) == (0, "healthy")
        os.killpg(worker.pid, signal.SIGSTOP)  # hung: alive, beating no more
        code, said = wait_for_healthcheck(stack, 1)
        assert said.startswith("unhealthy: no Dramatiq process of") and "heartbeat" in said, said
        os.killpg(worker.pid, signal.SIGCONT)
        # ... and degraded again once the killed worker's heartbeat is stale
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
        assert "heartbeat" in wait_health(stack, "degraded")["reasons"][0]
    finally:
        stack.stop()


def worker_healthcheck(stack) -> tuple[int, str]:
    """`evaluator healthcheck worker` as the compose HEALTHCHECK runs it, with the stack's settings."""
    result = subprocess.run([sys.executable, "-m", "evaluator", "healthcheck", "worker", "--timeout", "2"],
                            env=stack.env(), capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.strip()


def wait_for_healthcheck(stack, code: int, timeout_s: float = 30) -> tuple[int, str]:
    deadline = time.monotonic() + timeout_s
    while (found := worker_healthcheck(stack))[0] != code:
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
    return found


def test_a_worker_stopped_gracefully_leaves_the_live_set_at_once(webhook_s3, database_url, redis_url, db, tmp_path):
    stack = start_stack(webhook_s3, database_url, redis_url, tmp_path, worker_heartbeat_s=0.5, worker_stale_s=600)
    try:
        wait_health(stack, "ok")
        worker = stack.workers[0]
        os.kill(worker.pid, signal.SIGTERM)  # to dramatiq's master, as a process manager stops it
        worker.wait(60)  # (SIGTERM to the whole group makes dramatiq kill its worker processes without a shutdown)
        # its beat was removed on shutdown: no 600 s wait
        wait_health(stack, "degraded", timeout_s=30)
        assert value(scrape(stack.url + "/metrics"), "evaluator_workers_live") == 0
    finally:
        stack.stop()
