"""Recovery through the real processes: kill -9 takeovers without the reconciler, orphaned containers of a
dead worker, the sweep's deployment boundary, the poison-pill guard (a PostgreSQL restart mid-run: in
test_recovery_postgres.py). The tests share one module stack; Stack.put_back replaces the workers they kill."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import requests

from evaluator.run_folders import run_folder
from evaluator.sandbox.runner import DEPLOYMENT_LABEL, RUN_LABEL, WORKER_LABEL, run_containers
from evaluator.storage.models import Run
from tests.e2e.bundles import sleepy_bundle
from tests.e2e.conftest import Stack, emptied, shared_stack_of, start_stack

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
LEASE_S = 8


# A short lease, a fast broker heartbeat and the periodic reconciler OFF.
RECOVERY = {"sandbox_timeout_s": 120, "reconcile_interval_s": 0, "lease_s": LEASE_S, "lease_renew_s": 1.0,
            "broker_heartbeat_timeout_ms": 5_000, "broker_maintenance_chance": 100_000}


def recovery_stack(webhook_s3, database_url: str, redis_url: str, tmp_path: Path, **overrides) -> Stack:
    """API + one worker with a short lease, a fast broker heartbeat and the periodic reconciler OFF."""
    return start_stack(webhook_s3, database_url, redis_url, tmp_path, **{**RECOVERY, **overrides})


@pytest.fixture(scope="module")
def module_recovery(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory):
    yield from shared_stack_of(webhook_s3, database_url, redis_url, migrated_database, tmp_path_factory, **RECOVERY)


@pytest.fixture
def recovery(module_recovery, migrated_database, images_built):
    """The module's recovery stack as a fresh one starts; the workers a test killed are replaced after it."""
    images_built("sklearn")
    with emptied(module_recovery, migrated_database) as platform:
        yield platform


def submit_sleepy(stack: Stack, seconds: float) -> tuple[str, str]:
    """A benchmark and one run of a model sleeping `seconds` in predict; returns (alice's token, run id)."""
    _, alice, _ = stack.competition({"id": "iris", "task": "classification",
                                     "limits": {"timeout_s": 120, "memory": "512m"}})
    bundle = sleepy_bundle(seconds)
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "sleepy", "method": "put", "size": len(bundle)}).json()
    upload = grant["upload"]
    assert requests.put(upload["url"], data=bundle, headers=upload.get("headers") or {}, timeout=30).ok
    body = stack.wait_for(f"/v1/submissions/{grant['submission']['id']}", alice, lambda s: s.get("runs"), 60)
    return alice, body["runs"][0]["id"]


def start_run(stack: Stack, seconds: float) -> tuple[str, str]:
    """Like submit_sleepy, returning once the run is running."""
    alice, run_id = submit_sleepy(stack, seconds)
    stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") == "running", 90)
    return alice, run_id


def containers_of(docker_client, run_id: str) -> list:
    """A run's containers: cold ones by label, a warm one (the pool is on by default) by its hand-over name."""
    return run_containers(docker_client, run_id)


def wait_until(predicate, timeout_s: float, what: str, stack: Stack):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}\n{stack.log_tail()}"
        time.sleep(0.2)
    return value


def holder(stack: Stack, run_id: str):
    """The worker process group whose process holds the run's lease now."""
    owner = Run.get_by_id(run_id).lease_owner
    pid = int(owner.rsplit(":", 2)[1])
    group = os.getpgid(pid)
    return next(w for w in stack.workers if w.pid == group)


def test_a_worker_killed_mid_run_is_taken_over_without_the_reconciler(recovery, docker_client):
    # Given a run in its sandbox, on a platform whose periodic reconciler is off
    alice, run_id = start_run(recovery, 8)
    first = Run.get_by_id(run_id).provenance["attempts"][0]

    # When its worker's process group is killed -9 and a fresh worker starts
    recovery.kill(holder(recovery, run_id))
    recovery.start_worker()

    # Then the redelivered message takes the run over and finishes it: exactly once, one result
    run = recovery.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, 180)
    assert run["status"] == "succeeded", run
    row = Run.get_by_id(run_id)
    assert (row.attempts, row.crashes) == (2, 1) and Run.select().count() == 1
    # ... and the first attempt kept its own worker and timestamps
    lost, second = row.provenance["attempts"]
    assert lost["worker"] == first["worker"] and lost["preparing_at"] == first["preparing_at"]
    assert lost["outcome"] == "worker_lost" and "running_at" in lost
    assert second["worker"] != lost["worker"] and second["outcome"] == "succeeded"
    assert run["timestamps"]["preparing"] == second["preparing_at"]
    # the container is removed after the result, off the run's path (runner.DockerSandbox.settle)
    wait_until(lambda: not containers_of(docker_client, run_id), 60, "the run's container was not removed",
               recovery)


