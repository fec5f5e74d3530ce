"""Quotas through HTTP: 429 with resets_at before any URL is issued, and the failed-runs policy."""

from __future__ import annotations

import datetime

import pytest

from evaluator.storage.models import Run, Submission
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


def ask(api, headers, benchmark="iris"):
    return api.simulate_post(f"/v1/benchmarks/{benchmark}/submissions", json={"name": "m"}, headers=headers)


@pytest.fixture
def dataset(api, admin):
    return register_dataset_over_http(api, admin)


def test_over_quota_is_429_with_the_next_utc_midnight(api, dataset, admin, alice, bob):
    create_benchmark(api, admin, quota={"limit": 2, "window": "utc_day"})
    assert ask(api, alice).status_code == 201 and ask(api, alice).status_code == 201
    refused = ask(api, alice)
    assert (refused.status_code, refused.json["error"]["code"]) == (429, "quota_exceeded")
    tomorrow = (datetime.datetime.utcnow() + datetime.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
    assert refused.json["error"]["resets_at"].startswith(tomorrow)
    assert "upload" not in refused.json
    assert Submission.select().where(Submission.owner == "alice").count() == 2  # nothing issued for the refusal
    # Quotas are per participant.
    assert ask(api, bob).status_code == 201
    quota = api.simulate_get("/v1/benchmarks/iris/quota", headers=alice).json
    assert (quota["limit"], quota["used"], quota["remaining"]) == (2, 2, 0)


def test_rolling_window_resets_24h_after_the_oldest_counted_submission(api, dataset, admin, alice):
    create_benchmark(api, admin, quota={"limit": 1, "window": "rolling_24h"})
    first = ask(api, alice).json["submission"]
    refused = ask(api, alice).json["error"]
    created = datetime.datetime.fromisoformat(first["created_at"].rstrip("Z"))
    assert refused["resets_at"].startswith((created + datetime.timedelta(hours=24)).isoformat(timespec="seconds"))


@pytest.mark.parametrize("count_failed, allowed", [(False, 201), (True, 429)])
def test_failed_runs_count_only_when_the_benchmark_says_so(api, dataset, admin, alice, count_failed, allowed):
    from evaluator import runs

    create_benchmark(api, admin, quota={"limit": 1, "count_failed": count_failed})
    submission = Submission.get_by_id(ask(api, alice).json["submission"]["id"])
    run, _ = runs.create_or_get_run(submission)
    runs.finish(str(run.id), status="failed", failure={"code": "sandbox_error", "message": "boom"})
    assert Run.get_by_id(run.id).status == "failed"
    assert ask(api, alice).status_code == allowed


def test_an_invalid_quota_is_refused_naming_the_field(api, dataset, admin):
    response = api.simulate_post("/v1/benchmarks", headers=admin, json={
        "id": "q", "dataset": "iris:1", "task": "classification", "quota": {"limit": 0}})
    assert (response.status_code, response.json["error"]["field"]) == (422, "quota.limit")  # the full path of the field
