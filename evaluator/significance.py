"""Is run A really better than run B? Paired tests on the same rows; pure (arrays in, a Comparison out).

- accuracy: McNemar's test on the discordant rows (A right and B wrong, and the reverse), exact
  binomial with the mid-p correction (the exact test is conservative: one discordant row gives p = 1);
  the CI of the difference comes from the paired bootstrap below.
- other confusion-matrix metrics: a paired bootstrap; resampling rows with replacement is drawing the
  cells of the joint (true, A's prediction, B's prediction) table from a multinomial, so it costs
  rounds x cells whatever the number of rows (as evaluator.scoring.bootstrap does for one run).
- mean-type metrics (log_loss, mae, mse, rmse, r2, explained_variance): the same Poisson(1) cluster
  bootstrap as one run's CI, with both runs' clusters reweighted by the same draw (paired).
- order statistics (roc_auc, median_absolute_error, max_error): no test; `test` is "none" and the
  caller never ties on it.

The seed is fixed, so a comparison is a function of the rows: the same two runs give the same answer.
`standard_error` is the Ladder's step (evaluator.ladder): for a per-row loss (accuracy, log_loss, mae,
mse) it is std(loss_a - loss_b) / sqrt(n), as in Blum & Hardt; otherwise the bootstrap's SD.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa

from evaluator.scoring import bootstrap
from evaluator.scoring.classification import count_metrics

SEED = 20150706  # NOTE: fixed: a comparison must not change between two reads of the board
ROUNDS = 2000
LEVEL = 0.95
CONFUSION_METRICS = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                     "precision_weighted", "recall_weighted", "f1_weighted")
MEAN_METRICS = bootstrap.CLUSTER_METRICS
_MAX_JOINT_DRAWS = 50_000_000


@dataclasses.dataclass(frozen=True)
class Rows:
    """One run's predictions aligned to the labels of the compared part, sorted by row id.

    Classification: `true` and `predicted` are codes over the labels' classes (K means "not a class of
    the labels"); `n_other` counts those outside values; `p_true` is the probability given to the true
    class (None without probability columns). Regression: `y` and `predicted` are floats.
    """

    row_ids: pa.Array
    task: str
    true: np.ndarray
    predicted: np.ndarray
    n_classes: int = 0
    n_other: int = 0
    p_true: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.true)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """metric(A) - metric(B) on the same rows, with its CI and the p-value of "no difference"."""

    metric: str
    test: str
    a: float
    b: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    standard_error: float | None
    n_rows: int
    discordant: tuple[int, int] | None = None  # McNemar: (A right B wrong, A wrong B right)
    reason: str | None = None

    def significant(self, level: float) -> bool | None:
        """True/False at `level`; None when no test was possible."""
        return None if self.p_value is None else self.p_value < level

    def to_dict(self) -> dict:
        """JSON form (an undefined value reads null: JSON has no NaN)."""
        return {"metric": self.metric, "test": self.test, "a": _finite(self.a), "b": _finite(self.b),
                "difference": _finite(self.difference),
                "ci": {"low": self.ci_low, "high": self.ci_high, "level": LEVEL}, "p_value": self.p_value,
                "standard_error": self.standard_error, "n_rows": self.n_rows,
                "discordant": ({"a_only": self.discordant[0], "b_only": self.discordant[1]}
                               if self.discordant else None), "reason": self.reason}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def mcnemar(a_only: int, b_only: int) -> tuple[float, float]:
    """(exact two-sided p, mid-p) of McNemar's test from the two discordant counts."""
    from scipy import stats  # type: ignore[import-untyped]  # NOTE: here, not above: 0.6 s that an API start skips

    n, low = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0, 1.0
    exact = min(1.0, 2.0 * float(stats.binom.cdf(low, n, 0.5)))
    mid = min(1.0, 2.0 * (float(stats.binom.cdf(low, n, 0.5)) - 0.5 * float(stats.binom.pmf(low, n, 0.5))))
    return exact, mid


