"""Seeded bootstrap confidence intervals for the primary metric, in bounded memory.

- Confusion-matrix metrics: resampling n rows with replacement is the same as drawing the
  confusion-matrix cells from Multinomial(n, cells / n), so the bootstrap is exact and costs
  rounds x cells, whatever n.
- Mean-type metrics (mae, mse, rmse, r2, explained_variance, log_loss): rows are grouped into
  `CLUSTERS` clusters by the hash of their row id, each cluster keeps sufficient statistics,
  and clusters are resampled with Poisson(1) weights (a cluster bootstrap; with n <= CLUSTERS
  most clusters hold one row). The result depends on the seed and the data, not on file order.
- Order statistics (roc_auc, median_absolute_error, max_error) are not resampled: the
  interval is omitted and `method` says why.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from evaluator.scoring.classification import Confusion, count_metrics
from evaluator.scoring.hashing import hash_row_ids

LEVEL = 0.95
CLUSTERS = 4096
_MAX_DRAWS = 50_000_000
_BATCH = 64
CLUSTER_METRICS = ("mae", "mse", "rmse", "r2", "explained_variance", "log_loss")


def interval(values: np.ndarray) -> tuple[float, float]:
    """Return the percentile interval at LEVEL, ignoring undefined rounds."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [50 * (1 - LEVEL), 100 - 50 * (1 - LEVEL)])
    return float(low), float(high)


def confusion_bootstrap(confusion: Confusion, metric: str, *, rounds: int, seed: int) -> dict:
    """Bootstrap a confusion-matrix metric by resampling the matrix's cells."""
    matrix = confusion.matrix
    flat = matrix.ravel()
    cells = np.flatnonzero(flat)
    n = int(flat.sum())
    if rounds * len(cells) > _MAX_DRAWS:
        return unavailable(rounds, seed, f"{len(cells)} non-empty confusion cells x {rounds} rounds is too many")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, rounds, _BATCH):
        size = min(_BATCH, rounds - start)
        draws = np.zeros((size, flat.size), dtype=np.int64)
        draws[:, cells] = rng.multinomial(n, flat[cells] / n, size=size)
        values.append(count_metrics(draws.reshape(size, *matrix.shape), confusion.n_other)[metric])
    low, high = interval(np.concatenate(values))
    return {"low": low, "high": high, "level": LEVEL, "rounds": rounds, "seed": seed,
            "method": "percentile bootstrap; multinomial resampling of confusion-matrix cells (exact row bootstrap)"}


def unavailable(rounds: int, seed: int, reason: str) -> dict:
    """Describe an interval that was not computed."""
    return {"low": None, "high": None, "level": LEVEL, "rounds": rounds, "seed": seed, "method": "none",
            "reason": reason}


class ClusterStatistics:
    """Per-cluster sums of the quantities mean-type metrics are made of."""

    FIELDS = ("n", "abs", "sq", "loss", "y", "yy", "e", "ee")

    def __init__(self) -> None:
        self.sums = np.zeros((CLUSTERS, len(self.FIELDS)))
        self._shift_y: float | None = None
        self._shift_e: float | None = None

    def add(self, row_ids: pa.Array, columns: dict[str, np.ndarray]) -> None:
        cluster = ((hash_row_ids(row_ids) >> np.uint64(40)) % np.uint64(CLUSTERS)).astype(np.int64)
        if "y" in columns and self._shift_y is None:
            # NOTE: shifting by a typical value keeps y*y sums free of catastrophic cancellation.
            self._shift_y = float(np.median(columns["y"][:1000]))
            self._shift_e = float(np.median(columns["e"][:1000]))
        derived = {"n": np.ones(len(cluster))}
        if "y" in columns:
            y, e = columns["y"] - self._shift_y, columns["e"] - self._shift_e
            derived.update({"abs": np.abs(columns["e"]), "sq": columns["e"] ** 2, "y": y, "yy": y * y,
                            "e": e, "ee": e * e})
        if "loss" in columns:
            derived["loss"] = columns["loss"]
        for j, name in enumerate(self.FIELDS):
            if name in derived:
                self.sums[:, j] += np.bincount(cluster, weights=derived[name], minlength=CLUSTERS)

    def bootstrap(self, metric: str, *, rounds: int, seed: int) -> dict:
        """Resample clusters with Poisson(1) weights and recompute the metric per round."""
        rng = np.random.default_rng(seed)
        values = []
        for start in range(0, rounds, _BATCH):
            weights = rng.poisson(1.0, size=(min(_BATCH, rounds - start), CLUSTERS)).astype(np.float64)
            totals = dict(zip(self.FIELDS, (weights @ self.sums).T))
            values.append(_from_sums(metric, totals))
        low, high = interval(np.concatenate(values))
        return {"low": low, "high": high, "level": LEVEL, "rounds": rounds, "seed": seed,
                "method": f"percentile bootstrap; Poisson(1) weights over {CLUSTERS} clusters of rows by row_id hash"}


def _from_sums(metric: str, t: dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        n = t["n"]
        if metric == "mae":
            return t["abs"] / n
        if metric == "mse":
            return t["sq"] / n
        if metric == "rmse":
            return np.sqrt(t["sq"] / n)
        if metric == "log_loss":
            return t["loss"] / n
        ss_y = t["yy"] - t["y"] ** 2 / n
        if metric == "r2":
            return np.where(t["sq"] == 0, 1.0, 1.0 - t["sq"] / ss_y)
        ss_e = t["ee"] - t["e"] ** 2 / n
        return np.where(ss_e == 0, 1.0, 1.0 - ss_e / ss_y)


def metric_from_sums(metric: str, totals: dict[str, np.ndarray]) -> np.ndarray:
    """A mean-type metric from summed cluster statistics (evaluator.significance reweights two runs' sums)."""
    return _from_sums(metric, totals)
