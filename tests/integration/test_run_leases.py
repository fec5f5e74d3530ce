"""Leases through the evaluate_run actor on an in-process worker: deferral, takeover, the poison-pill guard."""

from __future__ import annotations

import datetime
import time
import uuid

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission, utcnow
from tests.e2e.bundles import sklearn_bundle
from tests.integration.helpers import iris_like, parquet_bytes

pytestmark = pytest.mark.integration
ELSEWHERE = "another-host:4242:1"  # a worker of another host: only its lease's expiry says it died


def a_run(config, blobs, *, bundle: bytes = b"never read", **run_fields) -> Run:
    """A ready dataset, a benchmark over it, an uploaded bundle and its run with these fields."""
    features, labels = iris_like(60, seed=3)
    dataset = Dataset.create(name="iris", version=uuid.uuid4().hex[:6], status="ready",
                             features_key="datasets/iris/1/features.parquet",
                             labels_key="datasets/iris/1/labels.parquet")
    blobs.put_bytes(config.datasets_bucket, dataset.features_key, parquet_bytes(features))
    blobs.put_bytes(config.datasets_bucket, dataset.labels_key, parquet_bytes(labels))
    Benchmark.create(id="iris", title="iris", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="admin", limits={"timeout_s": 60, "memory": "512m"})
    submission = Submission.create(benchmark="iris", owner="alice", name="m", version="1", bucket=config.bundles_bucket,
                                   object_key=f"bundles/iris/alice/m/1/{uuid.uuid4()}.tar.gz", status="uploaded")
    blobs.put_bytes(config.bundles_bucket, submission.object_key, bundle)
    return Run.create(submission=submission, benchmark="iris", owner="alice", **run_fields)


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def test_a_message_that_finds_a_live_lease_comes_back_and_takes_over_when_it_expires(
        stub_broker, stub_worker, config, db, blobs, images_built):
    from evaluator.worker import actors, services

    # Given a run mid-evaluation on another host, whose lease still runs for 3 s (its worker just died)
    images_built("sklearn")
    services.configure(config.replace(lease_s=10, lease_renew_s=1))
    first_started = utcnow() - datetime.timedelta(seconds=20)
    run = a_run(config, blobs, bundle=sklearn_bundle(), status="running", attempts=1, lease_owner=ELSEWHERE,
                worker_host=ELSEWHERE, lease_expires_at=utcnow() + datetime.timedelta(seconds=3),
                preparing_at=first_started, running_at=first_started,
                provenance={"attempts": [{"attempt": 1, "worker": ELSEWHERE,
                                          "preparing_at": first_started.isoformat() + "Z",
                                          "running_at": first_started.isoformat() + "Z"}]})

    # When its redelivered message arrives (no reconciler runs here)
    actors.evaluate_run.send(str(run.id))

    # Then it is not dropped: it comes back after the lease ran out, takes the run over and finishes it
    final = wait_until(lambda: (r := Run.get_by_id(run.id)).status in ("succeeded", "failed") and r, 90,
                       f"the run was not taken over: {Run.get_by_id(run.id).status}")
    assert final.status == "succeeded", (final.failure_code, final.failure_message)
    assert (final.attempts, final.crashes) == (2, 1)
    # ... and the first attempt kept its own worker and timestamps; the second has its own
    first, second = final.provenance["attempts"]
    assert first["worker"] == ELSEWHERE and first["running_at"] == first_started.isoformat() + "Z"
    assert first["outcome"] == "worker_lost"
    assert second["worker"] != ELSEWHERE and second["outcome"] == "succeeded"
    assert second["preparing_at"] > first["running_at"] and "scoring_at" in second


def test_a_run_whose_worker_died_twice_ends_failed_worker_crashed(stub_broker, stub_worker, config, db, blobs):
    from evaluator.worker import actors, services

    # Given a run that already lost one worker, and whose second worker stopped renewing while scoring
    services.configure(config.replace(max_worker_crashes=2))
    run = a_run(config, blobs, status="scoring", attempts=2, crashes=1, lease_owner=ELSEWHERE,
                lease_expires_at=utcnow() - datetime.timedelta(seconds=1),
                provenance={"attempts": [{"attempt": 1, "worker": "w1", "outcome": "worker_lost"},
                                         {"attempt": 2, "worker": ELSEWHERE}]})

    # When a message for it is processed
    actors.evaluate_run.send(str(run.id))
    final = wait_until(lambda: (r := Run.get_by_id(run.id)).status == "failed" and r, 30,
                       f"the run did not end: {Run.get_by_id(run.id).status}")

    # Then the takeover counted the second crash and ended the run without a third evaluation
    assert final.failure_code == "worker_crashed"
    assert "2 times" in final.failure_message and "scoring" in final.failure_message
    assert (final.attempts, final.crashes) == (2, 2) and final.lease_owner is None
    assert final.provenance["attempts"][-1]["outcome"] == "worker_lost"
    # A redelivery changes nothing
    actors.evaluate_run.send(str(run.id))
    stub_broker.join(actors.CPU, fail_fast=False)
    stub_worker.join()
    assert Run.get_by_id(run.id).status == "failed" and Run.get_by_id(run.id).attempts == 2


def test_a_worker_reclaims_a_lease_it_holds_itself_without_counting_a_crash(config, db, blobs):
    from evaluator import runs
    from evaluator.workers import worker_name

    # Given a run this very worker holds (its release failed on a database outage)
    me = worker_name()
    run = a_run(config, blobs, status="running", attempts=1, lease_owner=me,
                lease_expires_at=utcnow() + datetime.timedelta(seconds=30),
                provenance={"attempts": [{"attempt": 1, "worker": me}]})
    # When its retry claims it, it gets it back as a new attempt, and no crash is counted
    claim = runs.acquire(str(run.id), me, lease_s=30, max_crashes=1)
    assert claim is not None and (claim.attempt, claim.crashes, claim.took_over, claim.poisoned) == (2, 0, None, False)
    assert Run.get_by_id(run.id).provenance["attempts"][0]["outcome"] == "interrupted"
    # ... while another worker is told how long the lease still holds
    with pytest.raises(runs.LeaseHeld) as held:
        runs.acquire(str(run.id), ELSEWHERE, lease_s=30)
    assert 25 < held.value.retry_after_s <= 30 and held.value.owner == me
