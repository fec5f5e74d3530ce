"""What GET /v1/runs shows to whom: participants never see a platform failure's cause nor the dataset's hashes."""

from __future__ import annotations

import time

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission, utcnow

pytestmark = pytest.mark.integration


@pytest.fixture
def internal_failure(stub_broker, stub_worker, config, db, blobs):
    """A run the worker ended failed/internal: its dataset never became ready (the platform's fault)."""
    from evaluator.worker import actors, services

    services.configure(config.replace(evaluate_max_retries=0))
    dataset = Dataset.create(name="never", version="1", features_key="f", labels_key="l",
                             labels_sha256="ab" * 32, features_sha256="cd" * 32)
    Benchmark.create(id="b", title="b", dataset=dataset, task="classification", primary_metric="accuracy",
                     direction="maximize", owner="olga")
    submission = Submission.create(benchmark="b", owner="alice", name="m", version="1", bucket=config.bundles_bucket,
                                   object_key="bundles/b/alice/m/1/x.tar.gz", status="uploaded")
    blobs.put_bytes(config.bundles_bucket, submission.object_key, b"a bundle")
    run = Run.create(submission=submission, benchmark="b", owner="alice",
                     provenance={"bundle_sha256": "ef" * 32, "labels_sha256": dataset.labels_sha256,
                                 "features_sha256": dataset.features_sha256, "framework": "sklearn"})
    actors.evaluate_run.send_with_options(args=(str(run.id),), min_backoff=10, max_backoff=50)
    deadline = time.monotonic() + 30
    while Run.get_by_id(run.id).status != "failed":
        assert time.monotonic() < deadline, Run.get_by_id(run.id).status
        time.sleep(0.1)
    assert Run.get_by_id(run.id).failure_code == "internal"
    return str(run.id)


def test_participants_see_a_reference_for_a_platform_failure_and_managers_its_cause(
        api, internal_failure, alice, admin):
    run_id = internal_failure
    cause = Run.get_by_id(run_id).failure_message
    assert "not ready" in cause  # the worker's own text, meant for operators

    # When alice reads her run, alone and in the list
    seen = [api.simulate_get(f"/v1/runs/{run_id}", headers=alice).json,
            api.simulate_get("/v1/runs", headers=alice).json["items"][0]]
    # Then she gets the code and a reference to quote, never the exception's text
    for run in seen:
        assert run["failure"]["code"] == "internal"
        assert run_id in run["failure"]["message"] and "not ready" not in run["failure"]["message"]
        assert "platform" in run["failure"]["message"]
    # ... while a manager sees the cause
    assert api.simulate_get(f"/v1/runs/{run_id}", headers=admin).json["failure"]["message"] == cause


def test_the_datasets_hashes_are_shown_to_managers_only(api, internal_failure, alice, admin):
    run_id = internal_failure
    for run in (api.simulate_get(f"/v1/runs/{run_id}", headers=alice).json,
                api.simulate_get("/v1/runs", headers=alice).json["items"][0]):
        assert "labels_sha256" not in run["provenance"] and "features_sha256" not in run["provenance"]
        assert "ab" * 32 not in str(run) and "cd" * 32 not in str(run)
        assert run["provenance"]["bundle_sha256"] == "ef" * 32  # her own upload's hash stays hers to see
    provenance = api.simulate_get(f"/v1/runs/{run_id}", headers=admin).json["provenance"]
    assert (provenance["labels_sha256"], provenance["features_sha256"]) == ("ab" * 32, "cd" * 32)


def _succeeded_run(dataset_name: str, owner: str, log_loss: float) -> str:
    dataset = Dataset.get_or_create(name=dataset_name, version="1", features_key="f", labels_key="l")[0]
    Benchmark.get_or_create(id="ll", defaults=dict(title="ll", dataset=dataset, task="classification",
                                                   primary_metric="log_loss", direction="minimize", owner="olga"))
    submission = Submission.create(benchmark="ll", owner=owner, name="m", version="1", bucket="b",
                                   object_key=f"bundles/ll/{owner}/m/1/x.tar.gz", status="uploaded")
    document = {"metrics": {"log_loss": log_loss, "accuracy": 0.123456789},
                "primary_metric": {"name": "log_loss", "value": log_loss, "direction": "minimize",
                                   "ci": {"low": log_loss - 0.0123456, "high": log_loss + 0.0123456}}}
    run = Run.create(submission=submission, benchmark="ll", owner=owner, status="succeeded", metrics=document,
                     finished_at=utcnow())
    return str(run.id)


def test_participants_read_metrics_too_coarse_to_carry_row_labels_and_managers_exact_ones(api, db, alice, admin):
    # Given two runs whose exact log loss differs only past the 4th decimal: an attacker's encoding of
    # the labels of many rows (each row adding its own power of two) lives in those digits
    exact = 0.693147180559945
    encoded = exact + sum(2.0 ** -(i + 20) for i in range(0, 30, 2))  # "labels" of 15 rows, 1 = set
    first, second = _succeeded_run("d", "alice", exact), _succeeded_run("d", "bob", encoded)
    # When alice reads her run, and the leaderboard
    mine = api.simulate_get(f"/v1/runs/{first}", headers=alice).json["metrics"]
    board = api.simulate_get("/v1/benchmarks/ll/leaderboard", headers=alice).json["entries"]
    # Then every figure is rounded, and the two runs are indistinguishable to her
    assert mine["metrics"] == {"log_loss": 0.6931, "accuracy": 0.1235}
    assert mine["primary_metric"]["ci"] == {"low": 0.6808, "high": 0.7055}
    assert {entry["score"] for entry in board} == {0.6931}
    # ... while a manager reads the exact values
    assert api.simulate_get(f"/v1/runs/{second}", headers=admin).json["metrics"]["metrics"]["log_loss"] == encoded
    scores = {e["participant"]: e["score"] for e in
              api.simulate_get("/v1/benchmarks/ll/leaderboard", headers=admin).json["entries"]}
    assert scores == {"alice": exact, "bob": encoded}


def test_a_missing_tie_breaker_ranks_last_and_reads_as_null_not_infinity(api, db, alice):
    # Given a benchmark ranking on log_loss then f1_macro, and a run whose document lacks f1_macro
    _succeeded_run("d", "alice", 0.5)
    Benchmark.update(settings={"tie_breakers": ["f1_macro"]}).where(Benchmark.id == "ll").execute()
    # When anyone reads the leaderboard
    reply = api.simulate_get("/v1/benchmarks/ll/leaderboard", headers=alice)
    # Then it is valid JSON (no Infinity) and the missing value is null
    assert reply.status_code == 200 and "Infinity" not in reply.text
    assert reply.json["entries"][0]["tie_breakers"] == {"f1_macro": None}
