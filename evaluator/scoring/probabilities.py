"""Log loss and ROC AUC from `proba__<class>` columns, streamed and exact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evaluator.errors import PredictionsInvalid
from evaluator.plots.stats import ClassificationStats
from evaluator.scoring.labels import LabelCodes
from evaluator.scoring.sources import PROBA_PREFIX
from evaluator.scoring.value_counts import SortedValueCounts

_EPS = float(np.finfo(np.float64).eps)
# How far past [0, 1] a probability may be and still be float32 rounding (8 ulps of 1.0 in float32): ONNX
# models emit float32, and a forest's averaged trees give 1.0000001. Such values are clipped into [0, 1];
# scikit-learn clips every probability to [eps, 1 - eps] anyway, so the loss is the one it computes on the
# clipped array. Anything further out is not a probability, and log_loss is skipped as scikit-learn refuses it.
FLOAT32_ROUNDING = 1e-6


def roc_auc_from_counts(counts: SortedValueCounts) -> float | None:
    """Return the area under the ROC curve from ascending (negatives, positives) counts.

    Ties count one half (the trapezoid scikit-learn integrates); the sum is exact in integers.
    """
    doubled, negatives_below, positives, negatives = 0, 0, 0, 0
    for _, piece in counts:
        neg, pos = piece[:, 0], piece[:, 1]
        below = negatives_below + np.concatenate([[0], np.cumsum(neg)[:-1]])
        doubled += int(np.sum(pos * (2 * below + neg)))
        negatives_below += int(neg.sum())
        positives += int(pos.sum())
    negatives = negatives_below
    if positives == 0 or negatives == 0:
        return None
    return doubled / (2 * positives * negatives)


class ProbabilityAccumulator:
    """Stream probabilities into log-loss sums and per-column sorted score counts."""

    def __init__(self, names: list[str], codes: LabelCodes, directory: Path, budget_bytes: int) -> None:
        labels = [codes.parse_class_name(name[len(PROBA_PREFIX):]) for name in names]
        first: dict = {}
        for name, label in zip(names, labels):
            if label in first:
                raise PredictionsInvalid(f"probability columns {first[label][:60]!r} and {name[:60]!r} both name "
                                         f"class {label}; write one column per class")
            first[label] = name
        order = sorted(range(len(names)), key=lambda i: labels[i])
        self.names = [names[i] for i in order]
        self.labels = [labels[i] for i in order]
        self._index = {label: j for j, label in enumerate(self.labels)}
        self._codes = codes
        self._loss_sums: list[float] = []
        self._minimum, self._maximum = math.inf, -math.inf
        self._rows_not_summing_to_one = 0  # log_loss's warning tolerance
        self._rows_not_allclose_to_one = 0  # multiclass roc_auc's hard requirement
        self._rows_without_column = 0
        self._values_rounded_past = 0  # probabilities within FLOAT32_ROUNDING outside [0, 1], clipped
        self._budget_values = max(1, budget_bytes // 8)  # NOTE: 8 bytes a score; the columns share the budget
        share = max(1, self._budget_values // len(self.names))
        self._scores: list[SortedValueCounts | None] = [SortedValueCounts(2, directory, max_in_memory=share)
                                                        for _ in self.names]
        self.warnings: list[str] = []
        self.plot_stats = ClassificationStats(self.labels)  # the plots' score histograms (bounded)

    def add(self, proba: dict[str, np.ndarray], true_codes: np.ndarray) -> np.ndarray:
        """Add a chunk; return each row's log loss (0.0 where its label has no column)."""
        matrix = np.column_stack([proba[name[len(PROBA_PREFIX):]] for name in self.names])
        lookup = np.array([self._index.get(v, -1) for v in self._codes.values], dtype=np.int64)
        column = lookup[true_codes]
        self._minimum = min(self._minimum, float(matrix.min(initial=math.inf)))
        self._maximum = max(self._maximum, float(matrix.max(initial=-math.inf)))
        self._values_rounded_past += int(np.sum((matrix < 0) | (matrix > 1)))
        sums = matrix.sum(axis=1)
        self._rows_not_summing_to_one += int(np.sum(~(np.abs(sums - 1.0) <= 1e-8 + math.sqrt(_EPS))))
        self._rows_not_allclose_to_one += int(np.sum(~(np.abs(1.0 - sums) <= 1e-8 + 1e-5 * np.abs(sums))))
        has_column = column >= 0
        self._rows_without_column += int(np.sum(~has_column))
        rows = np.flatnonzero(has_column)
        losses = np.zeros(len(matrix))
        losses[rows] = -np.log(np.clip(matrix[rows, column[rows]], _EPS, 1 - _EPS))
        self._loss_sums.append(float(losses.sum()))
        if len(self._scores) == 2 and self._scores[0] is not None and np.any(column == 1):
            # The greater column's class is a true class, so roc_auc is binary with that class positive, or
            # undefined: the lesser column can no longer matter. Free it and give its budget to the other.
            self._scores[0] = None
            greater = self._scores[1]
            assert greater is not None  # only the lesser column's counts are ever dropped
            greater.max_in_memory = self._budget_values
        for j, scores in enumerate(self._scores):
            if scores is not None:
                scores.add(matrix[:, j], (column == j).astype(np.int32))
        self.plot_stats.add(matrix, column)
        return losses

    def results(self, true_classes: list, n: int) -> dict[str, float | str]:
        """Return each metric's value, or the reason it is undefined (scikit-learn raises there)."""
        return {"log_loss": self._log_loss(n), "roc_auc": self._roc_auc(true_classes)}

    def _log_loss(self, n: int) -> float | str:
        if len(self.labels) < 2:
            return "log_loss needs probability columns for at least two classes"
        if self._minimum < -FLOAT32_ROUNDING or self._maximum > 1 + FLOAT32_ROUNDING:
            return f"probabilities outside [0, 1] (min {self._minimum}, max {self._maximum})"
        if self._values_rounded_past:
            self.warnings.append(f"log_loss: {self._values_rounded_past} probabilities were outside [0, 1] by at "
                                 f"most {FLOAT32_ROUNDING:g} (min {self._minimum}, max {self._maximum}: float32 "
                                 "rounding) and were clipped into it")
        if self._rows_without_column:
            return (f"{self._rows_without_column} rows have a true label with no proba__<class> column "
                    f"(columns: {', '.join(self.names)})")
        if self._rows_not_summing_to_one:
            self.warnings.append(f"log_loss: probabilities of {self._rows_not_summing_to_one} rows do not sum "
                                 "to one; scored as given (as scikit-learn does, with a warning)")
        return math.fsum(self._loss_sums) / n

    def _roc_auc(self, true_classes: list) -> float | str:
        if len(true_classes) < 2:
            return "Only one class present in y_true. ROC AUC score is not defined in that case."
        if len(true_classes) == 2:
            positive = true_classes[1]
            if positive not in self._index:
                return f"binary roc_auc needs the column proba__{positive} (the greater label's probability)"
            counts = self._scores[self._index[positive]]
            auc = roc_auc_from_counts(counts) if counts is not None else None
            return auc if auc is not None else "roc_auc is undefined"
        if sorted(self.labels) != sorted(true_classes):
            return ("one-vs-rest roc_auc needs exactly one probability column per class in y_true "
                    f"({', '.join(map(str, true_classes))}); got {', '.join(self.names)}")
        if self._rows_not_allclose_to_one:
            return (f"probabilities of {self._rows_not_allclose_to_one} rows do not sum to 1.0 over classes; "
                    "multiclass roc_auc needs probabilities (scikit-learn refuses)")
        aucs = [roc_auc_from_counts(scores) for scores in self._scores if scores is not None]
        defined = [auc for auc in aucs if auc is not None]  # every class of y_true has both sides: all defined
        return float(np.mean(defined)) if len(defined) == len(aucs) else "roc_auc is undefined"
