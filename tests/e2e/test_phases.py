"""Moving a phase on, through the live stack: the worker scores a migrated run by the NEXT phase's rules.

Codabench #2193 scored migrated submissions with the old phase's task; here the dev phase is
classification/accuracy on iris:1 and the final phase ranks f1_macro (with balanced_accuracy)
on another dataset, and the migrated run's metrics are the final phase's.
"""

from __future__ import annotations

import datetime
import io
import json

import pyarrow.parquet as pq
import pytest
import requests
from sklearn.metrics import balanced_accuracy_score, f1_score

from evaluator.storage.blobs import BlobStore
from tests.e2e.bundles import sklearn_bundle
from tests.e2e.test_client_cli import cli
from tests.e2e.test_pipeline import FINAL, run_of, submit
from tests.integration.helpers import iris_like, parquet_bytes

pytestmark = pytest.mark.integration


def later(days: float) -> str:
    return (datetime.datetime.utcnow() + datetime.timedelta(days=days)).isoformat() + "Z"


def register(stack, token: str, name: str, features, labels) -> None:
    declared = stack.call("POST", "/v1/datasets", token, json={"name": name, "version": "1"}).json()
    for part, table in (("features", features), ("labels", labels)):
        assert requests.put(declared["uploads"][part]["url"], data=parquet_bytes(table), timeout=30).ok
    stack.wait_for(f"/v1/datasets/{declared['id']}", token, lambda d: d["status"] == "ready", 60)


def test_migrated_run_is_re_evaluated_on_the_next_phase_with_its_task_and_metrics(stack, images_built):
    from evaluator.tokens import create_token

    images_built("sklearn")
    owner, _ = create_token("admin", "admin")
    final_features, final_labels = iris_like(150, seed=11)
    register(stack, owner, "iris-final", final_features, final_labels)
    admin, alice, _ = stack.competition({"id": "iris", "task": "classification", "primary_metric": "accuracy",
                                         "phases": [
                                             {"slug": "dev", "closes_at": later(1)},
                                             {"slug": "final", "dataset": "iris-final:1", "opens_at": later(1),
                                              "primary_metric": "f1_macro",
                                              "metrics": ["f1_macro", "balanced_accuracy"]}]}, rows=200)

    dev_id = run_of(stack, alice, submit(stack, alice, sklearn_bundle())["id"])
    dev = stack.wait_for(f"/v1/runs/{dev_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert dev["status"] == "succeeded", dev
    assert (dev["phase"], dev["metrics"]["primary_metric"]["name"], dev["metrics"]["n_rows"]) == ("dev", "accuracy",
                                                                                                  200)

    moved = stack.call("POST", "/v1/benchmarks/iris/phases/dev/migrate", admin)
    assert moved.status_code == 202, moved.text
    (final_id,) = moved.json()["created"]
    final = stack.wait_for(f"/v1/runs/{final_id}", admin, lambda r: r["status"] in FINAL, 180)
    assert final["status"] == "succeeded", final
    assert (final["phase"], final["migrated_from"], final["submission"]) == ("final", dev_id, dev["submission"])
    document = final["metrics"]
    assert document["primary_metric"]["name"] == "f1_macro"           # the final phase's, not dev's accuracy
    assert set(document["metrics"]) == {"f1_macro", "balanced_accuracy"}
    assert document["n_rows"] == 150                                   # on the final phase's rows
    assert final["provenance"]["dataset"] == "iris-final:1"

    # The values are scikit-learn's on the final labels, from the predictions the migrated run made.
    blobs = BlobStore.from_config(stack.config)
    predictions = pq.read_table(io.BytesIO(blobs.get_bytes(stack.config.results_bucket,
                                                           final["results_prefix"] + "predictions.parquet")))
    truth = dict(zip(final_labels.column("row_id").to_pylist(), final_labels.column("target").to_pylist()))
    rows = list(zip(predictions.column("row_id").to_pylist(), predictions.column("prediction").to_pylist()))
    y_true, y_pred = [truth[i] for i, _ in rows], [p for _, p in rows]
    assert document["metrics"]["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert document["metrics"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred),
                                                                     abs=1e-12)

    board = stack.call("GET", "/v1/benchmarks/iris/leaderboard?phase=final", admin).json()
    assert board["rules"]["metric"] == "f1_macro"
    assert [(e["participant"], e["run_id"], e["score"]) for e in board["entries"]] == [
        ("alice", final_id, document["metrics"]["f1_macro"])]
    dev_board = stack.call("GET", "/v1/benchmarks/iris/leaderboard", alice).json()
    assert dev_board["phase"] == "dev" and [e["run_id"] for e in dev_board["entries"]] == [dev_id]

    # Again, through the CLI: nothing new (idempotent); the CLI reads phases and a phase's board.
    again = cli(stack, admin, "phases", "migrate", "iris", "dev", "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["created"], json.loads(again.stdout)["existing"]) == ([], [final_id])
    assert "0 run(s) queued, 1 moved before" in cli(stack, admin, "phases", "migrate", "iris", "dev").stdout
    listed = cli(stack, alice, "phases", "list", "iris").stdout
    assert "* dev" in listed and "  final" in listed and "iris-final:1" in listed
    shown = cli(stack, alice, "leaderboard", "iris", "--phase", "final")
    assert shown.returncode == 0 and "phase final" in shown.stdout and "f1_macro" in shown.stdout, shown
