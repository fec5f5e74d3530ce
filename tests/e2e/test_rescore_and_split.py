"""Public/private label split and re-scoring, through the live stack (API + worker + SeaweedFS + Docker)."""

from __future__ import annotations

import datetime
import time

import pytest
from sklearn.metrics import accuracy_score

from evaluator.competition import is_private_row
from evaluator.storage.blobs import BlobStore
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.test_pipeline import FINAL, run_of, submit

pytestmark = pytest.mark.integration


def test_split_scores_both_parts_hides_private_and_rescore_needs_no_container(stack, docker_client, images_built):
    images_built("sklearn")
    admin, alice, labels = stack.competition({"id": "iris", "task": "classification",
                                              "settings": {"private_fraction": 0.4}}, rows=300, seed=9)

    run_id = run_of(stack, alice, submit(stack, alice, sklearn_bundle())["id"])
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded", run
    assert run["private_metrics"] is None                    # hidden from the participant while open
    managed = stack.call("GET", f"/v1/runs/{run_id}", admin).json()

    # Both parts equal scikit-learn's on exactly the rows the split assigns them.
    blobs = BlobStore.from_config(stack.config)
    prefix = managed["results_prefix"]
    import io

    import pyarrow.parquet as pq

    predictions = pq.read_table(
        io.BytesIO(blobs.get_bytes(stack.config.results_bucket, prefix + "predictions.parquet")))
    truth = dict(zip(labels.column("row_id").to_pylist(), labels.column("target").to_pylist()))
    rows = list(zip(predictions.column("row_id").to_pylist(), predictions.column("prediction").to_pylist()))
    for part, document in (("public", managed["metrics"]), ("private", managed["private_metrics"])):
        chosen = [(truth[i], p) for i, p in rows if is_private_row(i, "iris", 0.4) == (part == "private")]
        expected = accuracy_score([t for t, _ in chosen], [p for _, p in chosen])
        assert document["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-12), part
        assert document["n_rows"] == len(chosen)
    assert managed["metrics"]["n_rows"] + managed["private_metrics"]["n_rows"] == 300

    # Re-score after a change of metrics: new documents from stored predictions, old ones kept, no container.
    since = datetime.datetime.now(datetime.timezone.utc)
    changed = stack.call("PATCH", "/v1/benchmarks/iris", admin, json={"primary_metric": "f1_macro"})
    assert changed.status_code == 200, changed.text
    assert stack.call("POST", "/v1/benchmarks/iris/rescore", admin).json()["queued"] == 1
    rescored = stack.wait_for(f"/v1/runs/{run_id}", admin, lambda r: r["metrics"]["primary_metric"]["name"] ==
                              "f1_macro", 60)
    assert rescored["metrics"]["metrics"]["accuracy"] == managed["metrics"]["metrics"]["accuracy"]
    keys = {item["key"].rsplit("/", 1)[1] for item in blobs.list_keys(stack.config.results_bucket, prefix)}
    assert {"metrics.json", "metrics.1.json"} <= keys
    old = blobs.get_json(stack.config.results_bucket, prefix + "metrics.1.json")
    assert old["metrics"]["primary_metric"]["name"] == "accuracy"
    until = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.5)
    started = [e for e in docker_client.events(since=since, until=until, decode=True,
                                               filters={"type": "container", "event": "start",
                                                        "label": f"evaluator.run_id={run_id}"})]
    assert started == [], "re-scoring must not start any container"
