"""/metrics counts the broker messages the outbox holds unsent: an upload while the broker is down shows there."""

from __future__ import annotations

import falcon.testing
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from evaluator import outbox
from evaluator.api.app import create_app
from evaluator.intake import Queues
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


def waiting(api) -> int:
    response = api.simulate_get("/metrics")
    assert response.status_code == 200
    assert "# TYPE evaluator_outbox_messages_waiting gauge" in response.text
    families = text_string_to_metric_families(response.text)
    [family] = [f for f in families if f.name == "evaluator_outbox_messages_waiting"]
    [sample] = family.samples
    return int(sample.value)


def test_metrics_count_outbox_messages_waiting_for_the_broker(api, db, admin, alice, blobs, config, sent):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    assert waiting(api) == 0

    # Given the broker is down (a real Redis client to a port nothing listens on) during two uploads
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)
    dead = Queues(*(lambda ident: client.rpush("never", ident) for _ in range(3)))
    down = falcon.testing.TestClient(create_app(config, database=db, blobs=blobs, queues=dead, health_checks={}))
    for name in ("first", "second"):
        grant = request_grant(api, alice, method="post", name=name)
        upload_with_grant(grant, b"bundle")
        key = grant["submission"]["key"]
        head = blobs.head(config.bundles_bucket, key)
        event = minio_event(config.bundles_bucket, key, head["size"], head["etag"])
        assert down.simulate_post("/v1/events/s3", headers=EVENTS, json=event).status_code == 200

    # Then /metrics shows both messages waiting, and none once the broker took them
    assert waiting(api) == 2
    assert outbox.flush(sent.as_queues()) == 2
    assert waiting(api) == 0
