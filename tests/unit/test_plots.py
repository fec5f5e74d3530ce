"""The plots' summaries, binning and rendering: what a participant's plot may hold, and what it draws."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from evaluator.plots import binning, build, render
from evaluator.plots.stats import (
    MAX_CELLS,
    RegressionStats,
    ScoreHistogram,
    StatsInvalid,
    bucket_bounds,
    bucket_of,
    classification_data,
    merge_parts,
    regression_data,
)


def histogram(scores, positive) -> ScoreHistogram:
    h = ScoreHistogram()
    h.add(np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool))
    return h


@pytest.mark.parametrize("counts, k", [([1] * 95, 10), ([0, 3, 0, 7, 12, 1, 1, 0, 2], 5), ([1, 1], 5), ([50], 10)])
def test_groups_hold_at_least_k_rows_cover_every_row_and_keep_order(counts, k):
    counts = np.array(counts)
    groups = binning.group_runs(counts, k)
    sizes = [int(counts[a:b].sum()) for a, b in groups]
    assert sum(sizes) == counts.sum()
    assert all(size >= k for size in sizes) or (len(groups) == 1 and counts.sum() < k)
    assert all(b <= c for (_, b), (c, _) in zip(groups, groups[1:]))  # consecutive, never overlapping


def test_k_is_the_floor_or_a_twentieth_of_the_rows():
    assert binning.min_bin_rows(200, 50) == 50
    assert binning.min_bin_rows(10_000, 50) == 500
    assert binning.min_bin_rows(10_001, 50) == 501
    assert binning.min_bin_rows(10, 3) == 3


def test_participant_bins_of_unique_scores_hold_k_rows_and_their_edges_are_on_the_grid():
    rng = np.random.default_rng(1)
    n = 1000
    scores, labels = (np.arange(n) + 0.5) / n, rng.integers(0, 2, n).astype(bool)
    h = histogram(scores, labels)
    bins = binning.score_bins(h, 50)
    assert all(b.rows >= 50 for b in bins) and sum(b.rows for b in bins) == n
    assert sum(b.positives for b in bins) == labels.sum()
    assert len(bins) == 20
    assert bins[0].low == 0.0 and bins[-1].high == 1.0
    assert all(a.high == b.low for a, b in zip(bins, bins[1:]))  # contiguous: they partition [0, 1]
    for b in bins:  # edges are on the 1e-4 grid
        assert b.low * 10_000 == pytest.approx(round(b.low * 10_000))
    exact = binning.score_bins(h, None)
    assert len(exact) == n and all(b.rows == 1 for b in exact)  # the managers' curve: a step per row


def test_exact_roc_points_equal_scikit_learns_curve_and_area():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0, 0.9999)
    s = (np.floor(s * 10_000) + 0.5) / 10_000  # bin centers: no two scores share a bin unless equal
    points = binning.roc_points(binning.score_bins(histogram(s, y), None))
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert np.allclose([p[0] for p in points], fpr) and np.allclose([p[1] for p in points], tpr)
    assert np.trapezoid([p[1] for p in points], [p[0] for p in points]) == pytest.approx(roc_auc_score(y, s))


def test_pr_and_calibration_points_come_from_the_same_bins():
    h = histogram([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1])
    bins = binning.score_bins(h, 2)
    assert [(b.positives, b.negatives) for b in bins] == [(1, 1), (2, 0)]
    assert binning.pr_points(bins) == [(2 / 3, 1.0), (1.0, 0.75)]
    assert binning.calibration_points(bins) == [(pytest.approx(0.15, abs=1e-4), 0.5, 2),
                                                (pytest.approx(0.85, abs=1e-4), 1.0, 2)]
    uniform = binning.uniform_bins(h)
    assert [(b.low, b.high, b.rows) for b in uniform] == [(0.1, 0.15, 1), (0.2, 0.25, 1), (0.8, 0.85, 1),
                                                          (0.9, 0.95, 1)]  # the non-empty twentieths


def test_a_value_falls_in_its_bucket_and_buckets_sort_like_values():
    values = np.array([-1e90, -3.5, -1e-12, 0.0, 1e-40, 2e-9, 0.7, 1.0, 123.25, 9e99])
    index = bucket_of(values, 32)
    assert list(index) == sorted(index)
    for value, i in zip(values, index):
        low, high = bucket_bounds(int(i), 32)
        assert low <= value < high or (i == 0 and abs(value) < 2 ** -30)


def test_the_prediction_grid_coarsens_so_a_hostile_spread_stays_bounded():
    stats = RegressionStats()
    rng = np.random.default_rng(3)
    for _ in range(20):
        stats.add(rng.normal(size=5000), rng.uniform(-1e6, 1e6, 5000))
    assert len(stats.cells) <= MAX_CELLS and stats.cell_resolution < 32
    assert sum(stats.cells.values()) == 100_000 == sum(stats.residuals.values())


def test_parts_merge_into_the_whole():
    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 300), rng.uniform(size=300)
    half = {"matrix": [[5, 1], [2, 7]], "other": [0, 1]}
    first = classification_data([0, 1], {"1": histogram(s[:100], y[:100] == 1).to_dict()}, half, 100)
    second = classification_data([0, 1], {"1": histogram(s[100:], y[100:] == 1).to_dict()}, half, 200)
    whole = merge_parts(first, second)
    assert whole["n_rows"] == 300 and whole["confusion"] == {"matrix": [[10, 2], [4, 14]], "other": [0, 2]}
    assert ScoreHistogram.from_dict(whole["histograms"]["1"]).positives.sum() == (y == 1).sum()
    a, b = RegressionStats(), RegressionStats()
    a.add(np.arange(10.0), np.arange(10.0) + 1)
    b.add(np.arange(5.0), np.zeros(5))
    merged = merge_parts(regression_data(a, 10), regression_data(b, 5))
    assert sum(RegressionStats.from_dict(merged["stats"]).residuals.values()) == 15


def test_a_summary_that_is_not_ours_is_refused():
    with pytest.raises(StatsInvalid):
        ScoreHistogram.from_dict({"bins": 10, "index": [11], "positives": [1], "negatives": [0]})
    with pytest.raises(StatsInvalid):
        RegressionStats.from_dict({"per_octave": 32, "residual_index": ["x"], "residual_count": [1]})


def test_svg_prints_hostile_class_names_as_text_without_fonts_prolog_or_markup():
    names = ["<script>alert(1)</script>", "$\\frac{1}{2}$", "a\u202eb\x00c" + "x" * 200]
    data = classification_data(names, {}, {"matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "other": [0, 0, 0]}, 3)
    [plot] = build.build(data, variant="participant", k=50)
    svg = plot.svg.decode()
    assert svg.startswith("<svg") and "<script" not in svg and "&lt;script&gt;" in svg
    assert "$\\frac{1}{2}$" in svg  # printed as written, not typeset
    assert "\u202e" not in svg and "\x00" not in svg and "x" * 60 not in svg
    assert "@font-face" not in svg and "<dc:date>" not in svg
    assert " style=" not in svg and "<style" not in svg and 'fill="#ffffff"' in svg  # drawn under style-src 'self'
    assert re.match(r'<svg [^>]*role="img" aria-label="Confusion matrix"><title>Confusion matrix</title>', svg)


def test_both_variants_of_a_classification_run_are_small_and_the_participants_has_few_points():
    rng = np.random.default_rng(5)
    n = 5000
    y, s = rng.integers(0, 2, n), (np.arange(n) + 0.5) / n
    data = classification_data([0, 1], {"1": histogram(s, y == 1).to_dict()},
                               {"matrix": [[1, 2], [3, 4]], "other": [0, 0]}, n)
    built = build.variants({"all": data}, 50)
    assert [p.name for p in built["participant"]] == ["confusion_matrix", "roc", "precision_recall", "calibration"]
    for variant, plots in built.items():
        for plot in plots:
            assert len(plot.svg) < 80_000, (variant, plot.name, len(plot.svg))
    roc = {p.name: p for p in built["participant"]}["roc"]
    assert len(roc.data["curves"][0]["bins"]) == 20 and roc.data["min_bin_rows"] == 250
    exact_roc = {p.name: p for p in built["exact"]}["roc"]
    assert len(exact_roc.data["curves"][0]["bins"]) == n
    drawn = re.findall(r"<path [^>]*d=\"([^\"]+)\"", exact_roc.svg.decode())
    assert max(path.count("L") for path in drawn) < render.MAX_POINTS  # the drawing is thinned


def test_regression_participant_plots_hold_k_rows_per_bin_and_column():
    rng = np.random.default_rng(6)
    stats = RegressionStats()
    y = rng.normal(50, 10, 4000)
    stats.add(y, y + rng.normal(0, 3, 4000))
    residuals = binning.residual_bins(stats, 200)
    assert all(b.rows >= 200 for b in residuals) and sum(b.rows for b in residuals) == 4000
    grid = binning.prediction_grid(stats, 200)
    assert all(sum(column) >= 200 for column in grid.counts) and sum(map(sum, grid.counts)) == 4000
    exact = binning.prediction_grid(stats, None)
    assert len(exact.counts) == binning.DISPLAY_BINS and sum(map(sum, exact.counts)) == 4000
    names = [p.name for p in build.build(regression_data(stats, 4000), variant="participant", k=200)]
    assert names == ["predicted_vs_actual", "residuals"]