def compare(metric: str, a: Rows, b: Rows, *, rounds: int = ROUNDS, seed: int = SEED) -> Comparison:
    """Compare two runs' rows on `metric` (both over the same row ids, in the same order)."""
    if a.n != b.n or not a.row_ids.equals(b.row_ids):
        raise ValueError("the two runs are not aligned on the same rows")
    if a.n == 0:
        return _none(metric, 0, "no rows to compare")
    if metric in CONFUSION_METRICS and a.task == "classification":
        return _confusion(metric, a, b, rounds, seed)
    if metric in MEAN_METRICS:
        return _mean(metric, a, b, rounds, seed)
    return _none(metric, a.n, f"{metric} is an order statistic; no paired test is computed for it")


def _none(metric: str, n: int, reason: str) -> Comparison:
    nan = float("nan")
    return Comparison(metric, "none", nan, nan, nan, None, None, None, None, n, reason=reason)


def _p_two_sided(differences: np.ndarray, observed: float) -> float:
    """Bootstrap p of "no difference": twice the share of rounds on the far side of 0 (with +1 smoothing)."""
    differences = differences[np.isfinite(differences)]
    if len(differences) == 0:
        return 1.0
    if np.all(differences == 0) and observed == 0:
        return 1.0
    below = (np.count_nonzero(differences <= 0) + 1) / (len(differences) + 1)
    above = (np.count_nonzero(differences >= 0) + 1) / (len(differences) + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _interval(differences: np.ndarray) -> tuple[float | None, float | None]:
    low, high = bootstrap.interval(differences)
    return (low if math.isfinite(low) else None), (high if math.isfinite(high) else None)


def _per_row_se(loss_a: np.ndarray, loss_b: np.ndarray) -> float:
    n = len(loss_a)
    return float(np.std(loss_a - loss_b, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def _confusion(metric: str, a: Rows, b: Rows, rounds: int, seed: int) -> Comparison:
    k = a.n_classes
    width = k + 1
    joint = np.bincount((a.true * width + a.predicted) * width + b.predicted, minlength=k * width * width)
    cells = np.flatnonzero(joint)

    def matrices(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cube = counts.reshape(*counts.shape[:-1], k, width, width)
        return cube.sum(axis=-1), cube.sum(axis=-2)

    matrix_a, matrix_b = matrices(joint)
    value_a = float(count_metrics(matrix_a, a.n_other)[metric])
    value_b = float(count_metrics(matrix_b, b.n_other)[metric])
    observed = value_a - value_b
    rounds = max(100, min(rounds, _MAX_JOINT_DRAWS // max(len(cells), 1)))
    rng = np.random.default_rng(seed)
    n = int(joint.sum())
    differences = []
    for start in range(0, rounds, 64):
        size = min(64, rounds - start)
        draws = np.zeros((size, joint.size), dtype=np.int64)
        draws[:, cells] = rng.multinomial(n, joint[cells] / n, size=size)
        drawn_a, drawn_b = matrices(draws)
        differences.append(count_metrics(drawn_a, a.n_other)[metric] - count_metrics(drawn_b, b.n_other)[metric])
    spread = np.concatenate(differences)
    low, high = _interval(spread)
    if metric == "accuracy":
        right_a, right_b = a.true == a.predicted, b.true == b.predicted
        a_only, b_only = int(np.count_nonzero(right_a & ~right_b)), int(np.count_nonzero(~right_a & right_b))
        _, mid_p = mcnemar(a_only, b_only)
        se = _per_row_se((~right_a).astype(float), (~right_b).astype(float))
        return Comparison(metric, "mcnemar_mid_p", value_a, value_b, observed, low, high, mid_p, se, n,
                          discordant=(a_only, b_only))
    finite = spread[np.isfinite(spread)]
    spread_se = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return Comparison(metric, "paired_bootstrap", value_a, value_b, observed, low, high,
                      _p_two_sided(spread, observed), spread_se, n)


def _loss_columns(metric: str, rows: Rows) -> dict[str, np.ndarray]:
    if rows.task == "classification":
        if rows.p_true is None:
            raise ValueError("log_loss needs probability columns")
        eps = float(np.finfo(np.float64).eps)
        return {"loss": -np.log(np.clip(rows.p_true, eps, 1 - eps))}
    return {"y": rows.true.astype(float), "e": rows.true.astype(float) - rows.predicted.astype(float)}


def _mean(metric: str, a: Rows, b: Rows, rounds: int, seed: int) -> Comparison:
    if (metric == "log_loss") != (a.task == "classification"):
        return _none(metric, a.n, f"{metric} does not apply to a {a.task} task")
    if metric == "log_loss" and (a.p_true is None or b.p_true is None):
        return _none(metric, a.n, "a run has no probability columns: log_loss is not defined for it")
    columns_a, columns_b = _loss_columns(metric, a), _loss_columns(metric, b)
    sums_a, sums_b = bootstrap.ClusterStatistics(), bootstrap.ClusterStatistics()
    sums_a.add(a.row_ids, columns_a)
    sums_b.add(b.row_ids, columns_b)
    whole = {name: np.array([total]) for name, total in zip(sums_a.FIELDS, sums_a.sums.sum(axis=0))}
    value_a = float(bootstrap.metric_from_sums(metric, whole)[0])
    whole = {name: np.array([total]) for name, total in zip(sums_b.FIELDS, sums_b.sums.sum(axis=0))}
    value_b = float(bootstrap.metric_from_sums(metric, whole)[0])
    rng = np.random.default_rng(seed)
    differences = []
    both = np.hstack([sums_a.sums, sums_b.sums])  # NOTE: one product per batch for the two runs
    width = sums_a.sums.shape[1]
    for start in range(0, rounds, 64):
        weights = rng.poisson(1.0, size=(min(64, rounds - start), bootstrap.CLUSTERS)).astype(np.float64)
        totals = weights @ both
        totals_a = dict(zip(sums_a.FIELDS, totals[:, :width].T))
        totals_b = dict(zip(sums_b.FIELDS, totals[:, width:].T))
        differences.append(bootstrap.metric_from_sums(metric, totals_a) - bootstrap.metric_from_sums(metric, totals_b))
    spread = np.concatenate(differences)
    observed = value_a - value_b
    low, high = _interval(spread)
    per_row = {"log_loss": "loss", "mae": "abs", "mse": "sq"}
    if metric in per_row:
        loss_a = columns_a["loss"] if metric == "log_loss" else (
            np.abs(columns_a["e"]) if metric == "mae" else columns_a["e"] ** 2)
        loss_b = columns_b["loss"] if metric == "log_loss" else (
            np.abs(columns_b["e"]) if metric == "mae" else columns_b["e"] ** 2)
        se: float | None = _per_row_se(loss_a, loss_b)
    else:
        finite = spread[np.isfinite(spread)]
        se = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return Comparison(metric, "paired_bootstrap", value_a, value_b, observed, low, high,
                      _p_two_sided(spread, observed), se, a.n)


def standard_error(metric: str, a: Rows, b: Rows) -> float | None:
    """The Ladder's step: std(loss_a - loss_b) / sqrt(n) for a per-row loss, without a bootstrap; else compare's."""
    if a.n != b.n or not a.row_ids.equals(b.row_ids):
        raise ValueError("the two runs are not aligned on the same rows")
    if metric == "accuracy" and a.task == "classification":
        return _per_row_se((a.true != a.predicted).astype(float), (b.true != b.predicted).astype(float))
    if metric in ("mae", "mse") and a.task == "regression":
        power = 1 if metric == "mae" else 2
        return _per_row_se(np.abs(a.true - a.predicted) ** power, np.abs(b.true - b.predicted) ** power)
    if metric == "log_loss" and a.p_true is not None and b.p_true is not None:
        return _per_row_se(_loss_columns(metric, a)["loss"], _loss_columns(metric, b)["loss"])
    return compare(metric, a, b).standard_error


def score(metric: str, rows: Rows) -> float | None:
    """The metric of one run's rows (what the Ladder compares with its current best)."""
    if rows.n == 0:
        return None
    if metric in CONFUSION_METRICS and rows.task == "classification":
        matrix = np.bincount(rows.true * (rows.n_classes + 1) + rows.predicted,
                             minlength=rows.n_classes * (rows.n_classes + 1)).reshape(rows.n_classes, -1)
        return float(count_metrics(matrix, rows.n_other)[metric])
    if metric in MEAN_METRICS:
        if (metric == "log_loss") != (rows.task == "classification") or (
                metric == "log_loss" and rows.p_true is None):
            return None
        sums = bootstrap.ClusterStatistics()
        sums.add(rows.row_ids, _loss_columns(metric, rows))
        whole = {name: np.array([total]) for name, total in zip(sums.FIELDS, sums.sums.sum(axis=0))}
        return float(bootstrap.metric_from_sums(metric, whole)[0])
    return None
