"""The outbox and the quick upload check on real PostgreSQL, Redis and SeaweedFS.

Intake commits each run with its pending message; the webhook answers 2xx when
the broker is down; relays never send a row twice; queued runs whose message the
broker lost are re-sent; pending uploads are found without listing the bucket.
"""

from __future__ import annotations

import datetime
import threading
import time

import pytest
import redis

from evaluator import outbox, reconcile
from evaluator.intake import Queues
from evaluator.storage.models import OutboxMessage, Run, Submission
from evaluator.storage.seaweed import free_port
from tests.conftest import EVENTS_HEADERS as EVENTS
from tests.integration.helpers import (
    create_benchmark,
    minio_event,
    register_dataset_over_http,
    request_grant,
    upload_with_grant,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def benchmark(api, admin):
    register_dataset_over_http(api, admin)
    return create_benchmark(api, admin)


def uploaded_grant(api, alice, name: str = "model") -> dict:
    grant = request_grant(api, alice, method="post", name=name)
    upload_with_grant(grant, b"bundle")
    return grant


def announce(api, blobs, config, grant: dict):
    key = grant["submission"]["key"]
    head = blobs.head(config.bundles_bucket, key)
    return api.simulate_post("/v1/events/s3", headers=EVENTS,
                             json=minio_event(config.bundles_bucket, key, head["size"], head["etag"]))


def dead_broker_queues() -> Queues:
    """Senders over a real Redis client to a port nothing listens on: each send raises ConnectionError."""
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)

    def send(ident: str) -> None:
        client.rpush("never", ident)

    return Queues(evaluate_run=send, register_dataset=send, rescore_run=send)


def test_the_webhook_answers_2xx_while_the_broker_is_down_and_the_run_is_sent_later(
        api, db, benchmark, alice, blobs, config, sent):
    import falcon.testing

    from evaluator.api.app import create_app

    down = falcon.testing.TestClient(create_app(config, database=db, blobs=blobs, queues=dead_broker_queues(),
                                                health_checks={}))
    grant = uploaded_grant(api, alice)
    response = announce(down, blobs, config, grant)
    assert response.status_code == 200, response.text
    run_id = response.json["outcomes"][0]["run_id"]
    assert Run.get_by_id(run_id).status == "queued"
    pending = OutboxMessage.get()
    assert (pending.kind, pending.argument, pending.sent_at, pending.attempts) == ("evaluate_run", run_id, None, 1)
    assert "ConnectionError" in pending.last_error
    # The store announces it again while the broker is still down: still one pending message.
    assert announce(down, blobs, config, grant).status_code == 200
    assert OutboxMessage.select().count() == 1

    # The broker is back: the relay's pass sends it once and stamps it.
    assert outbox.flush(sent.as_queues()) == 1
    assert sent.runs == [run_id]
    assert OutboxMessage.get().sent_at is not None
    assert outbox.flush(sent.as_queues()) == 0 and sent.runs == [run_id]


def test_relays_running_at_once_send_each_message_exactly_once(db):
    with db.atomic():
        for n in range(60):
            outbox.add("evaluate_run", f"run-{n}")
    sent: list[str] = []
    lock = threading.Lock()

    def slow_send(ident: str) -> None:
        time.sleep(0.005)   # a send takes a while: the relays overlap
        with lock:
            sent.append(ident)

    queues = Queues(evaluate_run=slow_send, register_dataset=slow_send, rescore_run=slow_send)

    def relay() -> None:
        with db.connection_context():
            for _ in range(5):
                outbox.deliver(queues, limit=7)

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == sorted(f"run-{n}" for n in range(60))   # every one, none twice
    assert outbox.pending_count() == 0


@pytest.fixture
def redis_broker(stub_broker, config):
    """A real Redis broker (this test's namespace) carrying the evaluate_run actor's messages."""
    from evaluator.worker import actors
    from evaluator.worker.broker import create_broker

    broker = create_broker(config)
    broker.declare_actor(actors.evaluate_run)
    yield broker
    for key in broker.client.scan_iter(f"{config.broker_namespace}:*"):
        broker.client.delete(key)


