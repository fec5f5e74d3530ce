"""Exact ordered counts past memory, bootstrap determinism, and the metrics.json schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.scoring import (
    classification,
    default_primary_metric,
    direction,
    metric_names,
    regression,
    score_files,
    validate_metrics_document,
)
from evaluator.scoring.document import metrics_schema
from evaluator.scoring.probabilities import roc_auc_from_counts
from evaluator.scoring.sorted_runs import MemoryRun, distinct_steps, run_lengths
from evaluator.scoring.value_counts import SortedValueCounts
from tests.unit.test_scoring_helpers import write_labels, write_predictions


@pytest.mark.parametrize("distinct, sorted_input, max_in_memory, spills", [
    (5, False, 500, True), (5, False, 20_000, False), (3_000, False, 500, True), (3_000, False, 10**5, False),
    (40_000, True, 500, True), (40_000, False, 500, True), (40_000, False, 20_000, True), (40_000, False, 10**6, False),
])
def test_sorted_value_counts_spill_to_disk_and_stay_exact(tmp_path, distinct, sorted_input, max_in_memory, spills):
    # Given values beyond the in-memory budget or within it (heavily tied data is held as counts)
    rng = np.random.default_rng(distinct)
    values = rng.integers(0, distinct, 60_000) / 7.0
    values[:5000] = 0.5
    if sorted_input:
        values.sort()
    codes = rng.integers(0, 2, len(values))
    counts = SortedValueCounts(2, tmp_path, max_in_memory=max_in_memory)
    for start in range(0, len(values), 4096):
        counts.add(values[start:start + 4096], codes[start:start + 4096])
    assert counts.spilled == spills
    # When read back, Then the histogram equals np.unique's, in order, and the temp files are gone
    pieces = list(counts)
    got_values = np.concatenate([v for v, _ in pieces])
    got_counts = np.concatenate([c for _, c in pieces])
    expected_values, inverse = np.unique(values, return_inverse=True)
    expected = np.zeros((len(expected_values), 2), dtype=np.int64)
    np.add.at(expected, (inverse, codes), 1)
    assert np.array_equal(got_values, expected_values) and np.array_equal(got_counts, expected)
    assert list(tmp_path.iterdir()) == []


def test_roc_auc_from_spilled_counts_equals_sklearn(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20_000)
    scores = np.round(rng.random(20_000) + 0.3 * y, 4)
    counts = SortedValueCounts(2, tmp_path, max_in_memory=300)
    counts.add(scores, y)
    assert roc_auc_from_counts(counts) == pytest.approx(roc_auc_score(y, scores), rel=1e-12)


def test_merging_sorted_runs_counts_ties_that_straddle_blocks():
    # Given plain and weighted runs with long ties, merged in blocks far shorter than the ties
    rng = np.random.default_rng(5)
    runs, expected = [], np.zeros((0, 2))
    all_values, all_codes, all_counts = [], [], []
    for i in range(6):
        values = np.sort(np.concatenate([rng.integers(0, 300, 700) / 3.0, np.full(300, 50.0)]))
        code = i % 2
        if i < 3:
            runs.append(MemoryRun(values, None, code))
            counts = np.ones(len(values), dtype=np.int64)
        else:
            values, counts = run_lengths(values)
            runs.append(MemoryRun(values, counts, code))
        all_values.append(values), all_codes.append(np.full(len(values), code)), all_counts.append(counts)
    # When they are merged into histograms
    pieces = list(distinct_steps(runs, 2, memory_values=100))
    # Then the pieces ascend without sharing a value and equal a direct count
    got_values = np.concatenate([v for v, _ in pieces])
    got_counts = np.concatenate([c for _, c in pieces])
    assert len(pieces) > 10 and np.all(np.diff(got_values) > 0)
    distinct, inverse = np.unique(np.concatenate(all_values), return_inverse=True)
    expected = np.zeros((len(distinct), 2), dtype=np.int64)
    np.add.at(expected, (inverse, np.concatenate(all_codes)), np.concatenate(all_counts))
    assert np.array_equal(got_values, distinct) and np.array_equal(got_counts, expected)


def _files(tmp_path, n=300):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n))
    return (write_labels(tmp_path / "l", range(n), y),
            write_predictions(tmp_path / "p.parquet", range(n), pred, order=rng.permutation(n)))


@pytest.mark.parametrize("primary", ["accuracy", "f1_macro", "balanced_accuracy"])
def test_confidence_interval_is_deterministic_for_a_seed_and_brackets_the_value(tmp_path, primary):
    labels, predictions = _files(tmp_path)
    first = score_files("classification", labels, predictions, primary_metric=primary, bootstrap_seed=7)
    again = score_files("classification", labels, predictions, primary_metric=primary, bootstrap_seed=7)
    other = score_files("classification", labels, predictions, primary_metric=primary, bootstrap_seed=8)
    ci = first["primary_metric"]["ci"]
    assert ci == again["primary_metric"]["ci"] != other["primary_metric"]["ci"]
    assert ci["low"] < first["primary_metric"]["value"] < ci["high"]
    assert (ci["rounds"], ci["seed"], ci["level"]) == (1000, 7, 0.95)


def test_regression_interval_uses_clusters_and_does_not_depend_on_file_order(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    pred = y + rng.normal(size=500)
    labels = write_labels(tmp_path / "l", range(500), y)
    docs = [score_files("regression", labels, write_predictions(tmp_path / f"p{i}.parquet", range(500), pred,
                                                                order=rng.permutation(500)), primary_metric="mae")
            for i in range(2)]
    assert docs[0]["primary_metric"]["ci"] == docs[1]["primary_metric"]["ci"]
    ci = docs[0]["primary_metric"]["ci"]
    assert ci["low"] < docs[0]["metrics"]["mae"] < ci["high"] and "clusters" in ci["method"]


def test_order_statistic_primary_metric_says_why_it_has_no_interval(tmp_path):
    labels = write_labels(tmp_path / "l", range(4), [1.0, 2.0, 3.0, 4.0])
    doc = score_files("regression", labels, write_predictions(tmp_path / "p.parquet", range(4), [1.0, 2.5, 3, 5]),
                      primary_metric="median_absolute_error")
    assert doc["primary_metric"]["value"] == 0.25
    assert (doc["primary_metric"]["ci"]["method"] == "none"
            and "order statistic" in doc["primary_metric"]["ci"]["reason"])


def test_metrics_document_validates_and_round_trips_through_json(tmp_path):
    labels, predictions = _files(tmp_path)
    doc = score_files("classification", labels, predictions, metrics=["accuracy", "f1_macro"], bootstrap_rounds=10)
    assert set(doc["metrics"]) == {"accuracy", "f1_macro"}
    validate_metrics_document(json.loads(json.dumps(doc)))
    assert doc["implementation"]["scikit_learn"] and doc["implementation"]["scoring_version"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(metrics_schema())
    jsonschema.validate(doc, metrics_schema())


@pytest.mark.parametrize("breakage, where", [
    (lambda d: d.pop("n_rows"), "lacks 'n_rows'"),
    (lambda d: d["metrics"].update(accuracy="high"), "$.metrics['accuracy']"),
    (lambda d: d["primary_metric"].update(direction="up"), "direction must be one of"),
    (lambda d: d.update(surprise=1), "unexpected key 'surprise'"),
])
def test_a_broken_document_is_refused_by_the_schema(tmp_path, breakage, where):
    labels, predictions = _files(tmp_path)
    doc = score_files("classification", labels, predictions, bootstrap_rounds=10)
    breakage(doc)
    with pytest.raises(ValueError) as info:
        validate_metrics_document(doc)
    assert where in str(info.value)


def test_directions_and_defaults():
    assert direction("roc_auc") == direction("r2") == "maximize"
    assert direction("log_loss") == direction("rmse") == "minimize"
    assert default_primary_metric("classification") == "accuracy"
    assert default_primary_metric("regression") == "rmse"
    with pytest.raises(ValueError):
        direction("bogus")


def test_metric_names_list_every_metric_a_benchmark_may_choose_in_document_order():
    assert metric_names("classification") == (
        "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
        "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc", "log_loss") == classification.METRICS
    assert metric_names("regression") == (
        "mae", "mse", "rmse", "r2", "median_absolute_error", "max_error", "explained_variance") == regression.METRICS
    assert all(direction(name) for task in ("classification", "regression") for name in metric_names(task))
    with pytest.raises(ValueError, match="unknown task"):
        metric_names("ranking")


def test_unknown_metrics_and_tasks_are_configuration_errors(tmp_path):
    labels, predictions = _files(tmp_path)
    with pytest.raises(ValueError, match="unknown classification metrics: mae"):
        score_files("classification", labels, predictions, metrics=["mae"])
    with pytest.raises(ValueError, match="unknown task"):
        score_files("ranking", labels, predictions)
