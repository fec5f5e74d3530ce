"""Parity of score_files with scikit-learn, on random and edge cases, through real files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.scoring import score_files
from tests.unit.test_scoring_helpers import (
    assert_matches,
    classification_reference,
    regression_reference,
    write_labels,
    write_predictions,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _classes(kind: str, n: int) -> list:
    return list(range(0, 3 * n, 3)) if kind == "int" else [f"c{i}" for i in range(n)]


@st.composite
def classification_cases(draw):
    kind = draw(st.sampled_from(["int", "str"]))
    n_classes = draw(st.integers(1, 5))
    classes = _classes(kind, n_classes + 1)  # the last class may only ever be predicted
    n = draw(st.integers(1, 40))
    y = draw(st.lists(st.sampled_from(classes[:n_classes]), min_size=n, max_size=n))
    pred = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    proba_mode = draw(st.sampled_from(["none", "true_classes", "all_label_classes", "unnormalized"]))
    proba_labels, matrix = None, None
    if proba_mode != "none":
        proba_labels = sorted(set(y)) if proba_mode == "true_classes" else classes[:n_classes]
        raw = np.array(draw(st.lists(st.lists(st.integers(0, 20), min_size=len(proba_labels),
                                              max_size=len(proba_labels)), min_size=n, max_size=n)), float)
        raw[raw.sum(axis=1) == 0, 0] = 1.0
        matrix = raw / raw.sum(axis=1, keepdims=True) if proba_mode != "unnormalized" else raw / 20.0
    return {
        "y": y, "pred": pred, "proba_labels": proba_labels, "proba": matrix,
        "fmt": draw(st.sampled_from(["parquet", "csv"])),
        "shuffle": draw(st.booleans()),
        "chunk_rows": draw(st.sampled_from([3, 7, 1 << 18])),
        "seed": draw(st.integers(0, 2**16)),
    }


@SETTINGS
@given(case=classification_cases())
def test_classification_metrics_equal_sklearn(tmp_path, case):
    # Given labels and predictions (maybe shuffled, maybe with probabilities) written to files
    n = len(case["y"])
    row_ids = np.arange(n) * 2 + 1
    order = np.random.default_rng(case["seed"]).permutation(n) if case["shuffle"] else None
    labels = write_labels(tmp_path / "labels", row_ids, case["y"], fmt=case["fmt"])
    proba = None
    if case["proba"] is not None:
        proba = {str(label): case["proba"][:, j] for j, label in enumerate(case["proba_labels"])}
    predictions = write_predictions(tmp_path / "predictions.parquet", row_ids, case["pred"], proba, order=order)
    # When they are scored
    doc = score_files("classification", labels, predictions, chunk_rows=case["chunk_rows"], bootstrap_rounds=20)
    # Then every metric equals scikit-learn's, or is skipped exactly where scikit-learn refuses
    assert_matches(doc, classification_reference(case["y"], case["pred"], case["proba_labels"], case["proba"]))
    _assert_per_class_and_confusion(doc, case["y"], case["pred"])


def _assert_per_class_and_confusion(doc, y, pred):
    """Per-class figures and the matrix equal scikit-learn's over the labels' classes; the rest is one column."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    from sklearn.utils.multiclass import unique_labels

    from tests.unit.test_scoring_helpers import quiet

    labels = unique_labels(np.asarray(y), np.asarray(pred))
    true_classes = np.unique(np.asarray(y)).tolist()
    assert doc["classes"] == true_classes == doc["confusion_matrix"]["labels"]
    full = confusion_matrix(y, pred, labels=labels)
    inside = [labels.tolist().index(c) for c in true_classes]
    outside = [j for j in range(len(labels)) if j not in inside]
    assert doc["confusion_matrix"]["matrix"] == full[np.ix_(inside, inside)].tolist()
    assert doc["confusion_matrix"]["other"] == full[np.ix_(inside, outside)].sum(axis=1).tolist()
    assert doc["confusion_matrix"]["other_classes"] == len(outside)
    precision, recall, f1, support = quiet(precision_recall_fscore_support, y, pred, labels=labels)
    assert set(doc["per_class"]) == {str(c) for c in true_classes}
    for i, label in enumerate(labels.tolist()):
        if label not in true_classes:
            continue
        got = doc["per_class"][str(label)]
        assert got["support"] == support[i]
        assert got["precision"] == pytest.approx(precision[i], rel=1e-12)
        assert got["recall"] == pytest.approx(recall[i], rel=1e-12)
        assert got["f1"] == pytest.approx(f1[i], rel=1e-12)


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@st.composite
def regression_cases(draw):
    n = draw(st.integers(1, 50))
    y = draw(st.lists(finite, min_size=n, max_size=n))
    if draw(st.booleans()):
        pred = [v + draw(st.floats(-10, 10)) for v in y]
    else:
        pred = draw(st.lists(finite, min_size=n, max_size=n))
    return {"y": y, "pred": pred, "shuffle": draw(st.booleans()), "chunk_rows": draw(st.sampled_from([4, 1 << 18])),
            "fmt": draw(st.sampled_from(["parquet", "csv"]))}


