"""Bounded, additive summaries of the scored rows that every plot is drawn from.

Scoring streams rows a chunk at a time, so the plots cannot keep them: they keep counts on a grid
fixed before any row is seen (data-independent edges, so no edge is a participant's exact value):

- classification: per probability column, positives and negatives in SCORE_BINS equal bins of [0, 1];
- regression: residuals and (prediction, target) pairs in signed log-scale buckets (`bucket_of`), a
  fixed relative resolution from 2^-30 to past 1e100. The 2-D grid halves its resolution whenever it
  holds more than MAX_CELLS cells, so a hostile model's spread of predictions cannot grow it.

Every summary is JSON (it crosses from the scoring child to the worker) and merges by addition, so the
public and private parts of a split combine into the whole for the managers' plots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCORE_BINS = 10_000  # the managers' resolution of a score: 1e-4
MAX_COLUMNS = 16  # probability columns summarised (in their sorted order); the plots use the labels' classes
BUCKETS_PER_OCTAVE = 32  # residuals: 2.2% relative resolution
MAX_CELLS = 20_000  # the 2-D grid coarsens past this many cells
_SMALLEST_OCTAVE = -30  # |v| < 2^-30 counts as 0


class StatsInvalid(ValueError):
    """A summary that is not one this module wrote (a bug, or a corrupted result file)."""


def bucket_of(values: np.ndarray, per_octave: int) -> np.ndarray:
    """Return each value's signed log bucket: 0 for |v| < 2^-30, else sign * (1 + floor((log2|v| + 30) * s))."""
    magnitude = np.abs(values)
    with np.errstate(divide="ignore"):
        level = np.floor((np.log2(np.where(magnitude > 0, magnitude, 1.0)) - _SMALLEST_OCTAVE) * per_octave)
    index = np.where(magnitude < 2.0 ** _SMALLEST_OCTAVE, 0, 1 + np.maximum(level, 0).astype(np.int64))
    return (np.sign(values).astype(np.int64) * index).astype(np.int64)


def bucket_bounds(index: int, per_octave: int) -> tuple[float, float]:
    """Return the [low, high) bounds of a bucket (bucket 0 spans +-2^-30)."""
    if index == 0:
        return -(2.0 ** _SMALLEST_OCTAVE), 2.0 ** _SMALLEST_OCTAVE
    level = abs(index) - 1
    low = 2.0 ** (level / per_octave + _SMALLEST_OCTAVE)
    high = 2.0 ** ((level + 1) / per_octave + _SMALLEST_OCTAVE)
    return (low, high) if index > 0 else (-high, -low)


def bucket_center(index: int, per_octave: int) -> float:
    if index == 0:
        return 0.0
    low, high = bucket_bounds(index, per_octave)
    return math.copysign(math.sqrt(abs(low * high)), low)


