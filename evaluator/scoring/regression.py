"""Regression metrics streamed with compensated sums and exact order statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evaluator.errors import EvaluatorError, PredictionsInvalid
from evaluator.scoring.alignment import AlignedChunk
from evaluator.scoring.value_counts import SortedValueCounts

METRICS = ("mae", "mse", "rmse", "r2", "median_absolute_error", "max_error", "explained_variance")
# NOTE: values past this are refused: errors stay under 2e100, so their squares (4e200) and sums of them
# over any number of rows stay finite in float64 (max 1.8e308). The bound is on each value alone, so a
# refusal says nothing about the labels.
MAX_MAGNITUDE = 1e100


class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.minimum, self.maximum = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        n_b = len(values)
        mean_b = float(np.mean(values))
        m2_b = float(np.sum((values - mean_b) ** 2))
        delta, total = mean_b - self.mean, self.n + n_b
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * self.n * n_b / total
        self.n = total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    @property
    def sum_of_squares(self) -> float:
        # NOTE: constant data has exactly zero spread; float rounding of the mean must not invent one.
        return 0.0 if self.minimum == self.maximum else self.m2


def fraction_explained(numerator: float, denominator: float) -> float:
    """Combine as scikit-learn's force_finite=True does: 1.0 if perfect, 0.0 if y is constant."""
    if numerator == 0:
        return 1.0
    if denominator == 0:
        return 0.0
    return 1.0 - numerator / denominator


class RegressionAccumulator:
    """Stream aligned chunks into the sufficient statistics of every regression metric."""

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        self.n = 0
        self._abs: list[float] = []
        self._squares: list[float] = []
        self._max = 0.0
        self._y, self._errors = _Moments(), _Moments()
        self._absolute_errors = SortedValueCounts(1, directory, max_in_memory=max(1, budget_bytes // 8))

    def add(self, chunk: AlignedChunk) -> None:
        y = chunk.target.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if not np.all(np.isfinite(y)):
            raise EvaluatorError("labels file has non-finite regression targets")
        if np.any(np.abs(y) > MAX_MAGNITUDE):
            raise EvaluatorError(f"labels file has regression targets past {MAX_MAGNITUDE:g} in magnitude")
        pred = chunk.prediction.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        too_large = int(np.count_nonzero(np.abs(pred) > MAX_MAGNITUDE))
        if too_large:
            raise PredictionsInvalid(
                f"{too_large} predictions are larger than {MAX_MAGNITUDE:g} in magnitude: their squared errors "
                "would overflow float64; predict finite values on the scale of the target")
        errors = y - pred
        absolute = np.abs(errors)
        self.n += len(y)
        self._abs.append(float(absolute.sum()))
        self._squares.append(float(np.sum(errors * errors)))
        self._max = max(self._max, float(absolute.max(initial=0.0)))
        self._y.add(y)
        self._errors.add(errors)
        self._absolute_errors.add(absolute, np.zeros(len(absolute), dtype=np.int32))

    def sums(self) -> dict[str, float]:
        return {"abs": math.fsum(self._abs), "squares": math.fsum(self._squares)}

    def result(self) -> dict:
        n, sums = self.n, self.sums()
        mse = sums["squares"] / n
        metrics = {
            "mae": sums["abs"] / n,
            "mse": mse,
            "rmse": math.sqrt(mse),
            "median_absolute_error": self._median_absolute_error(),
            "max_error": self._max,
            "explained_variance": fraction_explained(self._errors.sum_of_squares / n, self._y.sum_of_squares / n),
        }
        skipped = {}
        if n < 2:
            skipped["r2"] = "R^2 score is not well-defined with less than two samples."
        else:
            metrics["r2"] = fraction_explained(sums["squares"], self._y.sum_of_squares)
        for name, value in list(metrics.items()):
            if not math.isfinite(value):  # NOTE: e.g. r2 when the labels barely vary; JSON has no infinity
                del metrics[name]
                skipped[name] = f"{name} is not finite in float64 for these errors and labels"
        return {"metrics": metrics, "skipped": skipped, "warnings": []}

    def _median_absolute_error(self) -> float:
        n = self._absolute_errors.n_records
        wanted = sorted({(n - 1) // 2, n // 2})
        found: list[float] = []
        seen = 0
        for values, counts in self._absolute_errors:
            cumulative = seen + np.cumsum(counts[:, 0])
            for rank in wanted[len(found):]:
                position = int(np.searchsorted(cumulative, rank, side="right"))
                if position < len(values):
                    found.append(float(values[position]))
            seen = int(cumulative[-1])
        if len(found) == 1:
            return found[0]
        return float(np.mean(np.array(found)))
