"""Names ending in a newline pass a `^...$` check; every name check matches the whole string."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["iris\n", "iris\n\n", "\niris"])
def test_a_dataset_name_with_a_newline_is_refused(api, admin, name):
    response = api.simulate_post("/v1/datasets", json={"name": name, "version": "1"}, headers=admin)

    assert response.status_code == 422, response.json
    assert response.json["error"]["field"] == "name"


def test_a_benchmark_id_with_a_trailing_newline_is_refused(api, admin):
    assert api.simulate_post("/v1/datasets", json={"name": "iris", "version": "1"}, headers=admin).status_code == 201
    body = {"id": "iris-bench\n", "dataset": "iris:1", "task": "classification"}

    response = api.simulate_post("/v1/benchmarks", json=body, headers=admin)

    assert response.status_code == 422, response.json
