"""Helpers shared by the scoring tests (no tests here): write files, call scikit-learn."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn import metrics as skm


def write_labels(path: Path, row_ids, target, *, fmt: str = "parquet") -> Path:
    table = pa.table({"row_id": pa.array(row_ids), "target": pa.array(target)})
    path = path.with_suffix(f".{fmt}")
    if fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=max(1, len(row_ids) // 3))
    return path


def write_predictions(path: Path, row_ids, prediction, proba: dict | None = None, *, order=None) -> Path:
    columns = {"row_id": pa.array(row_ids), "prediction": pa.array(prediction)}
    for name, values in (proba or {}).items():
        columns[f"proba__{name}"] = pa.array(values, pa.float64())
    table = pa.table(columns)
    if order is not None:
        table = table.take(pa.array(order))
    pq.write_table(table, path, row_group_size=max(1, table.num_rows // 2))
    return path


def quiet(function, *args, **kwargs):
    """Call a sklearn function with its UndefinedMetric/zero-division warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def classification_reference(y, pred, proba_labels: list, proba: np.ndarray | None) -> dict:
    """Compute every classification metric with scikit-learn; None where sklearn raises."""
    y, pred = np.asarray(y), np.asarray(pred)
    ref = {
        "accuracy": quiet(skm.accuracy_score, y, pred),
        "balanced_accuracy": quiet(skm.balanced_accuracy_score, y, pred),
    }
    for average in ("macro", "weighted"):
        ref[f"precision_{average}"] = quiet(skm.precision_score, y, pred, average=average)
        ref[f"recall_{average}"] = quiet(skm.recall_score, y, pred, average=average)
        ref[f"f1_{average}"] = quiet(skm.f1_score, y, pred, average=average)
    ref["roc_auc"] = ref["log_loss"] = None
    if proba is not None:
        order = np.argsort(np.array(proba_labels, dtype=object).astype(type(proba_labels[0])), kind="stable")
        labels_sorted = [proba_labels[i] for i in order]
        matrix = proba[:, order]
        true_classes = np.unique(y)
        try:
            if len(true_classes) == 2:
                column = labels_sorted.index(true_classes[1]) if true_classes[1] in labels_sorted else None
                ref["roc_auc"] = None if column is None else quiet(skm.roc_auc_score, y, matrix[:, column])
            else:
                ref["roc_auc"] = quiet(skm.roc_auc_score, y, matrix, multi_class="ovr")
        except ValueError:
            ref["roc_auc"] = None
        try:
            ref["log_loss"] = quiet(skm.log_loss, y, matrix, labels=labels_sorted)
        except ValueError:
            ref["log_loss"] = None
    # NOTE: sklearn >= 1.6 returns nan (with a warning) where older versions raised; JSON has no nan,
    # so both mean "skipped with a reason" in metrics.json.
    return {name: None if value is None or np.isnan(value) else value for name, value in ref.items()}


def regression_reference(y, pred) -> dict:
    """Compute every regression metric with scikit-learn; None where it is undefined."""
    r2 = quiet(skm.r2_score, y, pred)
    return {
        "mae": skm.mean_absolute_error(y, pred),
        "mse": skm.mean_squared_error(y, pred),
        "rmse": skm.root_mean_squared_error(y, pred),
        "r2": None if np.isnan(r2) else r2,
        "median_absolute_error": skm.median_absolute_error(y, pred),
        "max_error": skm.max_error(y, pred),
        "explained_variance": skm.explained_variance_score(y, pred),
    }


def assert_matches(doc: dict, reference: dict, *, rel: float = 1e-9, abs_: float = 1e-12) -> None:
    for name, expected in reference.items():
        if expected is None:
            assert name in doc["skipped"] and name not in doc["metrics"], (name, doc["metrics"].get(name))
        else:
            assert name in doc["metrics"], (name, doc["skipped"].get(name))
            got = doc["metrics"][name]
            assert abs(got - expected) <= abs_ + rel * abs(expected), (name, got, expected)
