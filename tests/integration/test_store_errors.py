"""S3 errors are translated at the adapter: a missing object fails a run once with its own code, no retries.

Through the evaluate_run actor on an in-process worker, with the real SeaweedFS store.
"""

from __future__ import annotations

import pytest

from evaluator.errors import InfrastructureError, ObjectMissing, is_retryable
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Benchmark, Dataset, Run, Submission

pytestmark = pytest.mark.integration


def _run(config, blobs, *, dataset: Dataset, keep_bundle: bool) -> Run:
    Benchmark.create(id="b", title="b", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="admin")
    key = "bundles/b/alice/m/1/x.tar.gz"
    etag = blobs.put_bytes(config.bundles_bucket, key, b"a bundle")
    submission = Submission.create(benchmark="b", owner="alice", name="m", version="1", bucket=config.bundles_bucket,
                                   object_key=key, status="uploaded", etag=etag)
    if not keep_bundle:
        blobs.delete(config.bundles_bucket, key)  # deleted after its upload event, before its run
    return Run.create(submission=submission, benchmark="b", owner="alice")


def _process(stub_broker, stub_worker, run: Run) -> Run:
    from evaluator.worker import actors

    actors.evaluate_run.send_with_options(args=(str(run.id),), min_backoff=10, max_backoff=50)
    stub_broker.join(actors.CPU, fail_fast=False)  # the queue and its delayed retries drained
    stub_worker.join()
    return Run.get_by_id(run.id)


def test_a_bundle_deleted_between_event_and_run_fails_once_as_bundle_missing(
        stub_broker, stub_worker, config, db, blobs):
    dataset = Dataset.create(name="d", version="1", features_key="f", labels_key="l")
    run = _run(config, blobs, dataset=dataset, keep_bundle=False)

    final = _process(stub_broker, stub_worker, run)

    assert (final.status, final.failure_code) == ("failed", "bundle_missing")
    assert final.attempts == 1  # no retry: the participant must submit again
    assert "no longer in the store" in final.failure_message


def test_a_dataset_file_gone_from_the_store_fails_once_as_dataset_missing(
        stub_broker, stub_worker, config, db, blobs):
    dataset = Dataset.create(name="d", version="1", features_key="datasets/gone/f.parquet",
                             labels_key="datasets/gone/l.parquet", status="ready", labels_sha256="0" * 64)
    run = _run(config, blobs, dataset=dataset, keep_bundle=True)

    final = _process(stub_broker, stub_worker, run)

    assert (final.status, final.failure_code) == ("failed", "dataset_missing")
    assert final.attempts == 1
    assert "organiser must publish" in final.failure_message


def test_the_store_adapter_names_a_missing_object_and_an_unreachable_store(config, blobs, tmp_path):
    with pytest.raises(ObjectMissing) as missing:
        blobs.download(config.bundles_bucket, "no/such/key", tmp_path / "x")
    assert missing.value.code == "object_missing" and not is_retryable(missing.value)
    with pytest.raises(ObjectMissing):
        blobs.get_bytes(config.results_bucket, "no/such/key")
    assert blobs.head(config.bundles_bucket, "no/such/key") is None

    # Nothing listens on port 9 of loopback: connection refused is the platform's, and retried.
    down = BlobStore.from_config(config.replace(s3_endpoint_url="http://127.0.0.1:9"))
    for call in (lambda: down.get_bytes(config.bundles_bucket, "k"), lambda: down.head(config.bundles_bucket, "k"),
                 lambda: down.put_bytes(config.bundles_bucket, "k", b"x"),
                 lambda: list(down.list_keys(config.bundles_bucket, "k"))):
        with pytest.raises(InfrastructureError) as unavailable:
            call()
        assert is_retryable(unavailable.value)
