"""A run's plots through the live stack: drawn when it is scored and re-scored, stored, served, and not invertible.

The attacker's model gives every row its own score. An exact ROC curve would then have a step per row
and give back every label; the participant's plots are drawn from bins of >= k rows, so reading the
plotted data back (the JSON each SVG is drawn from) labels rows no better than guessing the majority.
The managers' exact variant does give every label back: the attack works, the binning is what stops it.
"""

from __future__ import annotations

import io
import math

import pyarrow.parquet as pq
import pytest
import requests

from evaluator.competition import is_private_row
from evaluator.storage.blobs import BlobStore
from evaluator.tokens import create_token
from tests.e2e.test_label_leaks import submit
from tests.e2e.test_pipeline import FINAL, run_of
from tests.integration.helpers import tar_bundle

pytestmark = pytest.mark.integration

ROWS = 1000
FRACTION = 0.3
CLASSIFICATION_PLOTS = ["confusion_matrix", "roc", "precision_recall", "calibration"]
# Every row its own probability of class 0, (i + 0.37) / ROWS: each inside a bin of the score grid of its own.
UNIQUE_SCORES_PREDICT = b"""
import numpy as np

_next = [0]

def predict(batch):
    start = _next[0]
    _next[0] += len(batch)
    s = (np.arange(start, start + len(batch)) + 0.37) / %d
    proba = np.column_stack([s, (1 - s) / 2, (1 - s) / 2])
    return {"prediction": np.argmax(proba, axis=1), "proba": proba, "classes": [0, 1, 2]}
""" % ROWS


def unique_scores_bundle() -> bytes:
    manifest = b"name: tagger\nversion: 1\nframework: sklearn\nmodel: predict.py\npredict: predict.py:predict\n"
    return tar_bundle({"evaluator.yaml": manifest, "predict.py": UNIQUE_SCORES_PREDICT})


def bin_attack(curve: dict, scores: dict[str, float]) -> dict[str, bool]:
    """Label each row "of the curve's class" when the plotted bin its score falls in holds mostly positives."""
    guesses = {}
    bins = curve["bins"]
    for row_id, score in scores.items():
        for b in bins:
            if b["low"] <= score < b["high"] or (b is bins[-1] and score == b["high"]):
                guesses[row_id] = b["positives"] > b["negatives"]
                break
    return guesses


def accuracy(guesses: dict[str, bool], truth: dict[str, bool]) -> float:
    return sum(guesses.get(row, False) == value for row, value in truth.items()) / len(truth)


