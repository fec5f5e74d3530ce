"""Run queues by capability on the real services: the API stores limits.runtime, a run's message goes to its
benchmark's queue, the relay's broker check reads every run queue, and a worker consumes only what its host serves.
"""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from evaluator.capabilities import queue_of_run
from evaluator.storage.models import Benchmark
from tests.integration.test_outbox import announce

pytestmark = pytest.mark.integration


@pytest.fixture
def benchmarks(api, admin):
    """`plain` (default limits) and `gvisor` (limits.runtime runsc) over one ready dataset."""
    from tests.integration.helpers import create_benchmark, register_dataset_over_http

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, benchmark_id="plain")
    return create_benchmark(api, admin, benchmark_id="gvisor", limits={"runtime": "runsc", "memory": "512m"})


def a_run(api, alice, blobs, config, benchmark: str) -> str:
    from tests.integration.helpers import request_grant, upload_with_grant

    grant = request_grant(api, alice, benchmark=benchmark, method="post")
    upload_with_grant(grant, b"bundle")
    return announce(api, blobs, config, grant).json["outcomes"][0]["run_id"]


def test_the_api_keeps_a_benchmarks_runtime_and_refuses_a_malformed_one(api, admin, benchmarks):
    assert benchmarks["limits"]["runtime"] == "runsc"
    assert Benchmark.get_by_id("gvisor").limits["runtime"] == "runsc"
    assert "runtime" not in Benchmark.get_by_id("plain").limits  # unset: the worker's EVALUATOR_SANDBOX_RUNTIME
    response = api.simulate_post("/v1/benchmarks", headers=admin, json={
        "id": "bad", "dataset": "iris:1", "task": "classification", "limits": {"runtime": "run sc; rm"}})
    assert response.status_code == 422 and response.json["error"]["field"] == "limits.runtime"


def test_each_runs_message_goes_to_the_queue_its_benchmark_picks(api, alice, blobs, config, benchmarks, stub_broker):
    from evaluator.worker import actors

    # Given a run of each benchmark, recorded by intake
    plain, gvisor = a_run(api, alice, blobs, config, "plain"), a_run(api, alice, blobs, config, "gvisor")
    assert (queue_of_run(plain), queue_of_run(gvisor), queue_of_run("not-a-run")) == ("cpu", "runsc", "cpu")

    # When intake's senders (what the API, the relay and the reconciler call) send their messages
    stub_broker.flush_all()
    queues = actors.queues()
    queues.evaluate_run(plain)
    queues.evaluate_run(gvisor)
    actors._send_again(gvisor, 1, 0.0)  # a deferral (the run was leased) stays on its queue too

    # Then the gVisor run's messages are on `runsc` only, the default run's on `cpu`
    def on(queue: str) -> list[tuple]:
        held = stub_broker.queues[queue].queue
        return [tuple(dramatiq.Message.decode(data).args) for data in list(held)]

    assert on("cpu") == [(plain,)]
    assert on("runsc") == [(gvisor,)] and on("runsc.DQ") == [(gvisor,)] and on("gpu") == []
    stub_broker.flush_all()


def test_the_relays_broker_check_sees_a_run_message_on_any_run_queue(api, alice, blobs, config, benchmarks,
                                                                     stub_broker):
    from evaluator.worker import actors
    from evaluator.worker.broker import create_broker, held_arguments

    broker = create_broker(config)  # the real Redis, this test's namespace
    broker.declare_actor(actors.evaluate_run)
    try:
        plain, gvisor = a_run(api, alice, blobs, config, "plain"), a_run(api, alice, blobs, config, "gvisor")
        broker.enqueue(actors.evaluate_run.message(plain))
        broker.enqueue(actors.evaluate_run.message(gvisor).copy(queue_name="runsc"), delay=60_000)
        assert broker.client.hlen(f"{config.broker_namespace}:runsc.DQ.msgs") == 1
        assert held_arguments(broker, "evaluate_run") == {plain, gvisor}
    finally:
        for key in broker.client.scan_iter(f"{config.broker_namespace}:*"):
            broker.client.delete(key)


@pytest.mark.parametrize("configured, run_queues", [
    ("", None),  # detected: what this machine's Docker lists (cpu, and runsc once scripts/machine.sh registered it)
    ("cpu", {"cpu"}),
    ("cpu,runsc", {"cpu", "runsc"}),
    ("gpu", {"gpu"}),
])
def test_a_worker_consumes_only_the_run_queues_its_host_serves(config, docker_client, configured, run_queues):
    from evaluator.capabilities import RUN_QUEUES, detect_capabilities
    from evaluator.worker.middleware import ServedQueues

    run_queues = run_queues or set(detect_capabilities(docker_client.info()))

    # Given a broker with the run queues and the other actors' queues declared, and the worker's middleware
    broker = StubBroker()
    for queue in (*RUN_QUEUES, "datasets", "maintenance", "webhooks"):
        broker.declare_queue(queue)
    served = ServedQueues(config.replace(worker_capabilities=configured))
    broker.add_middleware(served)

    # When a worker boots on it
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        # Then it has consumers for the run queues of its capabilities (and their delay queues) and no others
        consumed = set(worker.consumers)
        assert {q for q in consumed if q in RUN_QUEUES} == run_queues
        assert {f"{q}.DQ" for q in run_queues} <= consumed
        assert {"datasets", "maintenance", "webhooks"} <= consumed
    finally:
        worker.stop()
        broker.close()
