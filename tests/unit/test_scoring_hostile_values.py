"""Hostile prediction values: refused with a sentence, and no figure of the document maps a row to a label."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator.errors import PredictionsInvalid
from evaluator.scoring import score_files
from tests.unit.test_scoring_helpers import classification_reference, write_labels, write_predictions

N = 40


def _refusal(tmp_path, task, y, pred, proba=None) -> str:
    labels = write_labels(tmp_path / "labels", range(len(y)), y)
    predictions = write_predictions(tmp_path / "p.parquet", range(len(y)), pred, proba)
    with pytest.raises(PredictionsInvalid) as info:
        score_files(task, labels, predictions, chunk_rows=16)
    assert info.value.code == "predictions_invalid"
    return info.value.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_predictions_for_integer_classes_are_refused(tmp_path, bad):
    y = [0, 1, 2, 1] * 10
    pred = np.array(y, dtype=np.float64)
    pred[[3, 17]] = bad
    message = _refusal(tmp_path, "classification", y, pred)
    assert "NaN or infinite" in message and "integer classes" in message
    assert "-9223372036854775808" not in message


@pytest.mark.parametrize("pred, expected", [
    (pa.array([1e300] + [0.0] * 39), "past the int64 range"),
    (pa.array([2.0**63] + [0.0] * 39), "past the int64 range"),
    (pa.array([2**64 - 1] + [0] * 39, pa.uint64()), "past the int64 range"),
    (pa.array([0.5] + [0.0] * 39), "non-integer numbers"),
    (pa.array([b"\x00\x01"] * 40, pa.binary()), "labels are integers"),
    (pa.array(np.array(["2020-01-01"] * 40, dtype="datetime64[D]")), "labels are integers"),
])
def test_predictions_that_are_no_integer_class_are_refused_not_cast(tmp_path, pred, expected):
    assert expected in _refusal(tmp_path, "classification", [0, 1] * 20, pred)


def test_numbers_for_string_classes_are_refused(tmp_path):
    assert "labels are strings" in _refusal(tmp_path, "classification", ["a", "b"] * 20, [1.0, 2.0] * 20)


@pytest.mark.parametrize("value", [1e200, -1e200, 1.7e308])
def test_regression_predictions_whose_squares_overflow_are_refused(tmp_path, value):
    y = np.linspace(0, 1, N)
    pred = y.copy()
    pred[5] = value
    message = _refusal(tmp_path, "regression", y, pred)
    assert "1 predictions are larger than 1e+100" in message and "overflow" in message


def test_large_regression_predictions_within_the_bound_score_like_sklearn(tmp_path):
    from tests.unit.test_scoring_helpers import assert_matches, regression_reference

    y = np.linspace(0, 1, N)
    pred = np.full(N, 1e99)
    doc = score_files("regression", write_labels(tmp_path / "l", range(N), y),
                      write_predictions(tmp_path / "p.parquet", range(N), pred))
    assert_matches(doc, {k: v for k, v in regression_reference(y, pred).items() if k != "explained_variance"})


def test_a_metric_that_overflows_for_nearly_constant_labels_is_skipped_not_an_error(tmp_path):
    # Given labels that barely vary (spread 1e-60) and errors of 1e99: r2's ratio is past float64
    y = np.array([0.0, 1e-60] * 5)
    doc = score_files("regression", write_labels(tmp_path / "l", range(10), y),
                      write_predictions(tmp_path / "p.parquet", range(10), np.full(10, 1e99)),
                      primary_metric="r2")
    assert "r2" not in doc["metrics"] and "not finite" in doc["skipped"]["r2"]
    assert doc["primary_metric"]["value"] is None
    json.dumps(doc, allow_nan=False)


def test_more_distinct_predicted_classes_than_allowed_is_refused_whatever_the_labels(tmp_path):
    n = 1500
    for y in ([0, 1] * (n // 2), list(range(n - 600)) + [0] * 600):  # few classes, or many of them
        message = _refusal(tmp_path, "classification", y, np.arange(n) + 10**6)
        assert "predictions hold more than 1000 distinct classes" in message


# --- the tagging attack: a unique class per row -------------------------------------------------


def _tagging_doc(tmp_path, y, proba=False) -> dict:
    n = len(y)
    tags = np.arange(n) + 1000
    columns = None
    if proba:  # probability columns for some of the tags (classes the labels do not hold)
        rng = np.random.default_rng(0)
        columns = {str(t): rng.random(n) for t in tags[:5]}
    tmp_path.mkdir(exist_ok=True)
    labels = write_labels(tmp_path / "labels", range(n), y)
    predictions = write_predictions(tmp_path / "p.parquet", range(n), tags, columns)
    return score_files("classification", labels, predictions, chunk_rows=7)


@pytest.mark.parametrize("proba", [False, True])
def test_a_tagging_model_gets_the_same_document_whatever_row_holds_which_label(tmp_path, proba):
    # Given labels, and the same labels assigned to other rows (same classes, same counts)
    y = np.random.default_rng(1).integers(0, 3, N)
    permuted = np.random.default_rng(2).permutation(y)
    assert (permuted != y).any()
    # When a model that predicts a unique class per row is scored against each
    first = _tagging_doc(tmp_path / "a", y.tolist(), proba)
    second = _tagging_doc(tmp_path / "b", permuted.tolist(), proba)
    # Then the documents are identical: nothing in them depends on which row holds which label
    assert first == second
    text = json.dumps(first)
    named = (first["warnings"], first["skipped"], first["per_class"], first["classes"],
             first["confusion_matrix"]["labels"])
    strings = " ".join(str(part) for part in named)
    assert not any(str(1000 + i) in strings for i in range(5, N)), strings
    assert first["classes"] == [0, 1, 2] and set(first["per_class"]) == {"0", "1", "2"}
    assert first["confusion_matrix"]["matrix"] == [[0] * 3] * 3
    assert first["confusion_matrix"]["other"] == np.bincount(y).tolist()
    assert "1039" not in text


def test_a_tagging_model_scores_as_sklearn_would(tmp_path):
    y = np.random.default_rng(3).integers(0, 3, N).tolist()
    doc = _tagging_doc(tmp_path, y)
    from tests.unit.test_scoring_helpers import assert_matches

    assert_matches(doc, classification_reference(y, (np.arange(N) + 1000).tolist(), None, None))
    assert doc["confusion_matrix"]["other_classes"] == N
    assert any(f"{N} predictions name {N} classes absent from the labels" in w for w in doc["warnings"])


def test_warnings_name_no_class(tmp_path):
    y, pred = ["cat", "dog", "eel", "eel"], ["cat", "dog", "dog", "yak"]
    doc = score_files("classification", write_labels(tmp_path / "l", range(4), y),
                      write_predictions(tmp_path / "p.parquet", range(4), pred))
    assert doc["warnings"] and not any(name in w for w in doc["warnings"] for name in ("cat", "dog", "eel", "yak"))


def test_probability_columns_must_name_distinct_integer_classes(tmp_path):
    y = [0, 1] * 20
    proba = {"1": [0.5] * 40, "01": [0.5] * 40}
    assert "both name class 1" in _refusal(tmp_path, "classification", y, y, proba)
    assert "does not name an integer class" in _refusal(tmp_path, "classification", y, y,
                                                        {"1_0": [0.5] * 40, "0": [0.5] * 40})
    assert "does not name an integer class" in _refusal(tmp_path, "classification", y, y,
                                                        {"9" * 5000: [0.5] * 40, "0": [0.5] * 40})


def test_string_classes_with_a_tag_per_row_leave_only_the_labels_classes(tmp_path):
    y = ["a", "b"] * 20
    labels = write_labels(tmp_path / "labels", range(40), y)
    table = pa.table({"row_id": pa.array(range(40)), "prediction": pa.array([f"tag{i}" for i in range(40)])})
    pq.write_table(table, tmp_path / "p.parquet")
    doc = score_files("classification", labels, tmp_path / "p.parquet")
    assert doc["classes"] == ["a", "b"] and "tag" not in json.dumps(doc)
