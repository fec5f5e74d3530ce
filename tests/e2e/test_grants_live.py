"""Upload grants on the live stack: the quota holds when 12 requests race over several gunicorn workers."""

from __future__ import annotations

import threading

import pytest
import requests

from evaluator.storage.models import Submission
from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def busy_stack(webhook_s3, database_url, redis_url, db, tmp_path):
    """The live stack with 4 API worker processes, so concurrent requests really run at once."""
    platform = start_stack(webhook_s3, database_url, redis_url, tmp_path, api_workers=4)  # its worker registers
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
