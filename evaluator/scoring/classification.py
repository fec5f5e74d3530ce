"""Classification metrics from a confusion matrix, exactly as scikit-learn computes them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluator.scoring.alignment import AlignedChunk
from evaluator.scoring.labels import MAX_CLASSES, LabelCodes, label_kind, normalize
from evaluator.scoring.probabilities import ProbabilityAccumulator

logger = logging.getLogger(__name__)

COUNT_METRICS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted",
)
METRICS = (*COUNT_METRICS, "roc_auc", "log_loss")


@dataclasses.dataclass(frozen=True)
class Confusion:
    """Counts over the labels' classes; predictions outside them share one unnamed column.

    NOTE: a predicted value that is not one of the labels' classes is never named nor given a
    column of its own: a model that predicts a unique value per row would read each row's label
    off that column. `matrix` is (K, K + 1): rows are the true classes and columns the predicted
    ones, in `classes` order, then the "other" column. `n_other` counts the distinct predicted
    values outside the classes: scikit-learn scores each as a class (0.0 throughout), which lowers
    the macro averages. The participant knows it already (their predictions and `classes`).
    """

    classes: list
    matrix: np.ndarray
    n_other: int


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Divide, giving 0.0 where the denominator is 0 (scikit-learn's zero_division="warn")."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Return precision, recall, f1 and support per class from (..., K, K + 1) counts (stacks too)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    square = matrix[..., : matrix.shape[-2]]
    tp = np.diagonal(square, axis1=-2, axis2=-1)
    true_sum, pred_sum = matrix.sum(axis=-1), square.sum(axis=-2)
    return {
        "precision": _divide(tp, pred_sum),
        "recall": _divide(tp, true_sum),
        "f1": _divide(2.0 * tp, true_sum + pred_sum),
        "support": true_sum,
        "tp": tp,
    }


def count_metrics(matrix: np.ndarray, n_other: int = 0) -> dict[str, np.ndarray]:
    """Compute every confusion-matrix metric from (..., K, K + 1) counts, as scikit-learn would.

    The `n_other` classes that only ever appear as predictions score 0.0 but count in the macro
    averages' denominators, exactly as in scikit-learn's union of labels.
    """
    scores = per_class(matrix)
    support, tp = scores["support"], scores["tp"]
    n = support.sum(axis=-1)
    present = support > 0
    recall_present = np.where(present, _divide(tp, support), 0.0)
    n_classes = support.shape[-1] + n_other
    result = {
        "accuracy": tp.sum(axis=-1) / n,
        "balanced_accuracy": recall_present.sum(axis=-1) / present.sum(axis=-1),
    }
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = scores[name].sum(axis=-1) / n_classes
        result[f"{name}_weighted"] = (scores[name] * support).sum(axis=-1) / n
    return result


def zero_division_warnings(confusion: Confusion) -> list[str]:
    """Say what scikit-learn would warn about, naming no class (per_class shows which)."""
    warnings = []
    never_predicted = int(np.count_nonzero(confusion.matrix[:, :-1].sum(axis=0) == 0))
    if never_predicted:
        warnings.append(f"precision is ill-defined and set to 0.0 for {never_predicted} of the labels' classes, "
                        "never predicted (see per_class)")
    if confusion.n_other:
        rows = int(confusion.matrix[:, -1].sum())
        warnings.append(f"{rows} predictions name {confusion.n_other} classes absent from the labels: they count "
                        "in confusion_matrix.other, and each such class scores 0.0 as in scikit-learn (recall "
                        "ill-defined), lowering the macro averages; balanced_accuracy ignores them")
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
            size = min(2 * k, 2 * MAX_CLASSES)  # NOTE: labels and predictions hold MAX_CLASSES values each
            grown = np.zeros((size, size), dtype=np.int64)
            grown[: len(self._counts), : len(self._counts)] = self._counts
            self._counts = grown
        cells = true * k + pred
        if k * k <= 4 * len(cells):
            self._counts[:k, :k] += np.bincount(cells, minlength=k * k).reshape(k, k)
        else:  # NOTE: many classes (a hostile model's): count the cells present, not all k * k of them
            present, counts = np.unique(cells, return_counts=True)
            np.add.at(self._counts, (present // k, present % k), counts)
        self.n += len(true)
        return self.proba.add(chunk.proba, true) if self.proba is not None else None

    def confusion(self) -> Confusion:
        """Return the counts over the labels' classes (sorted), predictions outside them in one column."""
        k = len(self.codes)
        counts = self._counts[:k, :k]
        labelled = self.codes.label_codes()
        true_codes = sorted(labelled, key=lambda i: self.codes.values[i])
        other_codes = [i for i in range(k) if i not in labelled]
        matrix = np.zeros((len(true_codes), len(true_codes) + 1), dtype=np.int64)
        matrix[:, :-1] = counts[np.ix_(true_codes, true_codes)]
        matrix[:, -1] = counts[np.ix_(true_codes, other_codes)].sum(axis=1)
        return Confusion([self.codes.values[i] for i in true_codes], matrix, len(other_codes))

    def result(self) -> dict:
        confusion = self.confusion()
        classes, matrix = confusion.classes, confusion.matrix
        metrics = {name: float(value) for name, value in count_metrics(matrix, confusion.n_other).items()}
        skipped: dict[str, str] = {}
        warnings = zero_division_warnings(confusion)
        if self.proba is None:
            skipped["roc_auc"] = skipped["log_loss"] = "the predictions have no proba__<class> columns"
        else:
            for name, outcome in self.proba.results(classes, self.n).items():
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
            "confusion_matrix": {"labels": classes, "matrix": matrix[:, :-1].tolist(),
                                 "other": matrix[:, -1].tolist(), "other_classes": confusion.n_other},
            "counts": confusion,
        }
