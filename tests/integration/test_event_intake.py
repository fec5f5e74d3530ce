"""POST /v1/events/s3 through HTTP: authentication, bad events, and idempotent intake."""

from __future__ import annotations

import pytest

from evaluator.storage.models import ObjectEvent, Run, Submission
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
def uploaded(api, admin, alice, blobs, config):
    """A benchmark and one participant bundle uploaded through its grant: (grant, head)."""
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin)
    grant = request_grant(api, alice, method="put", size=len(b"not really a bundle"))
    upload_with_grant(grant, b"not really a bundle")
    return grant, blobs.head(config.bundles_bucket, grant["submission"]["key"])


def post_event(api, body, headers=EVENTS):
    return api.simulate_post("/v1/events/s3", json=body, headers=headers)


def test_same_notification_three_times_gives_one_run_and_one_record(api, uploaded, config, sent):
    grant, head = uploaded
    body = minio_event(config.bundles_bucket, grant["submission"]["key"], head["size"], head["etag"])
    run_ids = {post_event(api, body).json["outcomes"][0]["run_id"] for _ in range(3)}
    assert len(run_ids) == 1 and Run.select().count() == 1
    event = ObjectEvent.get()
    assert event.deliveries == 3
    # A queued run is re-sent on each delivery (a lost send loses nothing); workers dedupe by claim.
    assert set(sent.runs) == run_ids
    assert Submission.get().status == "uploaded"


def test_put_then_complete_multipart_for_one_upload_is_one_run(api, uploaded, config):
    grant, head = uploaded
    key = grant["submission"]["key"]
    for name in ("s3:ObjectCreated:Put", "s3:ObjectCreated:CompleteMultipartUpload"):
        assert post_event(
            api, minio_event(config.bundles_bucket, key, head["size"], head["etag"], name)).status_code == 200
    assert Run.select().count() == 1 and ObjectEvent.select().count() == 1


def test_bad_events_are_refused_or_ignored_and_the_api_keeps_serving(api, uploaded, config, alice):
    grant, head = uploaded
    body = minio_event(config.bundles_bucket, grant["submission"]["key"], head["size"], head["etag"])
    wrong = post_event(api, body, headers={"Authorization": "Bearer wrong"})
    assert (wrong.status_code, wrong.json["error"]["code"]) == (401, "unauthorized")
    assert post_event(api, body, headers={}).status_code == 401
    malformed = api.simulate_post("/v1/events/s3", body=b"{nope",
                                  headers={**EVENTS, "Content-Type": "application/json"})
    assert (malformed.status_code, malformed.json["error"]["code"]) == (400, "bad_request")
    for key in ("elsewhere/x.tar.gz", "results/iris/abc/metrics.json", "bundles/nobench/bob/m/1/x.tar.gz"):
        ignored = post_event(api, minio_event(config.bundles_bucket, key, 3, "e"))
        assert ignored.status_code == 200 and ignored.json["outcomes"][0]["action"] == "ignored", ignored.text
    other_bucket = post_event(api, minio_event("someone-elses", grant["submission"]["key"], 3, "e"))
    assert other_bucket.json["outcomes"][0]["action"] == "ignored"
    assert Run.select().count() == 0
    assert api.simulate_get("/v1/benchmarks/iris", headers=alice).status_code == 200


def test_a_bundle_dropped_in_by_hand_starts_nothing(api, uploaded, blobs, config, admin):
    # Only granted keys become runs (more in test_upload_grants.py): no run in someone else's name.
    key = "bundles/iris/carol/manual/2/model.tar.gz"
    blobs.put_bytes(config.bundles_bucket, key, b"dropped through the console")
    response = post_event(api, minio_event(config.bundles_bucket, key, 27, "e1"))
    assert response.json["outcomes"][0]["action"] == "ignored"
    assert Submission.get_or_none(Submission.object_key == key) is None and Run.select().count() == 0


def test_dataset_upload_events_queue_registration(api, admin, config, sent):
    dataset = register_dataset_over_http(api, admin, name="ds", version="3", register=False)
    response = post_event(api, minio_event(config.datasets_bucket, "datasets/ds/3/labels.parquet", 10, "e"))
    assert response.json["outcomes"][0]["action"] == "dataset"
    assert sent.datasets == [dataset["id"]]
