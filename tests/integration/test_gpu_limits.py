"""A benchmark's `limits.gpus` through the API: stored, shown, bounded, and handed to the sandbox's limits."""

from __future__ import annotations

import pytest

from evaluator.sandbox.spec import Limits
from evaluator.settings import BenchmarkLimits
from evaluator.storage.models import Benchmark
from tests.integration.test_api_foundation import create_benchmark

pytestmark = pytest.mark.integration


def test_a_benchmark_asks_for_gpus_and_its_runs_get_them(api, admin, alice, config):
    create_benchmark(api, admin, limits={"max_bundle_bytes": 1000, "gpus": 1})

    shown = api.simulate_get("/v1/benchmarks/iris", headers=alice).json
    assert shown["limits"]["gpus"] == 1
    row = Benchmark.get_by_id("iris")
    assert Limits.from_config(config, BenchmarkLimits.from_json(row.limits)).gpus == 1


def test_an_impossible_gpu_count_is_refused_naming_the_field(api, admin):
    create_benchmark(api, admin, benchmark_id="plain")
    response = api.simulate_post("/v1/benchmarks", headers=admin, json={
        "id": "greedy", "dataset": "iris:1", "task": "classification", "limits": {"gpus": 64}})
    assert response.status_code == 422 and response.json["error"]["field"] == "limits.gpus"
