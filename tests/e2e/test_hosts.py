"""Several worker hosts: three fake hosts (network namespaces of their own, each with its own hostname, workers
and run folder) share PostgreSQL, Redis and the S3 store on the host side. Runs spread over them, a killed host
loses no run, and a run that needs gVisor waits on its queue until a host that serves it takes it.
"""

from __future__ import annotations

import time

import dramatiq
import pytest
import redis
import requests

from evaluator.storage.models import Run
from tests.conftest import require
from tests.e2e import netns
from tests.e2e.bundles import sklearn_bundle, sleepy_bundle
from tests.e2e.hosts import HostStack, SharedServices

pytestmark = pytest.mark.integration
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
LEASE_S = 8
LIMITS = {"timeout_s": 120, "memory": "512m"}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    why = netns.available()
    require(why is None, f"fake worker hosts in network namespaces ({why})")
    shared = SharedServices(tmp_path_factory.mktemp("hosts"), hosts=3)
    try:
        shared.start()
    except FileNotFoundError as ex:  # no PostgreSQL binaries, redis-server or weed
        require(False, f"private services for the fake hosts ({ex})")
    yield shared
    shared.stop()


@pytest.fixture
def platform(services, tmp_path, images_built):
    """The API, no worker yet; short leases and a fast broker heartbeat; the periodic reconciler off."""
    images_built("sklearn")
    stack = services.stack(tmp_path, lease_s=LEASE_S, lease_renew_s=1.0, broker_heartbeat_timeout_ms=5_000,
                           broker_maintenance_chance=100_000, reconcile_interval_s=0, sandbox_timeout_s=120)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.stop()


def submit(stack: HostStack, token: str, benchmark: str, bundle: bytes) -> str:
    """Upload one bundle to a benchmark; returns its run id once intake created the run."""
    grant = stack.call("POST", f"/v1/benchmarks/{benchmark}/submissions", token,
                       json={"name": "m", "method": "put", "size": len(bundle)}).json()
    upload = grant["upload"]
    assert requests.put(upload["url"], data=bundle, headers=upload.get("headers") or {}, timeout=30).ok
    body = stack.wait_for(f"/v1/submissions/{grant['submission']['id']}", token, lambda s: s.get("runs"), 60)
    return body["runs"][0]["id"]


def held_on(stack: HostStack, queue: str) -> set[str]:
    """Run ids of the evaluate_run messages Redis holds on `queue` (queued, delayed or unacknowledged)."""
    client = redis.Redis.from_url(stack.config.redis_url)
    held = set()
    for name in (queue, f"{queue}.DQ"):
        for data in client.hvals(f"{stack.config.broker_namespace}:{name}.msgs"):
            held.add(str(dramatiq.Message.decode(data).args[0]))
    return held


def wait_until(predicate, timeout_s: float, what: str, stack: HostStack):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}\n{stack.log_tail()}"
        time.sleep(0.2)
    return value


def test_runs_spread_over_three_hosts_and_a_killed_host_loses_none(platform):
    # Given three hosts, one worker process each, and nine runs of a model that sleeps 3 s
    for index in (1, 2, 3):
        platform.start_host(index)
    _, alice, _ = platform.competition({"id": "iris", "task": "classification", "limits": LIMITS})
    bundle = sleepy_bundle(3)
    run_ids = [submit(platform, alice, "iris", bundle) for _ in range(9)]

    # When host 3's worker processes are killed -9 while one of its runs is in its sandbox
    def running_on_host_3():
        return next((r for r in Run.select().where(Run.status == "running")
                     if platform.host_of(r.lease_owner) == 3), None)

    victim = wait_until(running_on_host_3, 120, "host 3 never ran a run", platform)
    platform.kill_host(3)

    # Then every run succeeds: the one host 3 held is taken over by another host once its lease runs out
    runs = [platform.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r.get("status") in FINAL, 240)
            for run_id in run_ids]
    assert [r["status"] for r in runs] == ["succeeded"] * 9, [(r["id"], r["status"], r.get("failure")) for r in runs]
    rows = {str(r.id): r for r in Run.select()}
    assert len(rows) == 9
    # ... the runs spread over the hosts: every host recorded at least one
    assert {platform.host_of(row.worker_host) for row in rows.values()} >= {1, 2}
    assert any(platform.host_of(a["worker"]) == 3 for row in rows.values() for a in row.provenance["attempts"])
    # ... and the killed host's run was finished elsewhere, on its second attempt
    taken_over = rows[str(victim.id)]
    assert (taken_over.attempts, taken_over.crashes) == (2, 1), taken_over.provenance
    lost, finished = taken_over.provenance["attempts"]
    assert platform.host_of(lost["worker"]) == 3 and lost["outcome"] == "worker_lost"
    assert platform.host_of(finished["worker"]) in (1, 2) and finished["outcome"] == "succeeded"
    assert all(row.attempts == 1 for run_id, row in rows.items() if run_id != str(victim.id))


def test_a_runsc_run_waits_on_its_queue_until_a_host_that_serves_runsc_takes_it(platform):
    # Given host 1 serving the cpu queue only, and a default benchmark and a gVisor one
    platform.start_host(1, worker_capabilities="cpu")
    admin, alice, _ = platform.competition({"id": "iris", "task": "classification", "limits": LIMITS})
    created = platform.call("POST", "/v1/benchmarks", admin, json={
        "id": "gvisor", "dataset": "iris:1", "task": "classification", "limits": {**LIMITS, "runtime": "runsc"}})
    assert created.status_code == 201, created.text

    # When a run of the gVisor benchmark is submitted, then one of the default benchmark
    gvisor = submit(platform, alice, "gvisor", sklearn_bundle())
    plain = submit(platform, alice, "iris", sklearn_bundle())

    # Then host 1 runs the default one, and never takes the other: its message waits on the runsc queue
    done = platform.wait_for(f"/v1/runs/{plain}", alice, lambda r: r.get("status") in FINAL, 120)
    assert done["status"] == "succeeded" and platform.host_of(Run.get_by_id(plain).worker_host) == 1
    waiting = Run.get_by_id(gvisor)
    assert (waiting.status, waiting.attempts, waiting.worker_host) == ("queued", 0, None)
    assert gvisor in held_on(platform, "runsc") and gvisor not in held_on(platform, "cpu")

    # When host 2 starts, serving cpu and runsc
    platform.start_host(2, worker_capabilities="cpu,runsc")

    # Then host 2 takes the run (in gVisor when this Docker has runsc, else it fails naming the missing runtime)
    run = platform.wait_for(f"/v1/runs/{gvisor}", alice, lambda r: r.get("status") in FINAL, 180)
    row = Run.get_by_id(gvisor)
    assert platform.host_of(row.worker_host) == 2 and row.attempts == 1
    missing_runtime = run["status"] == "failed" and run["failure"]["code"] == "sandbox_error" and (
        "runsc" in run["failure"]["message"])
    assert run["status"] == "succeeded" or missing_runtime, run
    assert row.provenance["limits"]["runtime"] == "runsc"
    wait_until(lambda: gvisor not in held_on(platform, "runsc"), 30, "the runsc message was never acknowledged",
               platform)  # acknowledged once the actor returns, just after the run is recorded
