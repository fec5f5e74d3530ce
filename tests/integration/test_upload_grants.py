"""Upload grants hold the API's checks at the store (SeaweedFS enforces signatures), and only granted uploads count.

- a PUT grant signs the declared length, the type and If-None-Match: another length or
  type is refused by the store, and the grant uploads once;
- POST policies and multipart parts bind the declared size too;
- the evaluated object is pinned by the ETag of its event: a later upload to the key
  starts nothing and changes nothing, and a replaced object is never evaluated;
- an object refused for size is deleted; revoking a token ends its pending grants;
- the quota holds under concurrent requests (tests/e2e/test_grants_live.py, over gunicorn workers);
- an event for a key no grant issued creates nothing (a forged event spends no one's quota).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from evaluator import runs
from evaluator.reconcile import reconcile
from evaluator.storage.models import ObjectEvent, Run, Submission
from tests.conftest import EVENTS_HEADERS as EVENTS
from tests.integration.helpers import create_benchmark, minio_event, register_dataset_over_http

pytestmark = pytest.mark.integration

BUNDLE = b"0123456789abcdef"  # what the store holds is all these tests look at; no worker runs a model


@pytest.fixture
def bench(api, admin):
    register_dataset_over_http(api, admin)
    return create_benchmark(api, admin, limits={"max_bundle_bytes": 1000}, quota={"limit": 5})


def ask(api, headers, **body):
    return api.simulate_post("/v1/benchmarks/iris/submissions", json={"name": "m", **body}, headers=headers)


def event_for(api, config, blobs, key):
    head = blobs.head(config.bundles_bucket, key)
    body = minio_event(config.bundles_bucket, key, head["size"], head["etag"])
    response = api.simulate_post("/v1/events/s3", json=body, headers=EVENTS)
    assert response.status_code == 200, response.text
    return response.json["outcomes"][0]


def test_a_put_grant_signs_length_and_type_and_uploads_once(api, bench, alice, blobs, config):
    assert ask(api, alice, method="put").json["error"]["field"] == "size"  # the length is declared up front
    grant = ask(api, alice, method="put", size=len(BUNDLE)).json["upload"]
    signed = parse_qs(urlsplit(grant["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "if-none-match"} <= set(signed)
    headers = grant["headers"]
    assert headers["Content-Length"] == str(len(BUNDLE)) and headers["Content-Type"] == "application/gzip"

    # The store refuses any other length (larger or smaller) or type: the signature covers them.
    for data, extra in ((BUNDLE + b"x" * 4096, {}), (BUNDLE[:-1], {}), (BUNDLE, {"Content-Type": "text/html"})):
        sent = {**headers, "Content-Length": str(len(data)), **extra}
        refused = requests.put(grant["url"], data=data, headers=sent, timeout=30)
        assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text, refused.text
        assert blobs.head(config.bundles_bucket, grant["key"]) is None
    assert requests.put(grant["url"], data=BUNDLE, timeout=30).status_code == 403  # headers left out

    assert requests.put(grant["url"], data=BUNDLE, headers=headers, timeout=30).status_code == 200
    stored = blobs.head(config.bundles_bucket, grant["key"])
    # Used once: the same grant cannot replace what was uploaded (the evaluated bundle stays the evaluated one).
    again = requests.put(grant["url"], data=b"x" * len(BUNDLE), headers=headers, timeout=30)
    assert again.status_code == 412, again.text
    assert blobs.head(config.bundles_bucket, grant["key"])["etag"] == stored["etag"]
    assert blobs.get_bytes(config.bundles_bucket, grant["key"]) == BUNDLE


def test_post_and_multipart_grants_bind_the_declared_size_and_type(api, admin, alice, blobs, config):
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, limits={"max_bundle_bytes": 64 * 1024 * 1024})
    post = ask(api, alice, method="post", size=len(BUNDLE)).json["upload"]
    for data, fields in ((BUNDLE + b"x", post["fields"]), (BUNDLE, {**post["fields"], "Content-Type": "text/html"})):
        refused = requests.post(post["url"], data=fields, files={"file": ("b.tar.gz", data)}, timeout=30)
        assert refused.status_code in (400, 403), refused.text
    ok = requests.post(post["url"], data=post["fields"], files={"file": ("b.tar.gz", BUNDLE)}, timeout=30)
    assert ok.status_code == 204, ok.text

    size = 5 * 1024 * 1024 + 7
    multipart = ask(api, alice, method="multipart", size=size).json["upload"]
    part = multipart["parts"][0]
    assert part["size"] == size
    assert requests.put(part["url"], data=b"x" * (size + 1), timeout=60).status_code == 403
    assert requests.put(part["url"], data=b"x" * size, timeout=60).status_code == 200


def test_a_later_upload_to_the_key_starts_nothing_and_changes_nothing(
        api, bench, alice, admin, blobs, config, sent):
    # A POST policy can be used until it expires (the store has no conditional POST), so it is the hard case.
    grant = ask(api, alice, method="post", size=len(BUNDLE)).json
    key, upload = grant["submission"]["key"], grant["upload"]

    def post(data: bytes) -> None:
        response = requests.post(upload["url"], data=upload["fields"], files={"file": ("b", data)}, timeout=30)
        assert response.status_code == 204, response.text

    post(BUNDLE)
    first_etag = blobs.head(config.bundles_bucket, key)["etag"]
    run_id = event_for(api, config, blobs, key)["run_id"]
    runs.finish(run_id, status="succeeded", metrics={"metrics": {"accuracy": 0.5}},
                provenance={"bundle_sha256": "the first upload's"})
    before = api.simulate_get(f"/v1/runs/{run_id}", headers=admin).json

    post(b"F" * len(BUNDLE))  # same length, other bytes: another ETag
    later = event_for(api, config, blobs, key)
    assert later["action"] == "ignored" and later["run_id"] is None, later
    assert Run.select().count() == 1 and sent.runs == [run_id]
    after = api.simulate_get(f"/v1/runs/{run_id}", headers=admin).json
    assert {k: after[k] for k in ("status", "metrics", "provenance")} == {
        k: before[k] for k in ("status", "metrics", "provenance")}
    assert Submission.get().etag == first_etag  # pinned: the worker would download only that version


def test_a_bundle_replaced_before_the_worker_downloads_it_is_not_evaluated(
        api, bench, alice, blobs, config, sent, stub_broker, stub_worker):
    from evaluator.worker import actors

    grant = ask(api, alice, method="post", size=len(BUNDLE)).json
    key, upload = grant["submission"]["key"], grant["upload"]
    requests.post(upload["url"], data=upload["fields"], files={"file": ("b", BUNDLE)}, timeout=30)
    run_id = event_for(api, config, blobs, key)["run_id"]
    requests.post(upload["url"], data=upload["fields"], files={"file": ("b", b"F" * len(BUNDLE))}, timeout=30)
    assert event_for(api, config, blobs, key)["action"] == "ignored"

    actors.evaluate_run.send(run_id)
    stub_broker.join(actors.CPU, fail_fast=False)
    stub_worker.join()
    run = Run.get_by_id(run_id)
    assert (run.status, run.failure_code) == ("failed", "bundle_invalid"), run.failure_message
    assert "replaced" in run.failure_message
    assert Submission.get().sha256 is None  # nothing of the replacement was evaluated


def test_an_object_refused_for_size_is_deleted_from_the_bucket(api, admin, alice, blobs, config, sent, stub_broker,
                                                               stub_worker):
    from evaluator.worker import actors

    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, limits={"max_bundle_bytes": 10})
    grant = ask(api, alice, method="put", size=10).json
    key = grant["submission"]["key"]
    # A store that ignored the signature (or a writer with the store's own keys) put more than the limit there.
    blobs.put_bytes(config.bundles_bucket, key, b"x" * 50, "text/html")
    run_id = event_for(api, config, blobs, key)["run_id"]
    actors.evaluate_run.send(run_id)
    stub_broker.join(actors.CPU, fail_fast=False)
    stub_worker.join()
    run = Run.get_by_id(run_id)
    assert (run.status, run.failure_code) == ("failed", "bundle_invalid")
    assert "50 bytes" in run.failure_message and "limit of 10" in run.failure_message
    assert blobs.head(config.bundles_bucket, key) is None


def test_revoking_a_token_ends_its_pending_grants(api, bench, admin, blobs, config, sent):
    issued = api.simulate_post("/v1/tokens", headers=admin, json={"owner": "temp", "role": "participant"}).json
    temp = {"Authorization": f"Bearer {issued['token']}"}
    put = ask(api, temp, method="put", size=len(BUNDLE)).json
    multipart = ask(api, temp, method="multipart", size=len(BUNDLE)).json
    assert api.simulate_delete(f"/v1/tokens/{issued['id']}", headers=admin).status_code == 204

    for grant in (put, multipart):
        shown = api.simulate_get(f"/v1/submissions/{grant['submission']['id']}", headers=admin).json
        assert shown["status"] == "rejected"
    # The multipart upload is aborted at the store: its part URL no longer uploads.
    part = multipart["upload"]["parts"][0]
    assert requests.put(part["url"], data=BUNDLE, timeout=30).status_code == 404
    # A presigned PUT cannot be recalled from the store, but its upload starts nothing and is deleted.
    assert requests.put(put["upload"]["url"], data=BUNDLE, headers=put["upload"]["headers"], timeout=30).ok
    outcome = event_for(api, config, blobs, put["submission"]["key"])
    assert outcome["action"] == "ignored" and Run.select().count() == 0 and sent.runs == []
    report = reconcile(config=config, blobs=blobs, queues=sent.as_queues(), full=True)
    assert report.deleted_uploads == [put["submission"]["key"]] and report.bundles_without_run == []
    assert blobs.head(config.bundles_bucket, put["submission"]["key"]) is None


def test_an_event_for_a_key_no_grant_issued_creates_nothing(api, bench, alice, blobs, config, sent):
    ask(api, alice, method="put", size=len(BUNDLE))  # alice has a real, pending submission
    quota_before = api.simulate_get("/v1/benchmarks/iris/quota", headers=alice).json
    forged = [f"bundles/iris/alice/evil/1/{uuid.uuid4()}.tar.gz",   # in her name, a fresh id
              "bundles/iris/carol/manual/2/model.tar.gz"]          # dropped in by hand
    for key in forged:
        blobs.put_bytes(config.bundles_bucket, key, BUNDLE)
        outcome = event_for(api, config, blobs, key)
        assert outcome["action"] == "ignored" and outcome["run_id"] is None, outcome
    # And one for an object that does not even exist.
    ghost = api.simulate_post("/v1/events/s3", headers=EVENTS, json=minio_event(
        config.bundles_bucket, f"bundles/iris/alice/m/1/{uuid.uuid4()}.tar.gz", 10, "e"))
    assert ghost.json["outcomes"][0]["action"] == "ignored"
    assert Run.select().count() == 0 and sent.runs == []
    assert Submission.select().count() == 1 and Submission.get().status == "awaiting_upload"
    assert api.simulate_get("/v1/benchmarks/iris/quota", headers=alice).json == quota_before
    # The reconciler does not adopt them either.
    report = reconcile(config=config, blobs=blobs, queues=sent.as_queues(), full=True)
    assert report.bundles_without_run == [] and Run.select().count() == 0
    assert ObjectEvent.select().where(ObjectEvent.key.in_(forged)).count() == len(forged)  # recorded, nothing more
