"""A benchmark stands only on a ready dataset: creating it on, or repointing it to, another is 409 with the reason."""

from __future__ import annotations

import pytest

from evaluator.datasets import register_dataset
from tests.integration.helpers import iris_like, register_dataset_over_http

pytestmark = pytest.mark.integration

BODY = {"id": "iris", "task": "classification"}


def declare(api, admin, name: str) -> dict:
    response = api.simulate_post("/v1/datasets", json={"name": name, "version": "1"}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json


def test_a_pending_or_invalid_dataset_cannot_back_a_benchmark(api, admin, blobs, config, tmp_path):
    # Given a dataset still pending, one invalid (labels without the target) and one ready
    declare(api, admin, "waiting")
    features, labels = iris_like(40)
    broken = register_dataset_over_http(api, admin, name="broken", features=features,
                                        labels=labels.drop(["target"]))
    assert register_dataset(broken["id"], blobs=blobs, config=config, work_dir=tmp_path).status == "invalid"
    register_dataset_over_http(api, admin, name="iris")

    # When a benchmark is created on each
    pending = api.simulate_post("/v1/benchmarks", json={**BODY, "dataset": "waiting:1"}, headers=admin)
    invalid = api.simulate_post("/v1/benchmarks", json={**BODY, "dataset": "broken:1"}, headers=admin)
    ready = api.simulate_post("/v1/benchmarks", json={**BODY, "dataset": "iris:1"}, headers=admin)

    # Then only the ready one is accepted; the others are 409 saying why
    assert pending.status_code == 409, pending.text
    assert pending.json["error"]["code"] == "conflict" and "waiting:1 is pending" in pending.json["error"]["message"]
    assert invalid.status_code == 409, invalid.text
    message = invalid.json["error"]["message"]
    assert "broken:1 is invalid" in message and "labels file has no column 'target'" in message
    assert ready.status_code == 201, ready.text

    # And the benchmark cannot be repointed to them either
    for ref in ("waiting:1", "broken:1"):
        patched = api.simulate_patch("/v1/benchmarks/iris", json={"dataset": ref}, headers=admin)
        assert patched.status_code == 409 and ref in patched.json["error"]["message"], patched.text
    assert api.simulate_get("/v1/benchmarks/iris", headers=admin).json["dataset"] == "iris:1"
