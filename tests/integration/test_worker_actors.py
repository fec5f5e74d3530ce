"""The evaluate_run actor on an in-process worker: retries for infrastructure, then a final state."""

from __future__ import annotations

import time

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission

pytestmark = pytest.mark.integration


def test_exhausted_retries_end_the_run_failed_with_code_internal(stub_broker, stub_worker, config, db, blobs):
    from evaluator.worker import actors, services

    # Given a run whose dataset never finishes registering (an infrastructure condition: retried)
    services.configure(config.replace(evaluate_max_retries=2))
    dataset = Dataset.create(name="never", version="1", features_key="f", labels_key="l")  # stays pending
    Benchmark.create(id="b", title="b", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="admin")
    submission = Submission.create(benchmark="b", owner="alice", name="m", version="1", bucket=config.bundles_bucket,
                                   object_key="bundles/b/alice/m/1/x.tar.gz", status="uploaded")
    blobs.put_bytes(config.bundles_bucket, submission.object_key, b"a bundle")
    run = Run.create(submission=submission, benchmark="b", owner="alice")

    # When the actor processes it (short backoff so the test does not wait minutes)
    actors.evaluate_run.send_with_options(args=(str(run.id),), min_backoff=10, max_backoff=50)
    deadline = time.monotonic() + 30
    while Run.get_by_id(run.id).status != "failed":
        assert time.monotonic() < deadline, Run.get_by_id(run.id).status
        time.sleep(0.1)

    # Then it was tried 3 times (1 + 2 retries), and ended failed/internal with the cause
    final = Run.get_by_id(run.id)
    assert final.attempts == 3
    assert final.failure_code == "internal"
    assert "3 time(s)" in final.failure_message and "not ready" in final.failure_message
    # A redelivery of the original message is a no-op: the run stays failed.
    actors.evaluate_run.send(str(run.id))
    stub_broker.join(actors.CPU, fail_fast=False)
    stub_worker.join()
    assert Run.get_by_id(run.id).status == "failed" and Run.get_by_id(run.id).attempts == 3
