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
