"""A dataset registers itself from its upload events: SeaweedFS webhook -> API -> register_dataset actor."""

from __future__ import annotations

import pytest
import requests

from evaluator.tokens import create_token
from tests.integration.helpers import iris_like, parquet_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(emptied_shared_stack):
    """No test here kills a process: they share the module's stack, emptied before each."""
    return emptied_shared_stack


def declare_and_upload(stack, token, name, features, labels) -> dict:
    declared = stack.call("POST", "/v1/datasets", token, json={"name": name, "version": "1"})
    assert declared.status_code == 201, declared.text
    for part, table in (("features", features), ("labels", labels)):
        assert requests.put(declared.json()["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).ok
    return declared.json()


def test_uploaded_dataset_becomes_ready_with_hashes_and_row_count(stack):
    token, _ = create_token("admin", "admin")
    features, labels = iris_like(120)
    dataset = declare_and_upload(stack, token, "iris", features, labels)
    ready = stack.wait_for(f"/v1/datasets/{dataset['id']}", token, lambda d: d["status"] != "pending", 60)
    assert ready["status"] == "ready", ready
    assert ready["row_count"] == 120 and len(ready["labels_sha256"]) == 64
    assert ready["columns"] == ["row_id", "f0", "f1", "f2", "f3"]


def test_dataset_whose_ids_do_not_match_is_invalid_with_a_reason(stack):
    token, _ = create_token("admin", "admin")
    features, labels = iris_like(50)
    labels = labels.slice(0, 49)
    dataset = declare_and_upload(stack, token, "broken", features, labels)
    invalid = stack.wait_for(f"/v1/datasets/{dataset['id']}", token, lambda d: d["status"] != "pending", 60)
    assert invalid["status"] == "invalid" and "row ids" in invalid["reason"]
