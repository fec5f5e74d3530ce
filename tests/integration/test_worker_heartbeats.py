"""Worker heartbeats in the broker's Redis, queue depths from its lists, and /health's `degraded`."""

from __future__ import annotations

import os
import socket
import time
import uuid

import dramatiq
import falcon.testing
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families

from evaluator.api.app import create_app
from evaluator.observability.heartbeats import Beat, RedisHeartbeats, no_worker_reason
from evaluator.observability.scrape import BrokerGauges, queue_sizes
from evaluator.worker.heartbeat import Heartbeat

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def test_a_beat_lives_for_its_ttl_and_is_gone_after(client):
    beats = RedisHeartbeats(client, f"hb-{uuid.uuid4().hex[:8]}")
    assert beats.live() == [] and no_worker_reason(beats, 30) is not None
    beats.beat(Beat(host="h1", pid=1, sandboxes_in_use=2, threads=4, at=1.0), ttl_s=60)
    beats.beat(Beat(host="h2", pid=7), ttl_s=0.3)
    assert [(b.host, b.pid, b.sandboxes_in_use) for b in beats.live()] == [("h1", 1, 2), ("h2", 7, 0)]
    assert no_worker_reason(beats, 30) is None
    wait_until(lambda: [b.host for b in beats.live()] == ["h1"])  # h2 stopped beating
    beats.forget("h1", 1)
    assert "heartbeat" in no_worker_reason(beats, 30)


def test_a_worker_beats_from_its_boot_and_leaves_at_its_shutdown(client, redis_url, config):
    namespace = f"hb-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)
    broker.add_middleware(Heartbeat(config.replace(broker_namespace=namespace, worker_heartbeat_s=0.1)))
    beats = RedisHeartbeats(client, namespace)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=3)
    worker.start()
    try:
        [beat] = beats.live()
        assert (beat.host, beat.pid, beat.threads) == (socket.gethostname(), os.getpid(), 3)
        first = beat.at
        wait_until(lambda: beats.live()[0].at > first)  # it keeps beating
    finally:
        worker.stop()
        broker.close()
    assert beats.live() == []


def test_queue_depth_reads_the_brokers_lists_and_workers_their_beats(client):
    namespace = f"q-{uuid.uuid4().hex[:8]}"
    client.rpush(f"{namespace}:evaluations", "a", "b")
    client.rpush(f"{namespace}:evaluations.DQ", "c")
    client.zadd(f"{namespace}:evaluations.XQ", {"d": 1.0})
    try:
        broker = type("Broker", (), {"client": client})()
        assert queue_sizes(broker, namespace, ["evaluations", "datasets"]) == {
            "evaluations": (2, 1, 1), "datasets": (0, 0, 0)}
        beats = RedisHeartbeats(client, namespace)
        beats.beat(Beat(host="h1", pid=1, sandboxes_in_use=1), ttl_s=60)
        beats.beat(Beat(host="h1", pid=2, sandboxes_in_use=2), ttl_s=60)
        from evaluator.observability.scrape import exposition

        text = exposition([BrokerGauges(broker, namespace, lambda: ["evaluations", "datasets"], beats)]).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert {s.labels["queue"]: s.value for s in families["evaluator_queue_depth"].samples} == {
            "evaluations": 2, "datasets": 0}
        assert families["evaluator_workers_live"].samples[0].value == 2
        assert [(s.labels, s.value) for s in families["evaluator_worker_processes"].samples] == [({"host": "h1"}, 2)]
        assert families["evaluator_sandboxes_in_use"].samples[0].value == 3
    finally:
        client.delete(*client.keys(f"{namespace}:*"))


def test_health_is_degraded_with_a_reason_and_unavailable_when_a_part_is_down(config, db, blobs, sent):
    def down() -> None:
        raise ConnectionError("refused")

    def app(checks, reason):
        return falcon.testing.TestClient(create_app(config, database=db, blobs=blobs, queues=sent.as_queues(),
                                                    health_checks=checks, advisories={"workers": lambda: reason}))

    degraded = app({"database": lambda: None}, "no worker has sent a heartbeat").simulate_get("/health")
    assert degraded.status_code == 200 and degraded.json == {
        "status": "degraded", "reasons": ["no worker has sent a heartbeat"],
        "checks": {"database": {"ok": True}, "workers": {"ok": False, "error": "no worker has sent a heartbeat"}}}
    ok = app({"database": lambda: None}, None).simulate_get("/health")
    assert ok.status_code == 200 and ok.json["status"] == "ok" and ok.json["reasons"] == []
    unavailable = app({"database": down}, "no worker").simulate_get("/health")
    assert unavailable.status_code == 503 and unavailable.json["status"] == "unavailable"
    assert unavailable.json["reasons"] == ["database: ConnectionError: refused", "no worker"]
