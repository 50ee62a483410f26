"""The A/B statistics agree with scipy.stats and statsmodels to 1e-9 on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import require_module
from scipy import stats

from recforge.abtest import analysis as ab
from recforge.errors import InputError

TOL = 1e-9
#: the unequal arms of the fixtures are deliberate: their sample-ratio warnings are not news
pytestmark = pytest.mark.filterwarnings(
    "ignore::recforge.abtest.analysis.SampleRatioMismatchWarning")


def sm(name: str):
    require_module("statsmodels")
    import importlib

    return importlib.import_module(name)


def close(a: float, b: float, tol: float = TOL) -> bool:
    """Equal to ``tol`` absolutely, or relatively for large values."""
    return abs(a - b) <= tol * max(1.0, abs(b))


def continuous(seed: int, n_control: int, n_treatment: int, effect: float = 0.3
               ) -> pd.DataFrame:
    """Skewed metric correlated with a pre-period covariate, unequal arms and variances."""
    rng = np.random.default_rng(seed)
    arm = np.array(["control"] * n_control + ["treatment"] * n_treatment)
    pre = rng.gamma(2.0, 2.0, arm.size)
    noise = rng.normal(0, np.where(arm == "treatment", 2.5, 2.0))
    y = 0.8 * pre + noise + effect * (arm == "treatment")
    return pd.DataFrame({"arm": arm, "metric": y, "pre_metric": pre})


def binary(seed: int, n_control: int, n_treatment: int, p: float = 0.1,
           lift: float = 0.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = np.array(["control"] * n_control + ["treatment"] * n_treatment)
    y = (rng.random(arm.size) < p + lift * (arm == "treatment")).astype(float)
    return pd.DataFrame({"arm": arm, "metric": y})


CASES = [(0, 500, 700), (1, 3000, 2900), (2, 40, 25), (3, 20000, 10000)]


@pytest.mark.parametrize(("seed", "nc", "nt"), CASES)
def test_welch_matches_scipy_and_statsmodels(seed: int, nc: int, nt: int) -> None:
    weightstats = sm("statsmodels.stats.weightstats")
    table = continuous(seed, nc, nt)
    t_vals = table.metric[table.arm == "treatment"].to_numpy()
    c_vals = table.metric[table.arm == "control"].to_numpy()
    for alpha in (0.05, 0.01, 0.2):
        welch = ab.analyze(table.drop(columns="pre_metric"), alpha=alpha)["comparisons"][0][
            "welch"]
        ref = stats.ttest_ind(t_vals, c_vals, equal_var=False)
        assert close(welch["t"], ref.statistic) and close(welch["p"], ref.pvalue)
        _, _, df = weightstats.ttest_ind(t_vals, c_vals, usevar="unequal")
        assert close(welch["df"], df)
        compare = weightstats.CompareMeans(weightstats.DescrStatsW(t_vals),
                                           weightstats.DescrStatsW(c_vals))
        low, high = compare.tconfint_diff(alpha=alpha, usevar="unequal")
        assert close(welch["ci"][0], low) and close(welch["ci"][1], high)
        assert close(welch["diff"], t_vals.mean() - c_vals.mean())


@pytest.mark.parametrize(("seed", "nc", "nt"), CASES)
def test_ztest_matches_statsmodels_pooled_test_and_unpooled_interval(seed: int, nc: int,
                                                                     nt: int) -> None:
    proportion = sm("statsmodels.stats.proportion")
    table = binary(seed, nc, nt)
    xt = table.metric[table.arm == "treatment"].sum()
    xc = table.metric[table.arm == "control"].sum()
    for alpha in (0.05, 0.1):
        z = ab.analyze(table, binary=True, alpha=alpha)["comparisons"][0]["ztest"]
        stat, p = proportion.proportions_ztest([xt, xc], [nt, nc])
        assert close(z["z"], stat) and close(z["p"], p)
        low, high = proportion.confint_proportions_2indep(xt, nt, xc, nc, method="wald",
                                                          compare="diff", alpha=alpha)
        assert close(z["ci"][0], low) and close(z["ci"][1], high)


@pytest.mark.parametrize(("seed", "nc", "nt"), CASES)
def test_cuped_lift_is_the_treatment_coefficient_of_ols(seed: int, nc: int, nt: int) -> None:
    api = sm("statsmodels.api")
    table = continuous(seed, nc, nt)
    result = ab.analyze(table)
    treated = (table.arm == "treatment").to_numpy(float)
    pre = table.pre_metric.to_numpy()
    design = api.add_constant(np.column_stack([treated, pre - pre.mean()]))
    fit = api.OLS(table.metric.to_numpy(), design).fit()
    cuped = result["comparisons"][0]["cuped"]
    assert close(cuped["welch"]["diff"], fit.params[1])
    assert close(result["cuped"]["theta"], fit.params[2])
    # the adjusted means are the fitted arm means at the average covariate
    assert close(cuped["control_mean"], fit.params[0])
    assert close(cuped["treatment_mean"], fit.params[0] + fit.params[1])
    # the covariate explains much of the metric: CUPED narrows the interval
    raw = result["comparisons"][0]["welch"]
    assert cuped["welch"]["se"] < 0.8 * raw["se"]
    assert 0.3 < result["cuped"]["variance_reduction"] < 1


def test_srm_matches_scipy_chisquare_and_warns_loudly() -> None:
    counts = {"a": 5120, "b": 4880, "c": 10150}
    split = {"a": 1, "b": 1, "c": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the split is as expected
        srm = ab.srm_check(counts, split)
    expected = np.array([1, 1, 2]) / 4 * sum(counts.values())
    ref = stats.chisquare(list(counts.values()), expected)
    assert close(srm["chi2"], ref.statistic) and close(srm["p"], ref.pvalue)
    assert srm["mismatch"] is False
    with pytest.warns(ab.SampleRatioMismatchWarning, match="SAMPLE RATIO MISMATCH"):
        srm = ab.srm_check({"a": 5300, "b": 4700})
    ref = stats.chisquare([5300, 4700])
    assert close(srm["p"], ref.pvalue) and srm["mismatch"] is True
    with pytest.raises(InputError, match="expected split names arms"):
        ab.srm_check(counts, {"a": 1, "b": 1})


def test_analyze_flags_a_mismatch_in_its_result() -> None:
    table = continuous(5, 1000, 1300)
    with pytest.warns(ab.SampleRatioMismatchWarning):
        result = ab.analyze(table)
    assert result["srm"]["mismatch"] is True
    assert ab.analyze(table, expected_split={"control": 10, "treatment": 13})["srm"][
        "mismatch"] is False


@pytest.mark.parametrize(("baseline", "mde", "alpha", "power", "ratio"), [
    (0.1, 0.01, 0.05, 0.8, 1.0), (0.03, -0.005, 0.01, 0.9, 2.0), (0.5, 0.05, 0.1, 0.8, 0.5),
    (0.2, 0.002, 0.05, 0.95, 1.0)])
def test_proportion_sample_size_matches_statsmodels(baseline: float, mde: float, alpha: float,
                                                    power: float, ratio: float) -> None:
    stats_power = sm("statsmodels.stats.power")
    proportion = sm("statsmodels.stats.proportion")
    effect = proportion.proportion_effectsize(baseline + mde, baseline)
    result = ab.sample_size_proportions(baseline, mde, alpha=alpha, power=power, ratio=ratio)
    assert close(result["effect_size"], abs(effect))
    ref = stats_power.NormalIndPower().solve_power(effect_size=abs(effect), alpha=alpha,
                                                   power=power, ratio=ratio)
    assert close(result["n1"], ref)
    assert result["n1_users"] == int(np.ceil(ref)) and result["n2"] == pytest.approx(ref * ratio)
    achieved = stats_power.NormalIndPower().power(abs(effect), result["n1"], alpha, ratio=ratio)
    assert close(achieved, power, 1e-12)
    n = 5000.0
    assert close(ab.power_proportions(baseline, mde, n, alpha=alpha, ratio=ratio),
                 stats_power.NormalIndPower().power(abs(effect), n, alpha, ratio=ratio))


@pytest.mark.parametrize(("mde", "sd", "alpha", "power", "ratio"), [
    (0.5, 2.0, 0.05, 0.8, 1.0), (1.0, 3.0, 0.01, 0.9, 1.5), (0.2, 1.0, 0.05, 0.8, 0.7),
    (2.0, 2.5, 0.1, 0.85, 1.0)])
def test_mean_sample_size_matches_statsmodels(mde: float, sd: float, alpha: float,
                                              power: float, ratio: float) -> None:
    stats_power = sm("statsmodels.stats.power")
    result = ab.sample_size_means(mde, sd, alpha=alpha, power=power, ratio=ratio)
    # statsmodels' power function at our size gives the target power to 1e-12 ...
    achieved = stats_power.TTestIndPower().power(mde / sd, result["n1"], alpha, ratio=ratio)
    assert close(achieved, power, 1e-12)
    # ... while its own solver stops earlier (power off by up to ~1e-8, so n by ~1e-7)
    ref = stats_power.TTestIndPower().solve_power(effect_size=mde / sd, alpha=alpha,
                                                  power=power, ratio=ratio)
    assert close(result["n1"], ref, 1e-6)
    assert abs(stats_power.TTestIndPower().power(mde / sd, ref, alpha, ratio=ratio) - power
               ) >= abs(achieved - power)


def test_relative_lift_delta_method_matches_the_bootstrap_spread() -> None:
    table = continuous(7, 20000, 20000, effect=1.0).drop(columns="pre_metric")
    comp = ab.analyze(table, bootstrap_resamples=2000, seed=3)["comparisons"][0]
    rel = comp["relative"]
    means = table.groupby("arm").metric.mean()
    assert close(rel["lift"], means["treatment"] / means["control"] - 1)
    boot_width = comp["bootstrap"]["relative_ci"][1] - comp["bootstrap"]["relative_ci"][0]
    assert rel["ci"][1] - rel["ci"][0] == pytest.approx(boot_width, rel=0.1)
    boot_diff = comp["bootstrap"]["diff_ci"]
    assert boot_diff[0] == pytest.approx(comp["welch"]["ci"][0], rel=0.1)
    assert boot_diff[1] == pytest.approx(comp["welch"]["ci"][1], rel=0.1)
    assert comp["bootstrap"]["diff_se"] == pytest.approx(comp["welch"]["se"], rel=0.1)


def test_bootstrap_is_seeded() -> None:
    table = binary(1, 300, 300)
    runs = [ab.analyze(table, bootstrap_resamples=200, seed=s)["comparisons"][0]["bootstrap"]
            for s in (4, 4, 5)]
    assert runs[0] == runs[1] and runs[0]["diff_ci"] != runs[2]["diff_ci"]
    with pytest.raises(InputError, match="--seed"):
        ab.analyze(table, bootstrap_resamples=200)


def test_several_arms_are_each_compared_with_the_control() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"arm": np.repeat(["a", "base", "b"], 400),
                          "metric": rng.normal(size=1200)})
    result = ab.analyze(table, control="base")
    assert [c["treatment"] for c in result["comparisons"]] == ["a", "b"]
    assert list(result["arms"]) == ["a", "b", "base"] and result["control"] == "base"
    assert [c["treatment"] for c in ab.analyze(table)["comparisons"]] == ["b", "base"]


@pytest.mark.parametrize(("table", "kwargs", "message"), [
    (pd.DataFrame({"arm": ["a"] * 5, "metric": range(5)}), {}, "at least 2"),
    (pd.DataFrame({"arm": ["a", "b", "b"], "metric": [1, 2, 3]}), {}, "arm 'a' has 1 user"),
    (pd.DataFrame({"arm": ["a", "b"] * 3, "metric": [0, 1, 2, 0, 1, 1]}), {"binary": True},
     "must be 0 or 1"),
    (pd.DataFrame({"arm": ["a", "b"] * 3, "metric": [0, 1, np.nan, 0, 1, 1]}), {},
     "NaN"),
    (pd.DataFrame({"arm": ["a", "b"] * 3}), {}, "no 'metric' column"),
    (pd.DataFrame({"arm": ["a", "b"] * 3, "metric": range(6)}), {"control": "c"},
     "control arm 'c'"),
    (pd.DataFrame({"arm": ["a", "b"] * 3, "metric": range(6)}), {"alpha": 1.5}, "alpha"),
])
def test_bad_tables_and_arguments_raise_one_line(table: pd.DataFrame, kwargs: dict,
                                                 message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        ab.analyze(table, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ab.sample_size_proportions(0.95, 0.1), "baseline \\+ mde"),
    (lambda: ab.sample_size_proportions(0.1, 0.0), "mde"),
    (lambda: ab.sample_size_proportions(1.0, 0.1), "baseline"),
    (lambda: ab.sample_size_means(0.0, 1.0), "mde"),
    (lambda: ab.sample_size_means(1.0, -1.0), "sd"),
    (lambda: ab.sample_size_means(1.0, 1.0, power=1.0), "power"),
    (lambda: ab.sample_size_means(1.0, 1.0, ratio=0.0), "ratio"),
])
def test_bad_power_arguments_name_the_parameter(call, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()


def test_constant_arms_give_no_test_rather_than_nan() -> None:
    table = pd.DataFrame({"arm": ["a", "b"] * 4, "metric": [1.0] * 8})
    welch = ab.analyze(table)["comparisons"][0]["welch"]
    assert welch["t"] is None and welch["p"] is None and welch["diff"] == 0.0