def _coarser(index: np.ndarray) -> np.ndarray:
    """Map buckets of s per octave to buckets of s / 2 (floor of a floor is the floor of the half)."""
    return np.sign(index) * np.where(index == 0, 0, 1 + (np.abs(index) - 1) // 2)


class ScoreHistogram:
    """Positives and negatives of one probability column in SCORE_BINS equal bins of [0, 1]."""

    def __init__(self, bins: int = SCORE_BINS) -> None:
        self.positives = np.zeros(bins, dtype=np.int64)
        self.negatives = np.zeros(bins, dtype=np.int64)

    @property
    def bins(self) -> int:
        return len(self.positives)

    def add(self, scores: np.ndarray, positive: np.ndarray) -> None:
        index = np.clip((np.clip(scores, 0.0, 1.0) * self.bins).astype(np.int64), 0, self.bins - 1)
        self.positives += np.bincount(index[positive], minlength=self.bins)
        self.negatives += np.bincount(index[~positive], minlength=self.bins)

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        merged = ScoreHistogram(self.bins)
        merged.positives, merged.negatives = self.positives + other.positives, self.negatives + other.negatives
        return merged

    def to_dict(self) -> dict:
        index = np.flatnonzero(self.positives + self.negatives)
        return {"bins": self.bins, "index": index.tolist(), "positives": self.positives[index].tolist(),
                "negatives": self.negatives[index].tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> ScoreHistogram:
        bins = _int(data.get("bins"), 1, SCORE_BINS)
        index, pos, neg = (_ints(data.get(key)) for key in ("index", "positives", "negatives"))
        if not (len(index) == len(pos) == len(neg)) or (len(index) and (index.min() < 0 or index.max() >= bins)):
            raise StatsInvalid("a score histogram's arrays do not match")
        histogram = cls(bins)
        np.add.at(histogram.positives, index, pos)
        np.add.at(histogram.negatives, index, neg)
        return histogram


class ClassificationStats:
    """Score histograms of the probability columns, keyed by the column's label (summarised per chunk)."""

    def __init__(self, labels: list) -> None:
        self.labels = list(labels)[:MAX_COLUMNS]
        self.histograms = [ScoreHistogram() for _ in self.labels]

    def add(self, matrix: np.ndarray, true_column: np.ndarray) -> None:
        """Add a chunk: `matrix` holds the columns in `labels` order, `true_column` each row's true column."""
        for j, histogram in enumerate(self.histograms):
            histogram.add(matrix[:, j], true_column == j)

    def for_classes(self, classes: list) -> dict[str, dict]:
        """The histograms of the labels' classes only, keyed by str(class) (a column of any other is dropped)."""
        wanted = set(classes)
        return {str(label): histogram.to_dict() for label, histogram in zip(self.labels, self.histograms)
                if label in wanted}


class RegressionStats:
    """Residual buckets and (prediction, target) cells on the signed log grid."""

    def __init__(self) -> None:
        self.residuals: dict[int, int] = {}
        self.cells: dict[tuple[int, int], int] = {}
        self.cell_resolution = BUCKETS_PER_OCTAVE

    def add(self, target: np.ndarray, prediction: np.ndarray) -> None:
        # NOTE: counted with numpy, then merged into the dicts key by key: a chunk adds at most its distinct
        # buckets, and the dicts hold at most ~23,000 residual buckets and MAX_CELLS cells.
        _count_into(self.residuals, bucket_of(target - prediction, BUCKETS_PER_OCTAVE))
        while True:
            x, y = bucket_of(prediction, self.cell_resolution), bucket_of(target, self.cell_resolution)
            span = 1 << 20  # |bucket| < 2^14 at 32 per octave: (x, y) packs into one int64
            keys, counts = np.unique(x * span + y, return_counts=True)
            if len(keys) + len(self.cells) <= 4 * MAX_CELLS or self.cell_resolution == 1:
                break
            self.cells, self.cell_resolution = _coarsen_cells(self.cells), self.cell_resolution // 2
        xs, ys = np.divmod(keys + span // 2, span)
        for cx, cy, count in zip(xs.tolist(), (ys - span // 2).tolist(), counts.tolist()):
            self.cells[(cx, cy)] = self.cells.get((cx, cy), 0) + count
        while len(self.cells) > MAX_CELLS and self.cell_resolution > 1:
            self.cells = _coarsen_cells(self.cells)
            self.cell_resolution //= 2

    def to_dict(self) -> dict:
        residuals = sorted(self.residuals.items())
        cells = sorted(self.cells.items())
        return {"per_octave": BUCKETS_PER_OCTAVE, "residual_index": [k for k, _ in residuals],
                "residual_count": [c for _, c in residuals], "cell_per_octave": self.cell_resolution,
                "cell_x": [k[0] for k, _ in cells], "cell_y": [k[1] for k, _ in cells],
                "cell_count": [c for _, c in cells]}

    @classmethod
    def from_dict(cls, data: dict) -> RegressionStats:
        stats = cls()
        if _int(data.get("per_octave"), 1, BUCKETS_PER_OCTAVE) != BUCKETS_PER_OCTAVE:
            raise StatsInvalid("residual buckets of another resolution")
        index, count = _ints(data.get("residual_index")), _ints(data.get("residual_count"))
        xs, ys, cells = (_ints(data.get(key)) for key in ("cell_x", "cell_y", "cell_count"))
        if len(index) != len(count) or not (len(xs) == len(ys) == len(cells)) or len(cells) > MAX_CELLS:
            raise StatsInvalid("a regression summary's arrays do not match")
        stats.residuals = dict(zip(index.tolist(), count.tolist()))
        stats.cells = {(x, y): c for x, y, c in zip(xs.tolist(), ys.tolist(), cells.tolist())}
        stats.cell_resolution = _int(data.get("cell_per_octave"), 1, BUCKETS_PER_OCTAVE)
        return stats

    def merge(self, other: RegressionStats) -> RegressionStats:
        merged = RegressionStats()
        for key, count in [*self.residuals.items(), *other.residuals.items()]:
            merged.residuals[key] = merged.residuals.get(key, 0) + count
        a, b = dict(self.cells), dict(other.cells)
        resolution_a, resolution_b = self.cell_resolution, other.cell_resolution
        while resolution_a > resolution_b:
            a, resolution_a = _coarsen_cells(a), resolution_a // 2
        while resolution_b > resolution_a:
            b, resolution_b = _coarsen_cells(b), resolution_b // 2
        for cell, count in [*a.items(), *b.items()]:
            merged.cells[cell] = merged.cells.get(cell, 0) + count
        merged.cell_resolution = resolution_a
        while len(merged.cells) > MAX_CELLS and merged.cell_resolution > 1:
            merged.cells, merged.cell_resolution = _coarsen_cells(merged.cells), merged.cell_resolution // 2
        return merged


def _coarsen_cells(cells: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    if not cells:
        return {}
    keys = np.array(list(cells), dtype=np.int64)
    coarse = np.stack([_coarser(keys[:, 0]), _coarser(keys[:, 1])], 1)
    merged: dict[tuple[int, int], int] = {}
    for (x, y), count in zip(coarse.tolist(), cells.values()):
        merged[(x, y)] = merged.get((x, y), 0) + count
    return merged


def _count_into(counts: dict[int, int], index: np.ndarray) -> None:
    keys, values = np.unique(index, return_counts=True)
    for key, value in zip(keys.tolist(), values.tolist()):
        counts[key] = counts.get(key, 0) + value


def _int(value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StatsInvalid(f"expected an integer in [{low}, {high}], got {str(value)[:40]}")
    return value


def _ints(value: Any) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise StatsInvalid("expected a list of integers")
    return np.array(value, dtype=np.int64)


def classification_data(classes: list, histograms: dict[str, dict], confusion: dict, n_rows: int) -> dict:
    """The JSON the scoring child hands back for a classification part."""
    return {"task": "classification", "n_rows": n_rows, "classes": list(classes),
            "positive": str(classes[1]) if len(classes) == 2 else None, "histograms": histograms,
            "confusion": {"matrix": confusion["matrix"], "other": confusion["other"]}}


def regression_data(stats: RegressionStats, n_rows: int) -> dict:
    return {"task": "regression", "n_rows": n_rows, "stats": stats.to_dict()}


def merge_parts(first: dict, second: dict) -> dict:
    """Add two parts' summaries (public and private) into the whole's."""
    if first["task"] != second["task"]:
        raise StatsInvalid("parts of different tasks")
    n_rows = first["n_rows"] + second["n_rows"]
    if first["task"] == "regression":
        merged = RegressionStats.from_dict(first["stats"]).merge(RegressionStats.from_dict(second["stats"]))
        return regression_data(merged, n_rows)
    classes = sorted({*first["classes"], *second["classes"]})  # NOTE: the labels' values, of one type
    histograms = {}
    for name in map(str, classes):
        parts = [ScoreHistogram.from_dict(p["histograms"][name]) for p in (first, second) if name in p["histograms"]]
        if parts:
            histograms[name] = (parts[0].merge(parts[1]) if len(parts) == 2 else parts[0]).to_dict()
    size = len(classes)
    matrix, other = np.zeros((size, size), dtype=np.int64), np.zeros(size, dtype=np.int64)
    for part in (first, second):
        where = [classes.index(c) for c in part["classes"]]
        cells = np.array(part["confusion"]["matrix"], dtype=np.int64).reshape(len(where), len(where))
        matrix[np.ix_(where, where)] += cells
        other[where] += np.array(part["confusion"]["other"], dtype=np.int64)
    return {"task": "classification", "n_rows": n_rows, "classes": classes,
            "positive": str(classes[1]) if size == 2 else None, "histograms": histograms,
            "confusion": {"matrix": matrix.tolist(), "other": other.tolist()}}
