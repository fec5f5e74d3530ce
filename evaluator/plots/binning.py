"""Turn the scoring summaries into the points each plot draws: exact for managers, k-row bins for participants.

A participant controls every row's score, so a curve with a step per row reads each row's label off
its own run (each step up of an exact ROC curve is a positive). What participants are shown is built
from bins of at least k rows (`min_bin_rows`): consecutive score bins (or regression buckets) are merged
in score order until each holds k rows, and a short remainder joins the last bin. Bin edges lie on the
summaries' fixed grid and depend only on where the rows' scores are (which the participant knows), never on
their labels; all a bin tells is how many of its >= k rows are positive, so labelling each row by its bin's
majority does about as well as guessing the majority class (within ~sqrt(p(1-p)/k)).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from evaluator.plots.stats import BUCKETS_PER_OCTAVE, RegressionStats, ScoreHistogram, bucket_bounds, bucket_center

BINS_PER_RUN = 20  # k is at least n / this: no participant curve has more than ~20 points
DISPLAY_BINS = 60  # the managers' regression grids
SAFE_Y_BINS = 30


def min_bin_rows(n_rows: int, floor: int) -> int:
    """k = max(floor, ceil(n / 20)): the fewest rows any bin a participant sees may hold."""
    return max(int(floor), math.ceil(n_rows / BINS_PER_RUN), 1)


def group_runs(counts: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Split indices of non-empty `counts` (in order) into [start, end) groups of >= k rows each.

    Greedy from the left; a remainder under k joins the last group. With fewer than k rows in all,
    there is one group (all of them).
    """
    groups: list[tuple[int, int]] = []
    start, total = None, 0
    for i in np.flatnonzero(counts).tolist():
        if start is None:
            start = i
        total += int(counts[i])
        if total >= k:
            groups.append((start, i + 1))
            start, total = None, 0
    if start is not None:
        if groups:
            groups[-1] = (groups[-1][0], len(counts))
        else:
            groups.append((start, len(counts)))
    return groups


@dataclasses.dataclass(frozen=True)
class ScoreBin:
    """Rows whose score is in [low, high): how many are positive and negative, and their mean score."""

    low: float
    high: float
    positives: int
    negatives: int
    mean_score: float

    @property
    def rows(self) -> int:
        return self.positives + self.negatives

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def score_bins(histogram: ScoreHistogram, k: int | None) -> list[ScoreBin]:
    """Bins in ascending score: every non-empty grid bin (k None, the managers'), else groups of >= k rows."""
    positives, negatives = histogram.positives, histogram.negatives
    total = positives + negatives
    width = 1.0 / histogram.bins
    centers = (np.arange(histogram.bins) + 0.5) * width
    groups = ([(i, i + 1) for i in np.flatnonzero(total).tolist()] if k is None else group_runs(total, k))
    if k is not None and groups:  # NOTE: contiguous, from 0 to 1: an edge says where a bin of k rows ends, no more
        groups = [(0 if g == 0 else groups[g - 1][1], end) for g, (_, end) in enumerate(groups)]
        groups[-1] = (groups[-1][0], histogram.bins)
    bins = []
    for start, end in groups:
        rows = int(total[start:end].sum())
        mean = float((centers[start:end] * total[start:end]).sum() / rows) if rows else 0.0
        bins.append(ScoreBin(round(start * width, 6), round(end * width, 6), int(positives[start:end].sum()),
                             int(negatives[start:end].sum()), round(mean, 6)))
    return bins


def roc_points(bins: list[ScoreBin]) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) at each bin's lower edge as the threshold, from (0, 0)."""
    p, n = sum(b.positives for b in bins), sum(b.negatives for b in bins)
    points, tp, fp = [(0.0, 0.0)], 0, 0
    for b in reversed(bins):
        tp, fp = tp + b.positives, fp + b.negatives
        points.append((fp / n if n else 0.0, tp / p if p else 0.0))
    return points


def pr_points(bins: list[ScoreBin]) -> list[tuple[float, float]]:
    """(recall, precision) at each bin's lower edge as the threshold."""
    p = sum(b.positives for b in bins)
    points, tp, predicted = [], 0, 0
    for b in reversed(bins):
        tp, predicted = tp + b.positives, predicted + b.rows
        points.append((tp / p if p else 0.0, tp / predicted if predicted else 1.0))
    return points


def uniform_bins(histogram: ScoreHistogram, count: int = BINS_PER_RUN) -> list[ScoreBin]:
    """`count` equal-width bins of [0, 1] (the managers' calibration curve, as scikit-learn's "uniform")."""
    step = histogram.bins // count
    grouped = ScoreHistogram(count)
    grouped.positives = histogram.positives[: step * count].reshape(count, step).sum(axis=1)
    grouped.negatives = histogram.negatives[: step * count].reshape(count, step).sum(axis=1)
    grouped.positives[-1] += histogram.positives[step * count:].sum()
    grouped.negatives[-1] += histogram.negatives[step * count:].sum()
    fine = score_bins(histogram, None)
    bins = []
    for b in score_bins(grouped, None):  # the mean score from the fine bins inside
        inside = [f for f in fine if b.low <= f.low < b.high]
        mean = sum(f.mean_score * f.rows for f in inside) / max(1, sum(f.rows for f in inside))
        bins.append(dataclasses.replace(b, mean_score=round(mean, 6)))
    return bins