def test_cancel_of_a_run_whose_worker_died_removes_its_container_and_run_folder(recovery, docker_client):
    # Given a run whose worker was killed -9 mid-run: its container runs on, nobody watches its time
    alice, run_id = start_run(recovery, 600)
    wait_until(lambda: containers_of(docker_client, run_id), 30, "the run's container never started", recovery)
    folder = run_folder(recovery.config, run_id)  # opaque name, computed as the worker does
    assert folder.is_dir()
    recovery.kill(holder(recovery, run_id))
    [container] = containers_of(docker_client, run_id)
    container.reload()
    assert container.status == "running"

    # When the participant cancels it and another worker of the deployment is up
    recovery.start_worker()
    assert recovery.call("POST", f"/v1/runs/{run_id}/cancel", alice).json()["status"] == "cancelled"

    # Then within a lease period its container is killed and removed, and its run folder is gone
    wait_until(lambda: not containers_of(docker_client, run_id), LEASE_S + 10,
               "the cancelled run's container is still there", recovery)
    wait_until(lambda: not folder.exists(), LEASE_S, "the dead attempt's run folder is still there", recovery)
    assert Run.get_by_id(run_id).status == "cancelled"


def test_the_sweep_leaves_a_container_of_another_deployment_alone(recovery, docker_client, images_built):
    # Given two exited sandbox containers of runs that do not exist: one of ours, one of another deployment
    image = images_built("sklearn")

    def orphan(deployment: str):
        container = docker_client.containers.create(
            image, entrypoint=["/bin/true"], network_disabled=True,
            labels={RUN_LABEL: str(uuid.uuid4()), DEPLOYMENT_LABEL: deployment, WORKER_LABEL: "gone-host:1:1"})
        container.start()
        container.wait(timeout=30)
        return container

    ours, theirs = orphan(recovery.config.deployment), orphan(f"other-{uuid.uuid4().hex[:6]}")
    try:
        # When our deployment's worker sweeps
        def gone(container) -> bool:
            try:
                container.reload()
                return False
            except Exception:  # docker.errors.NotFound
                return True

        wait_until(lambda: gone(ours), LEASE_S + 10, "our orphaned container was not swept", recovery)
        # Then the other deployment's container, swept in the same pass, is still there
        theirs.reload()
        assert theirs.labels[DEPLOYMENT_LABEL] != recovery.config.deployment
    finally:
        theirs.remove(force=True)


def test_a_run_that_kills_its_worker_twice_ends_failed_worker_crashed(recovery, docker_client):
    # Given a run whose evaluation kills its worker (simulated: kill -9 of the group while it runs)
    alice, run_id = start_run(recovery, 600)
    recovery.kill(holder(recovery, run_id))
    recovery.start_worker()
    wait_until(lambda: (r := Run.get_by_id(run_id)).attempts == 2 and r.status == "running", 120,
               "the run was not taken over", recovery)
    wait_until(lambda: containers_of(docker_client, run_id), 30, "attempt 2 started no container", recovery)

    # When it kills the worker that took it over too
    recovery.kill(holder(recovery, run_id))
    recovery.start_worker()

    # Then the next takeover ends it failed with a code that says so, instead of a third attempt
    run = recovery.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, 180)
    assert run["status"] == "failed" and run["failure"]["code"] == "worker_crashed", run
    assert "2 times" in run["failure"]["message"]
    row = Run.get_by_id(run_id)
    assert (row.attempts, row.crashes) == (2, 2)
    assert [a["outcome"] for a in row.provenance["attempts"]] == ["worker_lost", "worker_lost"]
    wait_until(lambda: not containers_of(docker_client, run_id), LEASE_S + 10,
               "the last attempt's container is still there", recovery)