def test_plots_are_stored_served_by_variant_redrawn_on_rescore_and_leak_no_label(stack, images_built):
    # Given a split benchmark and a model that gives every row a unique score
    images_built("sklearn")
    admin, alice, labels = stack.competition({"id": "iris", "task": "classification",
                                              "settings": {"private_fraction": FRACTION}}, rows=ROWS, seed=11)
    bob, _ = create_token("bob", "participant")
    truth = dict(zip(labels.column("row_id").to_pylist(), labels.column("target").to_pylist()))
    public = {row: label for row, label in truth.items() if not is_private_row(row, "iris", FRACTION)}
    run_id = run_of(stack, alice, submit(stack, alice, unique_scores_bundle())["id"])
    run = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in FINAL, 180)
    assert run["status"] == "succeeded", run

    # Then the plots follow (drawn after the status commit: the API says pending meanwhile) ...
    stack.wait_for(f"/v1/runs/{run_id}/plots", alice, lambda listed: not listed["pending"], 60)
    # (the participant's variant is stored first: the manager's, the exact one, is complete once its index is)
    stack.wait_for(f"/v1/runs/{run_id}/plots", admin, lambda listed: not listed["pending"], 60)
    # ... and both variants are in the store beside metrics.json
    blobs = BlobStore.from_config(stack.config)
    bucket, prefix = stack.config.results_bucket, f"results/iris/{run_id}/"
    keys = {item["key"][len(prefix):] for item in blobs.list_keys(bucket, prefix + "plots/")}
    for name in CLASSIFICATION_PLOTS:
        assert {f"plots/{name}.svg", f"plots/{name}.json",
                f"plots/exact/{name}.svg", f"plots/exact/{name}.json"} <= keys

    # ... the participant gets her variant and the manager the exact one, each SVG as stored; bob gets nothing
    listed = stack.call("GET", f"/v1/runs/{run_id}/plots", alice).json()
    assert listed["variant"] == "participant" and [p["name"] for p in listed["items"]] == CLASSIFICATION_PLOTS
    for item in listed["items"]:
        served = stack.call("GET", item["url"], alice)
        assert served.status_code == 200 and served.headers["content-type"] == "image/svg+xml"
        assert served.content == blobs.get_bytes(bucket, f"{prefix}plots/{item['name']}.svg")
        assert served.content.startswith(b"<svg") and b'role="img"' in served.content
    managed = stack.call("GET", f"/v1/runs/{run_id}/plots", admin).json()
    assert managed["variant"] == "exact"
    assert stack.call("GET", f"/v1/runs/{run_id}/plots/roc", admin).content == \
        blobs.get_bytes(bucket, f"{prefix}plots/exact/roc.svg")
    assert stack.call("GET", f"/v1/runs/{run_id}/plots", bob).status_code == 404
    assert stack.call("GET", f"/v1/runs/{run_id}/plots/roc", bob).status_code == 404
    assert stack.call("GET", f"/v1/runs/{run_id}/plots/nonesuch", alice).status_code == 404

    # When alice reads her plots' data back against the scores she gave each row
    link = stack.call("GET", f"/v1/runs/{run_id}/predictions", alice).json()
    predictions = pq.read_table(io.BytesIO(requests.get(link["url"], timeout=30).content))
    scores = {c: dict(zip(predictions.column("row_id").to_pylist(), predictions.column(f"proba__{c}").to_pylist()))
              for c in (0, 1, 2)}
    participant = blobs.get_json(bucket, f"{prefix}plots/roc.json")
    exact = blobs.get_json(bucket, f"{prefix}plots/exact/roc.json")
    k = participant["min_bin_rows"]
    assert k == max(stack.config.plot_min_bin_rows, math.ceil(len(public) / 20))
    for curve, exact_curve in zip(participant["curves"], exact["curves"]):
        c = int(curve["class"])
        # her plots cover the public part only, in bins of >= k rows
        assert sum(b["positives"] + b["negatives"] for b in curve["bins"]) == len(public)
        assert all(b["positives"] + b["negatives"] >= k for b in curve["bins"])
        positives = {row: label == c for row, label in public.items()}
        p = sum(positives.values()) / len(positives)
        chance = max(p, 1 - p)
        # Then the best reading of her bins labels rows about as well as guessing the majority class:
        # within sqrt(p(1-p)/k) (what a bin's count can tell) plus three binomial standard errors.
        bound = chance + math.sqrt(p * (1 - p) / k) + 3 * math.sqrt(p * (1 - p) / len(positives))
        got = accuracy(bin_attack(curve, scores[c]), positives)
        assert got <= bound, (c, got, chance, bound)
        # ... while the managers' exact curve gives every label back (the attack itself works)
        every = {row: label == c for row, label in truth.items()}
        assert accuracy(bin_attack(exact_curve, scores[c]), every) == 1.0
    for name in ("precision_recall", "calibration"):  # drawn from the same bins
        assert [c["bins"] for c in blobs.get_json(bucket, f"{prefix}plots/{name}.json")["curves"]] == \
            [c["bins"] for c in participant["curves"]]
    matrix = blobs.get_json(bucket, f"{prefix}plots/confusion_matrix.json")
    assert matrix["classes"] == ["0", "1", "2"] and len(matrix["other"]) == 3  # the labels' classes only

    # When the benchmark is re-scored, the plots are drawn anew
    for key in keys:
        blobs.delete(bucket, prefix + key)
    assert stack.call("PATCH", "/v1/benchmarks/iris", admin, json={"primary_metric": "f1_macro"}).status_code == 200
    assert stack.call("POST", "/v1/benchmarks/iris/rescore", admin).json()["queued"] == 1
    stack.wait_for(f"/v1/runs/{run_id}", admin, lambda r: r["metrics"]["primary_metric"]["name"] == "f1_macro", 60)
    redrawn = {item["key"][len(prefix):] for item in blobs.list_keys(bucket, prefix + "plots/")}
    assert redrawn == keys
    assert blobs.get_json(bucket, f"{prefix}plots/roc.json") == participant
    assert stack.call("GET", f"/v1/runs/{run_id}/plots/roc", alice).status_code == 200