@SETTINGS
@given(case=regression_cases())
def test_regression_metrics_equal_sklearn(tmp_path, case):
    y, pred = np.array(case["y"]), np.array(case["pred"])
    row_ids = [f"id-{i}" for i in range(len(y))]
    order = np.arange(len(y))[::-1] if case["shuffle"] else None
    labels = write_labels(tmp_path / "labels", row_ids, y, fmt=case["fmt"])
    predictions = write_predictions(tmp_path / "predictions.parquet", row_ids, pred, order=order)
    doc = score_files("regression", labels, predictions, chunk_rows=case["chunk_rows"], bootstrap_rounds=20)
    reference = regression_reference(y, pred)
    if np.ptp(y) == 0 and np.mean(y) != y[0]:
        # NOTE: sklearn's float mean of a constant y can differ from y by an ulp, making its r2 and
        # explained_variance denominators tiny but nonzero (e.g. r2 of [0.1]*3 is -5e31). We treat a
        # constant y_true as constant, which is sklearn's documented force_finite behaviour.
        reference.pop("r2"), reference.pop("explained_variance")
    # NOTE: r2/explained_variance divide by spread; with near-constant y both sides lose the same digits.
    spread = float(np.var(y)) if len(y) else 0.0
    scale = max(1.0, float(np.mean(np.square(y)))) / spread if spread > 0 else 1.0
    assert_matches(doc, {k: v for k, v in reference.items() if k not in ("r2", "explained_variance")})
    assert_matches(doc, {k: v for k, v in reference.items() if k in ("r2", "explained_variance")},
                   rel=1e-9 * scale, abs_=1e-9 * scale)


# --- edge cases scikit-learn defines -------------------------------------------------------


@pytest.mark.parametrize("kind", ["int", "str"])
def test_a_class_never_predicted_scores_zero_precision_like_sklearn(tmp_path, kind):
    classes = _classes(kind, 3)
    y = [classes[0], classes[1], classes[2], classes[2]]
    pred = [classes[0], classes[1], classes[1], classes[1]]
    doc = score_files("classification", write_labels(tmp_path / "l", range(4), y),
                      write_predictions(tmp_path / "p.parquet", range(4), pred))
    assert_matches(doc, classification_reference(y, pred, None, None))
    assert doc["per_class"][str(classes[2])] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert any("never predicted" in w for w in doc["warnings"])


def test_a_single_class_present_skips_roc_auc_and_log_loss_with_sklearn_reason(tmp_path):
    y, pred = ["a"] * 5, ["a", "a", "b", "a", "a"]
    proba = {"a": [0.9, 0.8, 0.4, 0.7, 1.0], "b": [0.1, 0.2, 0.6, 0.3, 0.0]}
    doc = score_files("classification", write_labels(tmp_path / "l", range(5), y),
                      write_predictions(tmp_path / "p.parquet", range(5), pred, proba))
    assert_matches(doc, classification_reference(y, pred, ["a", "b"], np.column_stack([proba["a"], proba["b"]])))
    assert "Only one class present in y_true" in doc["skipped"]["roc_auc"]
    assert doc["metrics"]["accuracy"] == 0.8


