"""Upload grants on the live stack: the quota holds when 12 requests race over several gunicorn workers."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from evaluator.config import Config
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Submission
from tests.conftest import EVENTS_TOKEN, S3_KEY, S3_SECRET
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def busy_stack(webhook_s3, database_url, redis_url, db, tmp_path):
    """The live stack with 4 API worker processes, so concurrent requests really run at once."""
    server, api_port = webhook_s3
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    config = Config(
        database_url=database_url, redis_url=redis_url, broker_namespace=f"e2e-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=server.endpoint_url, s3_access_key=S3_KEY, s3_secret_key=S3_SECRET,
        datasets_bucket=bucket, bundles_bucket=bucket, results_bucket=bucket, events_token=EVENTS_TOKEN,
        api_port=api_port, api_workers=4, work_dir=str(tmp_path / "work"), log_level="INFO")
    BlobStore.from_config(config).ensure_buckets(bucket)
    (tmp_path / "logs").mkdir()
    platform = Stack(config, tmp_path / "logs")
    platform.start_api()
    platform.start_worker()  # registers the dataset
    yield platform
    platform.stop()


def test_a_quota_of_one_issues_exactly_one_grant_to_12_concurrent_requests(busy_stack):
    _, alice, _ = busy_stack.competition({"id": "iris", "task": "classification", "quota": {"limit": 1}})
    barrier, answers = threading.Barrier(12), []

    def ask() -> None:
        barrier.wait()
        response = requests.post(busy_stack.url + "/v1/benchmarks/iris/submissions", timeout=30,
                                 headers={"Authorization": f"Bearer {alice}"}, json={"name": "m", "size": 10})
        answers.append(response.status_code)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201] + [429] * 11, answers
    assert Submission.select().where(Submission.owner == "alice").count() == 1