def calibration_points(bins: list[ScoreBin]) -> list[tuple[float, float, int]]:
    """(mean predicted probability, observed fraction positive, rows) per bin."""
    return [(b.mean_score, b.positives / b.rows, b.rows) for b in bins if b.rows]


@dataclasses.dataclass(frozen=True)
class CountBin:
    low: float
    high: float
    rows: int


def nice_range(low: float, high: float) -> tuple[float, float]:
    """Widen [low, high] to multiples of a power of ten near its width (so no end is an exact value)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return -1.0, 1.0
    if high <= low:
        pad = max(abs(low) * 0.1, 1.0)
        return nice_range(low - pad, high + pad)
    step = 10.0 ** math.floor(math.log10(high - low))
    return math.floor(low / step) * step, math.ceil(high / step) * step


def residual_bins(stats: RegressionStats, k: int | None) -> list[CountBin]:
    """Residual bins: DISPLAY_BINS equal ones on a nice range (managers), else log buckets merged to >= k rows."""
    items = sorted(stats.residuals.items())
    if not items:
        return []
    per_octave = BUCKETS_PER_OCTAVE
    if k is None:
        low, high = nice_range(bucket_bounds(items[0][0], per_octave)[0], bucket_bounds(items[-1][0], per_octave)[1])
        edges = np.linspace(low, high, DISPLAY_BINS + 1)
        counts = np.zeros(DISPLAY_BINS, dtype=np.int64)
        for index, count in items:
            where = int(np.clip(np.searchsorted(edges, bucket_center(index, per_octave), side="right") - 1,
                                0, DISPLAY_BINS - 1))
            counts[where] += count
        return [CountBin(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(DISPLAY_BINS)]
    counts = np.array([count for _, count in items], dtype=np.int64)
    return [CountBin(bucket_bounds(items[start][0], per_octave)[0], bucket_bounds(items[end - 1][0], per_octave)[1],
                     int(counts[start:end].sum())) for start, end in group_runs(counts, k)]


@dataclasses.dataclass(frozen=True)
class Grid:
    """A 2-D histogram: counts[i][j] rows with prediction in x_edges[i..i+1] and target in y_edges[j..j+1]."""

    x_edges: list[float]
    y_edges: list[float]
    counts: list[list[int]]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def prediction_grid(stats: RegressionStats, k: int | None) -> Grid:
    """Predicted vs actual: an even grid (managers), else columns of >= k rows by prediction, targets binned."""
    resolution = stats.cell_resolution
    if not stats.cells:
        return Grid([], [], [])
    xs = np.array([x for x, _ in stats.cells], dtype=np.int64)
    ys = np.array([y for _, y in stats.cells], dtype=np.int64)
    counts = np.array(list(stats.cells.values()), dtype=np.int64)
    y_centers = np.array([bucket_center(int(y), resolution) for y in ys])
    x_centers = np.array([bucket_center(int(x), resolution) for x in xs])
    y_low, y_high = nice_range(bucket_bounds(int(ys.min()), resolution)[0], bucket_bounds(int(ys.max()), resolution)[1])
    if k is None:
        x_low, x_high = nice_range(bucket_bounds(int(xs.min()), resolution)[0],
                                   bucket_bounds(int(xs.max()), resolution)[1])
        low, high = min(x_low, y_low), max(x_high, y_high)  # one scale on both axes: the diagonal is y = x
        x_edges = y_edges = np.linspace(low, high, DISPLAY_BINS + 1)
        column = _bin_of(x_centers, x_edges)
    else:
        unique_x, inverse = np.unique(xs, return_inverse=True)
        marginal = np.bincount(inverse, weights=counts).astype(np.int64)
        groups = group_runs(marginal, k)
        x_edges = np.array([bucket_bounds(int(unique_x[start]), resolution)[0] for start, _ in groups]
                           + [bucket_bounds(int(unique_x[groups[-1][1] - 1]), resolution)[1]])
        group_of = np.zeros(len(unique_x), dtype=np.int64)
        for g, (start, end) in enumerate(groups):
            group_of[start:end] = g
        column = group_of[inverse]
        y_edges = np.linspace(y_low, y_high, SAFE_Y_BINS + 1)
    row = _bin_of(y_centers, y_edges)
    grid = np.zeros((len(x_edges) - 1, len(y_edges) - 1), dtype=np.int64)
    np.add.at(grid, (column, row), counts)
    return Grid([float(v) for v in x_edges], [float(v) for v in y_edges], grid.tolist())


def _bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