def test_predicted_labels_outside_the_label_set_count_like_sklearn_but_are_never_named(tmp_path):
    y, pred = [1, 2, 1, 2], [1, 7, 9, 2]
    doc = score_files("classification", write_labels(tmp_path / "l", range(4), y),
                      write_predictions(tmp_path / "p.parquet", range(4), pred))
    assert_matches(doc, classification_reference(y, pred, None, None))  # macro averages over 4 classes
    assert doc["classes"] == [1, 2] and set(doc["per_class"]) == {"1", "2"}
    assert doc["confusion_matrix"] == {"labels": [1, 2], "matrix": [[1, 0], [0, 1]], "other": [1, 1],
                                       "other_classes": 2}
    assert not any("7" in w or "9" in w for w in doc["warnings"])


def test_binary_roc_auc_uses_the_greater_labels_probability_with_ties(tmp_path):
    y = [0, 0, 1, 1, 1, 0]
    p1 = [0.1, 0.5, 0.5, 0.9, 0.5, 0.2]
    proba = {"0": [1 - v for v in p1], "1": p1}
    doc = score_files("classification", write_labels(tmp_path / "l", range(6), y),
                      write_predictions(tmp_path / "p.parquet", range(6), [0, 1, 1, 1, 1, 0], proba))
    assert_matches(doc, classification_reference(y, [0, 1, 1, 1, 1, 0], [0, 1], np.column_stack([proba["0"], p1])))


def test_binary_roc_auc_can_need_the_lesser_probability_column(tmp_path):
    # Given true classes -1 and 0 but columns for 0 and 1: the positive class (0) has the lesser column
    y = [-1, 0, 0, -1, 0, -1]
    p0 = [0.2, 0.7, 0.6, 0.4, 0.9, 0.1]
    proba = {"0": p0, "1": [1 - v for v in p0]}
    doc = score_files("classification", write_labels(tmp_path / "l", range(6), y),
                      write_predictions(tmp_path / "p.parquet", range(6), y, proba))
    assert_matches(doc, classification_reference(y, y, [0, 1], np.column_stack([p0, proba["1"]])))
    assert doc["metrics"]["roc_auc"] == 1.0


def test_constant_targets_give_sklearn_force_finite_r2(tmp_path):
    y = [2.0, 2.0, 2.0]
    for pred, expected in (([2.0, 2.0, 2.0], 1.0), ([1.0, 2.0, 3.0], 0.0)):
        doc = score_files("regression", write_labels(tmp_path / "l", range(3), y),
                          write_predictions(tmp_path / "p.parquet", range(3), pred))
        assert doc["metrics"]["r2"] == expected == regression_reference(np.array(y), np.array(pred))["r2"]
        assert doc["metrics"]["explained_variance"] == expected


def test_one_row_skips_r2_as_sklearn_returns_nan(tmp_path):
    doc = score_files("regression", write_labels(tmp_path / "l", [5], [1.5]),
                      write_predictions(tmp_path / "p.parquet", [5], [1.0]))
    assert "less than two samples" in doc["skipped"]["r2"]
    assert doc["metrics"]["median_absolute_error"] == 0.5


def test_probabilities_outside_zero_one_skip_log_loss_as_sklearn_refuses(tmp_path):
    proba = {"a": [1.5, 0.2], "b": [-0.5, 0.8]}
    doc = score_files("classification", write_labels(tmp_path / "l", range(2), ["a", "b"]),
                      write_predictions(tmp_path / "p.parquet", range(2), ["a", "b"], proba))
    assert "outside [0, 1]" in doc["skipped"]["log_loss"]
    assert doc["metrics"]["roc_auc"] == 1.0
