"""A participant's whole view of a run never maps a row to its hidden label, through the live stack.

The attacker's model predicts a unique fake class per row (a "tag"). If any figure a participant can read
(the run, the runs list, the log, the predictions link, the leaderboard) kept a per-class count for
predicted classes, each tag's column would name its row's true label. We run that attack and assert it
recovers nothing, and that the dataset hashes (brute-forceable for small splits) are shown to managers only.
"""

from __future__ import annotations

import io
import json
import re

import pyarrow.parquet as pq
import pytest
import requests

from evaluator.competition import is_private_row
from evaluator.storage.models import Dataset
from tests.e2e.test_pipeline import FINAL, run_of
from tests.integration.helpers import tar_bundle

pytestmark = pytest.mark.integration

TAG_BASE = 1000
ROWS = 60
# The reported attack: every row gets its own class, np.arange(n) + 1000, unique across batches.
TAGGING_PREDICT = b"""
import numpy as np

_next = [0]

def predict(batch):
    start = _next[0]
    _next[0] += len(batch)
    return np.arange(start, start + len(batch)) + 1000
"""


def tagging_bundle() -> bytes:
    manifest = b"name: tagger\nversion: 1\nframework: sklearn\nmodel: predict.py\npredict: predict.py:predict\n"
    return tar_bundle({"evaluator.yaml": manifest, "predict.py": TAGGING_PREDICT})


def submit(stack, token: str, bundle: bytes) -> dict:
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", token,
                       json={"name": "tagger", "method": "put", "size": len(bundle)}).json()
    upload = grant["upload"]
    assert requests.put(upload["url"], data=bundle, headers=upload.get("headers") or {}, timeout=30).ok, grant
    return grant["submission"]


def participant_view(stack, token: str, run_id: str) -> dict:
    """Everything the participant can fetch about the run, as parsed JSON and text."""
    run = stack.call("GET", f"/v1/runs/{run_id}", token).json()
    listed = stack.call("GET", "/v1/runs", token).json()
    logs = stack.call("GET", f"/v1/runs/{run_id}/logs", token)
    link = stack.call("GET", f"/v1/runs/{run_id}/predictions", token).json()
    predictions = pq.read_table(io.BytesIO(requests.get(link["url"], timeout=30).content))
    board = stack.call("GET", "/v1/benchmarks/iris/leaderboard", token).json()
    return {"run": run, "runs": listed, "log": logs.text if logs.status_code == 200 else "",
            "predictions_columns": predictions.column_names, "leaderboard": board}


def documents(value):
    """Yield every metrics document (a dict with confusion_matrix or per_class) anywhere in `value`."""
    if isinstance(value, dict):
        if "confusion_matrix" in value or "per_class" in value:
            yield value
        for item in value.values():
            yield from documents(item)
    elif isinstance(value, list):
        for item in value:
            yield from documents(item)


def recover_labels(view: dict, n_rows: int) -> dict[int, object]:
    """The attack: read each tag's column of every confusion matrix, and any per-class figure of a tag."""
    recovered: dict[int, object] = {}
    tags = {TAG_BASE + i: i for i in range(n_rows)}
    for doc in documents(view):
        matrix = doc.get("confusion_matrix") or {}
        labels, cells = matrix.get("labels") or [], matrix.get("matrix") or []
        true_classes = [c for c in labels if c not in tags]
        for j, column_label in enumerate(labels):
            if column_label in tags:
                hits = [labels[t] for t, row in enumerate(cells) if j < len(row) and row[j] > 0]
                if len(hits) == 1:
                    recovered[tags[column_label]] = hits[0]
        for name in doc.get("per_class") or {}:
            if name.isdigit() and int(name) in tags and len(true_classes) == 1:
                recovered[tags[int(name)]] = true_classes[0]
    return recovered


def named_tags(view: dict, n_rows: int) -> list[int]:
    """Tags that appear as a word in any key or string of the view (a warning listing them, say)."""
    text = json.dumps(view)
    # NOTE: "rounds": 1000 is a number value, not a class name; only names in strings and keys count.
    strings = " ".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))
    return [TAG_BASE + i for i in range(n_rows) if re.search(rf"\b{TAG_BASE + i}\b", strings)]


def test_a_tagging_model_recovers_no_label_and_sees_no_dataset_hash(stack, images_built):
    # Given a benchmark whose labels are split (the private part must stay hidden too)
    images_built("sklearn")
    admin, alice, labels = stack.competition({"id": "iris", "task": "classification",
                                              "settings": {"private_fraction": 0.3}}, rows=ROWS, seed=3)
    truth = labels.column("target").to_pylist()
    # When alice submits the tagging model and it is scored
    run_id = run_of(stack, alice, submit(stack, alice, tagging_bundle())["id"])
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded", run
    view = participant_view(stack, alice, run_id)

    # Then nothing she can read maps a row to its label, on either part of the split
    recovered = recover_labels(view, ROWS)
    correct = sum(truth[i] == label for i, label in recovered.items())
    assert recovered == {}, f"recovered {correct}/{len(recovered)} labels of {ROWS} rows"
    assert named_tags(view, ROWS) == []
    public = view["run"]["metrics"]
    assert public["classes"] == sorted(set(t for i, t in enumerate(truth)
                                           if not is_private_row(f"r{i:05d}", "iris", 0.3)))
    assert view["run"]["private_metrics"] is None
    assert "target" not in view["predictions_columns"]

    # ... and the dataset's hashes are the managers' alone
    dataset = Dataset.get()
    hashes = [dataset.labels_sha256, dataset.features_sha256]
    assert all(h and h not in json.dumps(view) for h in hashes)
    managed = stack.call("GET", f"/v1/runs/{run_id}", admin).json()
    assert managed["provenance"]["labels_sha256"] == dataset.labels_sha256
    assert managed["provenance"]["features_sha256"] == dataset.features_sha256
    assert managed["private_metrics"] is not None and recover_labels(managed, ROWS) == {}
