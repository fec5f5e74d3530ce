"""Classification metrics from a confusion matrix, exactly as scikit-learn computes them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluator.scoring.alignment import AlignedChunk
from evaluator.scoring.labels import LabelCodes, label_kind, normalize
from evaluator.scoring.probabilities import ProbabilityAccumulator

logger = logging.getLogger(__name__)

COUNT_METRICS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted",
)
METRICS = (*COUNT_METRICS, "roc_auc", "log_loss")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Divide, giving 0.0 where the denominator is 0 (scikit-learn's zero_division="warn")."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Return precision, recall, f1 and support per class; works on stacks of matrices."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(matrix, axis1=-2, axis2=-1)
    true_sum, pred_sum = matrix.sum(axis=-1), matrix.sum(axis=-2)
    return {
        "precision": _divide(tp, pred_sum),
        "recall": _divide(tp, true_sum),
        "f1": _divide(2.0 * tp, true_sum + pred_sum),
        "support": true_sum,
        "tp": tp,
    }


def count_metrics(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Compute every confusion-matrix metric; `matrix` may be a stack (..., K, K)."""
    scores = per_class(matrix)
    support, tp = scores["support"], scores["tp"]
    n = support.sum(axis=-1)
    present = support > 0
    recall_present = np.where(present, _divide(tp, support), 0.0)
    result = {
        "accuracy": tp.sum(axis=-1) / n,
        "balanced_accuracy": recall_present.sum(axis=-1) / present.sum(axis=-1),
    }
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = scores[name].mean(axis=-1)
        result[f"{name}_weighted"] = (scores[name] * support).sum(axis=-1) / n
    return result


def zero_division_warnings(matrix: np.ndarray, classes: list) -> list[str]:
    """Say which classes scikit-learn would warn about, and how they were scored."""
    warnings = []
    never_predicted = [str(c) for c, s in zip(classes, matrix.sum(axis=0)) if s == 0]
    never_true = [str(c) for c, s in zip(classes, matrix.sum(axis=1)) if s == 0]
    if never_predicted:
        warnings.append("precision is ill-defined and set to 0.0 for classes never predicted: "
                        + ", ".join(never_predicted))
    if never_true:
        warnings.append("recall is ill-defined and set to 0.0 for predicted classes absent from the labels: "
                        + ", ".join(never_true) + " (balanced_accuracy ignores them)")
    return warnings


class ClassificationAccumulator:
    """Stream aligned chunks into exact confusion counts and probability statistics."""

    def __init__(self, target_type: pa.DataType, proba_names: list[str], directory: Path,
                 budget_bytes: int) -> None:
        self.codes = LabelCodes(label_kind(target_type))
        self.n = 0
        self._counts = np.zeros((8, 8), dtype=np.int64)
        self.proba = (ProbabilityAccumulator(proba_names, self.codes, directory, budget_bytes)
                      if proba_names else None)

    def add(self, chunk: AlignedChunk) -> np.ndarray | None:
        """Add a chunk; return its per-row log losses when there are probabilities."""
        kind = self.codes.kind
        true = self.codes.encode(normalize(chunk.target, kind, what="labels"), what="labels")
        pred = self.codes.encode(normalize(chunk.prediction, kind, what="predictions"), what="predictions")
        k = len(self.codes)
        if k > len(self._counts):
            grown = np.zeros((2 * k, 2 * k), dtype=np.int64)
            grown[: len(self._counts), : len(self._counts)] = self._counts
            self._counts = grown
        self._counts[:k, :k] += np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        self.n += len(true)
        return self.proba.add(chunk.proba, true) if self.proba is not None else None

    def confusion(self) -> tuple[list, np.ndarray]:
        """Return the sorted union of classes and the confusion matrix in that order."""
        k = len(self.codes)
        order = sorted(range(k), key=lambda i: self.codes.values[i])
        matrix = self._counts[:k, :k][np.ix_(order, order)]
        return [self.codes.values[i] for i in order], matrix

    def result(self) -> dict:
        classes, matrix = self.confusion()
        metrics = {name: float(value) for name, value in count_metrics(matrix).items()}
        skipped: dict[str, str] = {}
        warnings = zero_division_warnings(matrix, classes)
        true_classes = [c for c, s in zip(classes, matrix.sum(axis=1)) if s > 0]
        if self.proba is None:
            skipped["roc_auc"] = skipped["log_loss"] = "the predictions have no proba__<class> columns"
        else:
            for name, outcome in self.proba.results(true_classes, self.n).items():
                if isinstance(outcome, str):
                    skipped[name] = outcome
                else:
                    metrics[name] = outcome
            warnings.extend(self.proba.warnings)
        scores = per_class(matrix)
        return {
            "metrics": metrics,
            "skipped": skipped,
            "warnings": warnings,
            "classes": classes,
            "per_class": {
                str(c): {
                    "precision": float(scores["precision"][i]),
                    "recall": float(scores["recall"][i]),
                    "f1": float(scores["f1"][i]),
                    "support": int(scores["support"][i]),
                }
                for i, c in enumerate(classes)
            },
            "confusion_matrix": {"labels": classes, "matrix": matrix.tolist()},
            "counts": matrix,
        }
