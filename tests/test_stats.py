"""Bootstrap intervals and paired tests over per-user values."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.evaluation.stats import bootstrap_ci, paired_tests


def test_interval_contains_mean_and_is_deterministic() -> None:
    values = np.random.default_rng(0).random(500)
    ci = bootstrap_ci(values, seed=3)
    assert ci["low"] < ci["mean"] < ci["high"]
    assert ci["mean"] == pytest.approx(values.mean())
    assert ci["n"] == 500
    assert bootstrap_ci(values, seed=3) == ci
    assert bootstrap_ci(values, seed=4) != ci


def test_interval_shrinks_with_more_users() -> None:
    rng = np.random.default_rng(1)
    small = bootstrap_ci(rng.random(100))
    large = bootstrap_ci(rng.random(10_000))  # several resampling blocks
    width_small = small["high"] - small["low"]
    width_large = large["high"] - large["low"]
    # the standard error falls as 1/sqrt(n): a tenfold narrower interval, within sampling noise
    assert 6 < width_small / width_large < 14


def test_interval_widens_with_confidence() -> None:
    values = np.random.default_rng(2).random(300)
    narrow, wide = bootstrap_ci(values, 0.5), bootstrap_ci(values, 0.99)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]
    with pytest.raises(ValueError):
        bootstrap_ci(values, confidence=1.0)


def test_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for rep in range(200):
        ci = bootstrap_ci(rng.normal(0.0, 1.0, 200), n_boot=400, seed=rep)
        covered += ci["low"] <= 0.0 <= ci["high"]
    assert 0.88 <= covered / 200 <= 0.99


def test_weighted_mean_and_nan_values() -> None:
    values = np.array([1.0, 3.0, np.nan])
    weights = np.array([3.0, 1.0, 5.0])
    ci = bootstrap_ci(values, weights=weights)
    assert ci["mean"] == pytest.approx((3 * 1 + 1 * 3) / 4)
    assert ci["n"] == 2
    assert 1.0 <= ci["low"] <= ci["high"] <= 3.0
    empty = bootstrap_ci(np.array([np.nan]))
    assert empty["n"] == 0 and np.isnan(empty["mean"])


def test_paired_tests_detect_a_real_difference() -> None:
    rng = np.random.default_rng(6)
    base = rng.random(300)
    better = base + 0.05 + rng.normal(0, 0.05, 300)
    out = paired_tests(better, base)
    assert out["n"] == 300
    assert out["mean_diff"] == pytest.approx((better - base).mean())
    assert out["t_pvalue"] < 1e-6 and out["wilcoxon_pvalue"] < 1e-6
    assert out["t_statistic"] > 0


def test_paired_tests_reject_a_null_difference_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    rejections = np.zeros(2)
    for _ in range(300):
        a, b = rng.random(40), rng.random(40)
        out = paired_tests(a, b)
        rejections += [out["t_pvalue"] < 0.05, out["wilcoxon_pvalue"] < 0.05]
    assert np.all((rejections / 300 > 0.01) & (rejections / 300 < 0.10))


def test_paired_tests_identical_values_and_nans() -> None:
    values = np.array([0.1, 0.5, 0.9])
    same = paired_tests(values, values)
    assert same["t_pvalue"] == 1.0 and same["wilcoxon_pvalue"] == 1.0
    assert same["mean_diff"] == 0.0
    with_nan = paired_tests(np.array([1.0, np.nan, 2.0, 3.0]), np.array([0.0, 1.0, np.nan, 1.0]))
    assert with_nan["n"] == 2
    with pytest.raises(ValueError, match="same shape"):
        paired_tests(values, values[:2])
