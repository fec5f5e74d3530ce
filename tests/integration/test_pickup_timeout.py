"""An idle worker looks for new messages every EVALUATOR_BROKER_WORKER_TIMEOUT_MS, not Dramatiq's 1,000 ms."""

from __future__ import annotations

import uuid

import dramatiq
import pytest

from evaluator.config import Config
from evaluator.worker.broker import create_broker, setup

pytestmark = [pytest.mark.integration]


def test_the_worker_consumes_with_the_configured_timeout(redis_url):
    config = Config(redis_url=redis_url, broker_namespace=f"pickup-{uuid.uuid4().hex[:8]}",
                    broker_worker_timeout_ms=40, sandbox_pool_size=0, reconcile_interval_s=0,
                    outbox_relay_interval_s=0, outbox_check_interval_s=0)
    broker = setup(config)

    @dramatiq.actor(broker=broker, queue_name="pickup-test")
    def noop() -> None:
        pass

    worker = dramatiq.Worker(broker, worker_threads=1)  # as the dramatiq CLI makes it: default timeout
    worker.start()
    try:
        timeouts = {thread.consumer.timeout for thread in worker.consumers.values()}
    finally:
        worker.stop()
        broker.close()
        dramatiq.set_broker(create_broker(Config()))

    assert worker.worker_timeout == 40
    assert timeouts == {40}


def test_an_idle_consumer_is_woken_by_a_new_message_not_by_its_next_look(redis_url):
    import threading
    import time

    from evaluator.worker.wakeup import WakingRedisBroker

    # Given the broker's consumer of an empty queue, whose looks are 30 s apart
    broker = create_broker(Config(redis_url=redis_url, broker_namespace=f"wake-{uuid.uuid4().hex[:8]}"))
    assert isinstance(broker, WakingRedisBroker)
    broker.declare_queue("wake-test")
    consumer = broker.consume("wake-test", prefetch=1, timeout=30_000)
    sent, looked = threading.Event(), threading.Event()
    seen: list = []

    def look() -> None:
        seen.append(next(consumer))  # finds nothing and waits
        seen.append(next(consumer))  # fetches what woke it
        looked.set()

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    try:
        # When a message is sent while it waits
        time.sleep(0.3)
        sent.set()
        message = broker.enqueue(dramatiq.Message(queue_name="wake-test", actor_name="noop", args=(), kwargs={},
                                                  options={}))
        # Then its wait ends with the message, long before the 30 s look
        assert looked.wait(20), "the consumer slept through the message"
        assert sent.is_set() and seen[0] is None
        assert seen[1] is not None and seen[1].message_id == message.message_id
    finally:
        consumer.close()
        broker.flush_all()
        broker.close()


def test_a_delayed_message_wakes_the_delay_queues_consumer(redis_url):
    from dramatiq.common import dq_name

    from evaluator.worker.wakeup import wake_key

    # Given a broker, when a message is sent now and another with a delay
    config = Config(redis_url=redis_url, broker_namespace=f"wake-{uuid.uuid4().hex[:8]}")
    broker = create_broker(config)
    broker.declare_queue("wake-test")
    try:
        for delay in (None, 60_000):
            broker.enqueue(dramatiq.Message(queue_name="wake-test", actor_name="noop", args=(), kwargs={},
                                            options={}), delay=delay)
        # Then each left a token on its own queue's wake list, which expires
        for queue in ("wake-test", dq_name("wake-test")):
            key = wake_key(config.broker_namespace, queue)
            assert broker.client.llen(key) == 1 and 0 < broker.client.ttl(key) <= 60
    finally:
        broker.flush_all()
        broker.client.delete(*(wake_key(config.broker_namespace, q) for q in ("wake-test", dq_name("wake-test"))))
        broker.close()