def test_queued_runs_whose_message_the_broker_lost_are_re_sent_once(api, benchmark, alice, blobs, config,
                                                                    redis_broker):
    from evaluator.worker import actors
    from evaluator.worker.broker import held_arguments

    def send(run_id: str):
        return redis_broker.enqueue(actors.evaluate_run.message(run_id))

    queues = Queues(evaluate_run=send, register_dataset=send, rescore_run=send)
    run_ids = []
    for name in ("kept", "lost", "delayed"):
        grant = uploaded_grant(api, alice, name)
        run_ids.append(announce(api, blobs, config, grant).json["outcomes"][0]["run_id"])
    kept, lost, delayed = run_ids
    send(kept)
    redis_broker.enqueue(actors.evaluate_run.message(delayed), delay=60_000)  # a retry waiting for its backoff
    held = lambda kind: held_arguments(redis_broker, kind)  # noqa: E731
    assert held("evaluate_run") == {kept, delayed}

    # Just queued: nothing is compared yet (a message may be on its way).
    assert outbox.resend_lost(queues, held, older_than_s=10) == []
    later = datetime.datetime.utcnow() + datetime.timedelta(seconds=30)
    assert outbox.resend_lost(queues, held, older_than_s=10, now=later) == [lost]
    assert held("evaluate_run") == {kept, lost, delayed}
    # Its new message is in Redis now: the next pass sends nothing more.
    assert outbox.resend_lost(queues, held, older_than_s=10, now=later) == []
    # A run a worker has claimed meanwhile is not queued any more: not re-sent even when its message is gone.
    Run.update(status="preparing").where(Run.id == kept).execute()
    redis_broker.flush_all()
    even_later = later + datetime.timedelta(seconds=30)
    assert sorted(outbox.resend_lost(queues, held, older_than_s=10, now=even_later)) == sorted([lost, delayed])


def test_pending_uploads_are_found_by_head_without_listing_the_bucket(api, benchmark, alice, blobs, config, sent):
    fresh = uploaded_grant(api, alice, "fresh")              # its notification never arrived
    waiting = request_grant(api, alice, method="post", name="waiting")   # granted, not uploaded yet
    stale = uploaded_grant(api, alice, "stale")
    long_ago = datetime.datetime.utcnow() - datetime.timedelta(seconds=3 * config.upload_expiry_s)
    Submission.update(expires_at=long_ago).where(Submission.id == stale["submission"]["id"]).execute()

    found = reconcile.check_pending_uploads(config=config, blobs=blobs, queues=sent.as_queues())
    assert found == [fresh["submission"]["key"]]
    run = Run.get(Run.submission == fresh["submission"]["id"])
    assert run.status == "queued" and sent.runs == [str(run.id)]
    assert Submission.get_by_id(waiting["submission"]["id"]).status == "awaiting_upload"
    # A grant that expired long ago is beyond the quick check; the rare full pass lists the bucket and finds it.
    assert reconcile.check_pending_uploads(config=config, blobs=blobs, queues=sent.as_queues()) == []
    report = reconcile.reconcile(config=config, blobs=blobs, queues=sent.as_queues(), full=True)
    assert report.bundles_without_run == [stale["submission"]["key"]]
    assert Run.select().count() == 2


def test_a_redis_that_lost_its_data_is_noticed_until_its_runs_were_compared(redis_broker):
    from evaluator.worker.broker import mark_epoch, started_empty

    assert started_empty(redis_broker) is True      # a Redis this namespace never used: compare at once
    assert started_empty(redis_broker) is True      # ... until a pass has compared its queued runs
    mark_epoch(redis_broker)
    assert started_empty(redis_broker) is False
    for key in redis_broker.client.scan_iter(f"{redis_broker.namespace}:*"):
        redis_broker.client.delete(key)             # what a restart without persistence leaves
    assert started_empty(redis_broker) is True
