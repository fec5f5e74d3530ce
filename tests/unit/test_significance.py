"""Paired tests of two runs on the same rows (evaluator.significance) and the Ladder's steps (evaluator.ladder)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from evaluator import ladder, significance


def rows(true, predicted, *, k=2, p_true=None, task="classification") -> significance.Rows:
    ids = pa.array([f"r{i:06d}" for i in range(len(true))])
    return significance.Rows(ids, task, np.asarray(true), np.asarray(predicted), k, 0,
                             None if p_true is None else np.asarray(p_true, dtype=float))


def test_exact_and_mid_p_mcnemar():
    assert significance.mcnemar(0, 0) == (1.0, 1.0)
    assert significance.mcnemar(1, 0) == pytest.approx((1.0, 0.5))  # one discordant row: never significant
    exact, mid = significance.mcnemar(10, 0)
    assert exact == pytest.approx(2 * 0.5 ** 10) and mid == pytest.approx(0.5 ** 10)
    exact, mid = significance.mcnemar(30, 12)
    tail = sum(math.comb(42, i) for i in range(13)) / 2 ** 42
    assert exact == pytest.approx(2 * tail) and mid == pytest.approx(2 * (tail - math.comb(42, 12) / 2 ** 43))


def test_two_runs_differing_on_one_row_of_1000_are_not_significantly_different():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 1000)
    a = np.where(rng.random(1000) < 0.8, true, 1 - true)
    b = a.copy()
    wrong = np.flatnonzero(a == true)[0]
    b[wrong] = 1 - b[wrong]  # b errs on one more row
    result = significance.compare("accuracy", rows(true, a), rows(true, b))
    assert result.test == "mcnemar_mid_p" and result.discordant == (1, 0)
    assert result.difference == pytest.approx(0.001)
    assert result.p_value == pytest.approx(0.5) and result.significant(0.05) is False
    assert result.ci_low <= 0 <= result.ci_high


def test_a_real_difference_is_significant_and_the_test_is_deterministic():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, 2000)
    a = np.where(rng.random(2000) < 0.9, true, (true + 1) % 3)
    b = np.where(rng.random(2000) < 0.8, true, (true + 1) % 3)
    for metric in ("accuracy", "f1_macro", "balanced_accuracy"):
        first = significance.compare(metric, rows(true, a, k=3), rows(true, b, k=3))
        assert first.significant(0.05) is True, metric
        assert first.difference > 0 and first.ci_low > 0
        assert significance.compare(metric, rows(true, a, k=3), rows(true, b, k=3)) == first
    same = significance.compare("f1_macro", rows(true, a, k=3), rows(true, a, k=3))
    assert same.difference == 0 and same.p_value == 1.0


def test_mean_metrics_use_a_paired_bootstrap_and_the_per_row_standard_error():
    rng = np.random.default_rng(2)
    y = rng.normal(size=3000)
    a = y + rng.normal(scale=0.5, size=3000)
    b = y + rng.normal(scale=0.7, size=3000)
    result = significance.compare("mae", rows(y, a, task="regression"), rows(y, b, task="regression"))
    assert result.test == "paired_bootstrap" and result.difference < 0 and result.significant(0.05)
    expected_se = np.std(np.abs(y - a) - np.abs(y - b), ddof=1) / math.sqrt(3000)
    assert result.standard_error == pytest.approx(expected_se)
    assert result.a == pytest.approx(np.mean(np.abs(y - a)))
    one = a.copy()
    one[0] += 0.01  # one row of 3,000 differs a little
    nearly = significance.compare("rmse", rows(y, a, task="regression"), rows(y, one, task="regression"))
    assert nearly.significant(0.05) is False


def test_log_loss_from_the_true_class_probability_and_no_test_for_order_statistics():
    true = np.array([0, 1] * 500)
    a = rows(true, true, p_true=np.full(1000, 0.9))
    b = rows(true, true, p_true=np.full(1000, 0.6))
    result = significance.compare("log_loss", a, b)
    assert result.a == pytest.approx(-math.log(0.9)) and result.significant(0.05)
    auc = significance.compare("roc_auc", a, b)
    assert auc.test == "none" and auc.p_value is None and auc.significant(0.05) is None
    assert auc.to_dict()["a"] is None  # JSON: no NaN


def test_misaligned_rows_are_refused():
    with pytest.raises(ValueError):
        significance.compare("accuracy", rows([0, 1], [0, 1]), rows([0, 1, 1], [0, 1, 1]))


def test_ladder_moves_only_on_an_improvement_beyond_the_threshold_and_rounds_to_its_precision():
    thresholds = {("b", "a"): 0.02, ("c", "a"): 0.02, ("d", "c"): 0.01}
    asked = []

    def threshold(run, best):
        asked.append(run)
        return thresholds[(run, best)]

    steps = ladder.steps([("a", 0.7012), ("b", 0.71), ("c", 0.75), ("x", 0.60), ("d", 0.7599)],
                         maximize=True, n_rows=1000, threshold=threshold)
    assert [(s.run_id, s.score, s.best_run_id, s.accepted) for s in steps] == [
        ("a", 0.701, "a", True), ("b", 0.701, "a", False), ("c", 0.75, "c", True), ("x", 0.75, "c", False),
        ("d", 0.75, "c", False)]
    assert asked == ["b", "c", "d"]  # "x" is worse: its rows are never read
    assert steps[2].decimals == 2 and steps[2].shown == 0.75
    assert steps[0].threshold == pytest.approx(1 / math.sqrt(1000)) and steps[0].shown == 0.70
    losses = ladder.steps([("a", 0.5), ("b", 0.4)], maximize=False, n_rows=10, threshold=lambda r, b: 0.05)
    assert losses[-1].score == 0.4 and losses[-1].accepted


def test_decimals_follow_the_threshold():
    assert ladder.decimals_for(0.011) == 2 and ladder.decimals_for(0.0004) == 4 and ladder.decimals_for(0) == 4
    assert ladder.decimals_for(0.3) == 1 and ladder.on_grid(0.70123, 1000) == 0.701


def test_the_ladders_step_without_a_bootstrap_equals_the_comparisons():
    rng = np.random.default_rng(4)
    true = rng.integers(0, 2, 500)
    a, b = rows(true, rng.integers(0, 2, 500)), rows(true, rng.integers(0, 2, 500))
    assert significance.standard_error("accuracy", a, b) == pytest.approx(
        significance.compare("accuracy", a, b).standard_error)
