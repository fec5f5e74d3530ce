"""Intake survives its infrastructure: Redis down or restarted empty, the API down during an upload.

Each test runs the live stack (gunicorn API, dramatiq worker, SeaweedFS with its filer webhook) on a
PRIVATE redis-server, so stopping it disturbs nobody else's Redis.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
import requests

from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Run
from tests.conftest import EVENTS_HEADERS, require
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.conftest import emptied, shared_stack_of
from tests.e2e.redis_server import PrivateRedis
from tests.integration.helpers import minio_event

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
BENCHMARK = {"id": "iris", "task": "classification", "limits": {"timeout_s": 60, "memory": "512m"}}


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except FileNotFoundError as ex:
        require(False, f"redis-server ({ex})")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_redis_stack(webhook_s3, database_url, private_redis, migrated_database, tmp_path_factory):
    """One live stack for the module on the private Redis; the periodic reconciler is off."""
    yield from shared_stack_of(webhook_s3, database_url, private_redis.url, migrated_database, tmp_path_factory,
                               reconcile_interval_s=0)


@pytest.fixture
def redis_stack(module_redis_stack, private_redis, migrated_database, images_built):
    """The module's stack as a fresh one starts (its Redis up again), with a ready competition.

    Each test stops Redis or a process of the stack; Stack.put_back starts what it killed afterwards.
    """
    images_built("sklearn")
    if private_redis.proc is None:  # a test that failed while Redis was down
        private_redis.start()
    with emptied(module_redis_stack, migrated_database) as platform:
        platform.admin, platform.alice, _ = platform.competition(BENCHMARK)
        yield platform


def grant(stack, bundle: bytes, name: str = "model") -> dict:
    response = stack.call("POST", "/v1/benchmarks/iris/submissions", stack.alice,
                          json={"name": name, "method": "put", "size": len(bundle)})
    assert response.status_code == 201, response.text
    return response.json()


def upload(grant: dict, bundle: bytes) -> None:
    reply = requests.put(grant["upload"]["url"], data=bundle, headers=grant["upload"].get("headers") or {},
                         timeout=30)
    assert reply.ok, reply.text


def run_row(submission_id: str, timeout_s: float) -> Run:
    """Wait until the submission's run exists in PostgreSQL (the API may be down)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = Run.get_or_none(Run.submission == submission_id)
        if run is not None:
            return run
        time.sleep(0.1)
    raise AssertionError(f"no run for submission {submission_id} after {timeout_s}s")


def test_upload_while_redis_is_down_is_accepted_and_runs_once_redis_returns(redis_stack, private_redis):
    stack = redis_stack
    bundle = sklearn_bundle()
    granted = grant(stack, bundle)
    private_redis.stop()
    upload(granted, bundle)
    run = run_row(granted["submission"]["id"], 30)   # the filer's webhook reached the API ...
    # ... and the API committed the run; announcing the object again is still a 2xx while Redis is down
    key = granted["submission"]["key"]
    head = BlobStore.from_config(stack.config).head(stack.config.bundles_bucket, key)
    reply = requests.post(stack.url + "/v1/events/s3", headers=EVENTS_HEADERS, timeout=30,
                          json=minio_event(stack.config.bundles_bucket, key, head["size"], head["etag"]))
    assert reply.status_code == 200, reply.text
    assert reply.json()["outcomes"][0]["run_id"] == str(run.id)
    assert Run.get_by_id(run.id).status == "queued"

    private_redis.start()
    finished = stack.wait_for(f"/v1/runs/{run.id}", stack.alice, lambda r: r["status"] in FINAL, 60)
    assert finished["status"] == "succeeded", finished
    assert Run.select().count() == 1


def test_redis_restarted_without_persistence_loses_no_queued_run(redis_stack, private_redis):
    stack = redis_stack
    stack.kill(stack.workers[0], signal.SIGTERM)       # nobody consumes: the runs stay queued in Redis
    submissions = []
    for n in range(3):
        bundle = sklearn_bundle(seed=n + 1)
        granted = grant(stack, bundle, f"model-{n}")
        upload(granted, bundle)
        submissions.append(granted["submission"]["id"])
    run_ids = [str(run_row(s, 30).id) for s in submissions]
    client = redis.Redis.from_url(private_redis.url)
    messages = f"{stack.config.broker_namespace}:cpu.msgs"
    deadline = time.monotonic() + 30
    while client.hlen(messages) < len(run_ids):
        assert time.monotonic() < deadline, "the runs' messages never reached Redis"
        time.sleep(0.1)

    before = client.info("server")["run_id"]
    private_redis.restart()                           # no persistence: every message is gone
    assert client.info("server")["run_id"] != before and client.config_get("save")["save"] == ""
    stack.start_worker()  # the stack's Config: no periodic reconciler either
    for run_id in run_ids:
        finished = stack.wait_for(f"/v1/runs/{run_id}", stack.alice, lambda r: r["status"] in FINAL, 60)
        assert finished["status"] == "succeeded", finished
    assert Run.select().count() == len(run_ids)


def test_upload_while_the_api_is_down_gets_its_run_within_seconds(redis_stack):
    stack = redis_stack
    bundle = sklearn_bundle()
    granted = grant(stack, bundle)
    stack.kill(stack.api)                              # the filer's one POST fails and the event is dropped
    upload(granted, bundle)
    run = run_row(granted["submission"]["id"], 10)     # found by a worker's check of pending uploads
    stack.start_api()
    finished = stack.wait_for(f"/v1/runs/{run.id}", stack.alice, lambda r: r["status"] in FINAL, 120)
    assert finished["status"] == "succeeded", finished
