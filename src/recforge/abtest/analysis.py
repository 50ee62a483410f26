"""The statistics of an A/B test on a per-user table.

Every comparison is a treatment arm against the control, on one metric per user:

* per-arm means and standard deviations;
* the absolute lift (difference in means) with Welch's t-test and its Welch-Satterthwaite
  confidence interval (Welch 1947), and the relative lift ``mean_t / mean_c - 1`` with a
  delta-method interval (Deng, Knoblich & Lu, "Applying the delta method in metric analytics",
  KDD 2018);
* for a 0/1 metric, the two-proportion z-test (pooled variance for the test, unpooled for the
  interval);
* optionally a seeded bootstrap (each arm resampled separately, percentile intervals; Efron &
  Tibshirani 1993);
* CUPED (Deng, Xu, Kohavi & Walker, "Improving the sensitivity of online controlled
  experiments by utilizing pre-experiment data", WSDM 2013): with a pre-period covariate
  ``x`` each user's metric becomes ``y - theta (x - mean x)``, ``theta`` the pooled
  within-arm regression slope ``sum (y - ybar_arm)(x - xbar_arm) / sum (x - xbar_arm)^2``; the
  CUPED lift then equals the treatment coefficient of the least-squares fit of ``y`` on the
  arm and ``x`` (Frisch-Waugh-Lovell), and its tests are Welch's on the adjusted metric;
* the sample-ratio-mismatch check: a chi-square goodness-of-fit test of the users per arm
  against the expected split, flagged (and warned about with `SampleRatioMismatchWarning`)
  below ``srm_alpha`` (Fabijan et al., "Diagnosing sample ratio mismatch", KDD 2019);
* sample sizes and power for proportions (normal approximation on Cohen's arcsine effect
  size h) and means (noncentral t), as statsmodels' ``NormalIndPower``/``TTestIndPower``.

No correction for several treatment arms is applied: each comparison is at level ``alpha``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from recforge.errors import InputError
from recforge.params import Integer, Real

_ALPHA = Real(0.0, 1.0, low_open=True, high_open=True)
#: users per arm below which no test is run
MIN_USERS = 2
#: default threshold of the sample-ratio-mismatch check (the usual, deliberately strict 0.001)
SRM_ALPHA = 0.001
#: resampled values held in memory at once by the bootstrap
_BOOT_CHUNK = 4_000_000


class SampleRatioMismatchWarning(UserWarning):
    """The users per arm are too far from the expected split for chance: the assignment or
    the logging is broken, and the experiment's results are not to be trusted."""


@dataclass(frozen=True)
class Arm:
    """The summary of one arm: users, mean, sample standard deviation (ddof 1)."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: np.ndarray) -> Arm:
        """The summary of ``values`` (at least 2)."""
        return cls(len(values), float(np.mean(values)), float(np.var(values, ddof=1)))


def _finite(value: float) -> float | None:
    """``value`` for JSON: None for NaN or infinity."""
    return float(value) if math.isfinite(value) else None


def welch(treatment: Arm, control: Arm, alpha: float = 0.05) -> dict[str, Any]:
    """Welch's t-test of ``mean_t - mean_c`` with its ``1 - alpha`` interval (Satterthwaite
    degrees of freedom), as ``scipy.stats.ttest_ind(t, c, equal_var=False)``."""
    alpha = _ALPHA.check("alpha", alpha)
    vt, vc = treatment.var / treatment.n, control.var / control.n
    se = math.sqrt(vt + vc)
    diff = treatment.mean - control.mean
    if se == 0.0:  # both arms constant: no test
        return {"diff": diff, "se": 0.0, "df": None, "t": None, "p": None,
                "ci": [_finite(diff), _finite(diff)] if diff == 0 else [None, None]}
    df = (vt + vc) ** 2 / (vt ** 2 / (treatment.n - 1) + vc ** 2 / (control.n - 1))
    t = diff / se
    half = stats.t.isf(alpha / 2, df) * se
    return {"diff": diff, "se": se, "df": df, "t": t, "p": float(2 * stats.t.sf(abs(t), df)),
            "ci": [diff - half, diff + half]}


def relative_lift(treatment: Arm, control: Arm, alpha: float = 0.05) -> dict[str, Any]:
    """``mean_t / mean_c - 1`` with a delta-method normal interval (independent arms):
    ``var = var_t / (n_t m_c^2) + m_t^2 var_c / (n_c m_c^4)``. None when the control mean
    is 0."""
    if control.mean == 0.0:
        return {"lift": None, "se": None, "ci": [None, None]}
    mt, mc = treatment.mean, control.mean
    lift = mt / mc - 1.0
    se = math.sqrt(treatment.var / (treatment.n * mc ** 2)
                   + mt ** 2 * control.var / (control.n * mc ** 4))
    half = stats.norm.isf(_ALPHA.check("alpha", alpha) / 2) * se
    return {"lift": lift, "se": se, "ci": [lift - half, lift + half]}


def proportions_ztest(treatment: Arm, control: Arm, alpha: float = 0.05) -> dict[str, Any]:
    """Two-proportion z-test of ``p_t - p_c`` (the arms' means of a 0/1 metric): the statistic
    with the pooled proportion (as statsmodels' ``proportions_ztest``), the interval with
    the unpooled (Wald) standard error."""
    alpha = _ALPHA.check("alpha", alpha)
    pt, pc, nt, nc = treatment.mean, control.mean, treatment.n, control.n
    pooled = (pt * nt + pc * nc) / (nt + nc)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / nt + 1 / nc))
    se = math.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
    diff = pt - pc
    z = diff / se0 if se0 > 0 else math.nan
    half = stats.norm.isf(alpha / 2) * se
    return {"diff": diff, "z": _finite(z),
            "p": _finite(float(2 * stats.norm.sf(abs(z)))) if se0 > 0 else None,
            "se": se, "ci": [diff - half, diff + half]}


def bootstrap(treatment: np.ndarray, control: np.ndarray, n_resamples: int, seed: int,
              alpha: float = 0.05) -> dict[str, Any]:
    """Percentile bootstrap intervals of the difference in means and of the relative lift:
    each arm resampled with replacement ``n_resamples`` times (``numpy`` generator seeded by
    ``seed``)."""
    n_resamples = Integer(100, 1_000_000).check("bootstrap", n_resamples)
    seed = Integer(0, 2**32 - 1).check("seed", seed)
    alpha = _ALPHA.check("alpha", alpha)
    rng = np.random.default_rng(seed)
    mt, mc = _resampled_means(treatment, n_resamples, rng), _resampled_means(
        control, n_resamples, rng)
    diff = mt - mc
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out: dict[str, Any] = {"n_resamples": n_resamples, "seed": seed,
                           "diff_se": float(np.std(diff, ddof=1)),
                           "diff_ci": [float(v) for v in np.percentile(diff, q)]}
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mt / mc - 1.0
    out["relative_ci"] = ([float(v) for v in np.percentile(rel, q)]
                          if np.all(np.isfinite(rel)) else [None, None])
    return out


def _resampled_means(values: np.ndarray, n_resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """The means of ``n_resamples`` resamples of ``values``, drawn in memory-bounded chunks."""
    n = len(values)
    per_chunk = max(1, _BOOT_CHUNK // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, per_chunk):
        stop = min(start + per_chunk, n_resamples)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def cuped_theta(y: np.ndarray, x: np.ndarray, arms: np.ndarray) -> float:
    """The pooled within-arm slope of ``y`` on ``x``; `InputError` if ``x`` is constant
    within every arm."""
    sxy = sxx = 0.0
    for arm in np.unique(arms):
        mask = arms == arm
        dx = x[mask] - x[mask].mean()
        sxy += float(dx @ (y[mask] - y[mask].mean()))
        sxx += float(dx @ dx)
    if sxx == 0.0:
        raise InputError("the pre-period covariate is constant within every arm: CUPED "
                         "cannot use it")
    return sxy / sxx


def srm_check(counts: Mapping[str, int], expected: Mapping[str, float] | None = None,
              srm_alpha: float = SRM_ALPHA) -> dict[str, Any]:
    """Chi-square goodness of fit of the users per arm against the ``expected`` split
    (arm -> weight, normalised; default equal), as ``scipy.stats.chisquare``. ``mismatch``
    is true when ``p < srm_alpha``; a mismatch also warns (`SampleRatioMismatchWarning`)."""
    srm_alpha = _ALPHA.check("srm_alpha", srm_alpha)
    arms = list(counts)
    weights = {arm: 1.0 for arm in arms} if expected is None else dict(expected)
    if set(weights) != set(arms):
        raise InputError(f"expected split names arms {sorted(weights)}, the data has "
                         f"{sorted(arms)}")
    for arm, w in weights.items():
        Real(0.0, low_open=True).check(f"expected split of {arm!r}", w)
    total_w, total_n = math.fsum(weights.values()), sum(counts.values())
    observed = np.array([counts[a] for a in arms], dtype=float)
    expect = np.array([total_n * weights[a] / total_w for a in arms])
    chi2 = float(np.sum((observed - expect) ** 2 / expect))
    p = float(stats.chi2.sf(chi2, len(arms) - 1))
    mismatch = p < srm_alpha
    if mismatch:
        share = ", ".join(f"{a} {counts[a]:,} (expected {e:,.0f})" for a, e in zip(arms, expect))
        warnings.warn(f"SAMPLE RATIO MISMATCH: users per arm {share}; chi-square p = {p:.3g} "
                      f"< {srm_alpha:g}. The assignment or exposure logging is broken; do not "
                      "trust these results", SampleRatioMismatchWarning, stacklevel=2)
    return {"chi2": chi2, "df": len(arms) - 1, "p": p, "srm_alpha": srm_alpha,
            "observed": {a: int(counts[a]) for a in arms},
            "expected": {a: float(e) for a, e in zip(arms, expect)}, "mismatch": mismatch}


def analyze(table: Any, *, control: str | None = None, binary: bool = False,
            alpha: float = 0.05, bootstrap_resamples: int = 0, seed: int | None = None,
            expected_split: Mapping[str, float] | None = None,
            srm_alpha: float = SRM_ALPHA) -> dict[str, Any]:
    """The full analysis of a per-user table (a pandas DataFrame with columns ``arm`` and
    ``metric``, and ``pre_metric`` for CUPED), JSON-ready.

    ``control``: the control arm (default ``"control"`` when present, else the first arm in
    sorted order); every other arm is compared with it. ``binary``: the metric is 0/1 (adds
    the z-test; other values are refused). ``bootstrap_resamples`` > 0 adds the bootstrap
    (``seed`` required)."""
    alpha = _ALPHA.check("alpha", alpha)
    arms_col, y_all = _columns(table, binary)
    names = sorted(set(arms_col.tolist()))
    if len(names) < 2:
        raise InputError(f"the data has {len(names)} arm(s) ({', '.join(names)}); an A/B test "
                         "needs at least 2")
    control = _control(control, names)
    if bootstrap_resamples and seed is None:
        raise InputError("--bootstrap needs --seed (every random choice takes a seed)")
    values = {a: y_all[arms_col == a] for a in names}
    for arm, v in values.items():
        if len(v) < MIN_USERS:
            raise InputError(f"arm {arm!r} has {len(v)} user(s); each arm needs at least "
                             f"{MIN_USERS}")
    pre = _numeric(table["pre_metric"], "pre_metric") if "pre_metric" in table else None
    result: dict[str, Any] = {
        "alpha": alpha, "control": control, "binary": binary, "n_users": len(y_all),
        "arms": {a: _arm_summary(values[a], None if pre is None else pre[arms_col == a])
                 for a in names},
        "srm": srm_check({a: len(values[a]) for a in names}, expected_split, srm_alpha)}
    if pre is not None:
        theta = cuped_theta(y_all, pre, arms_col)
        adjusted = y_all - theta * (pre - pre.mean())
        result["cuped"] = {"theta": theta,
                           "variance_reduction": 1.0 - _within_var(adjusted, arms_col)
                           / _within_var(y_all, arms_col)}
    result["comparisons"] = [
        _compare(a, control, values, alpha, binary, bootstrap_resamples, seed,
                 None if pre is None else {n: adjusted[arms_col == n] for n in names})
        for a in names if a != control]
    return _json_ready(result)


def _columns(table: Any, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``arm`` and ``metric`` columns as arrays, checked."""
    for column in ("arm", "metric"):
        if column not in table.columns:
            raise InputError(f"the per-user table has no {column!r} column")
    if len(table) == 0:
        raise InputError("the per-user table is empty: no exposed users")
    arms = table["arm"].astype(str).to_numpy()
    y = _numeric(table["metric"], "metric")
    if binary and not np.all((y == 0) | (y == 1)):
        bad = y[(y != 0) & (y != 1)][0]
        raise InputError(f"--binary: the metric must be 0 or 1 for every user, found {bad:g}")
    return arms, y


def _numeric(column: Any, name: str) -> np.ndarray:
    """A column as finite floats; `InputError` naming ``name`` otherwise."""
    try:
        values = column.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"the {name} column is not numeric") from None
    if not np.all(np.isfinite(values)):
        raise InputError(f"the {name} column has missing, NaN or infinite values")
    return values


def _control(control: str | None, names: list[str]) -> str:
    if control is None:
        return "control" if "control" in names else names[0]
    if control not in names:
        raise InputError(f"control arm {control!r} is not in the data (arms: "
                         f"{', '.join(names)})")
    return control


def _arm_summary(y: np.ndarray, pre: np.ndarray | None) -> dict[str, Any]:
    arm = Arm.of(y)
    out = {"n": arm.n, "mean": arm.mean, "sd": math.sqrt(arm.var), "sum": float(y.sum())}
    if pre is not None:
        out["pre_mean"] = float(pre.mean())
    return out


def _within_var(y: np.ndarray, arms: np.ndarray) -> float:
    """The pooled within-arm sum of squares (the variance CUPED reduces)."""
    return float(sum(np.sum((y[arms == a] - y[arms == a].mean()) ** 2)
                     for a in np.unique(arms)))


def _compare(arm: str, control: str, values: dict[str, np.ndarray], alpha: float,
             binary: bool, resamples: int, seed: int | None,
             adjusted: dict[str, np.ndarray] | None) -> dict[str, Any]:
    t, c = Arm.of(values[arm]), Arm.of(values[control])
    out: dict[str, Any] = {"treatment": arm, "control": control, "welch": welch(t, c, alpha),
                           "relative": relative_lift(t, c, alpha)}
    if binary:
        out["ztest"] = proportions_ztest(t, c, alpha)
    if resamples:
        out["bootstrap"] = bootstrap(values[arm], values[control], resamples, seed, alpha)
    if adjusted is not None:
        ta, ca = Arm.of(adjusted[arm]), Arm.of(adjusted[control])
        out["cuped"] = {"treatment_mean": ta.mean, "control_mean": ca.mean,
                        "welch": welch(ta, ca, alpha), "relative": relative_lift(ta, ca, alpha)}
    return out


def _json_ready(value: Any) -> Any:
    """``value`` with NaN/infinite floats as None and numpy scalars as Python values."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _finite(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ---------------------------------------------------------------------- power
def _power_z(effect: float, n1: float, alpha: float, ratio: float) -> float:
    """Two-sided power of a z-test with standardised ``effect`` and ``n1``, ``ratio * n1``
    users (statsmodels' ``NormalIndPower.power``)."""
    shift = effect * math.sqrt(1.0 / (1.0 / n1 + 1.0 / (n1 * ratio)))
    crit = stats.norm.isf(alpha / 2)
    return float(stats.norm.sf(crit - shift) + stats.norm.cdf(-crit - shift))


def _power_t(effect: float, n1: float, alpha: float, ratio: float) -> float:
    """Two-sided power of the two-sample t-test (pooled degrees of freedom, noncentral t;
    statsmodels' ``TTestIndPower.power``)."""
    df = n1 * (1.0 + ratio) - 2.0
    shift = effect * math.sqrt(1.0 / (1.0 / n1 + 1.0 / (n1 * ratio)))
    crit = stats.t.isf(alpha / 2, df)
    return float(1.0 - special.nctdtr(df, shift, crit) + special.nctdtr(df, shift, -crit))


def _solve_n(power_fn: Any, effect: float, alpha: float, power: float, ratio: float,
             low: float) -> float:
    """The (fractional) users in arm 1 at which ``power_fn`` reaches ``power``."""
    def gap(n: float) -> float:
        return power_fn(effect, n, alpha, ratio) - power

    if gap(low) >= 0:  # reached at the smallest size the test allows
        return low
    high = max(2.0 * low, 10.0)
    while gap(high) < 0:
        high *= 2.0
        if high > 1e15:
            raise InputError("the effect is too small: the sample size exceeds 1e15 users")
    return float(optimize.brentq(gap, low, high, xtol=1e-12, rtol=4 * np.finfo(float).eps,
                                 maxiter=500))


def proportion_effect(baseline: float, mde: float) -> float:
    """Cohen's h between ``baseline + mde`` and ``baseline``:
    ``2 asin(sqrt(p1)) - 2 asin(sqrt(p0))`` (statsmodels' ``proportion_effectsize``)."""
    return 2 * math.asin(math.sqrt(baseline + mde)) - 2 * math.asin(math.sqrt(baseline))


def _check_design(alpha: float, power: float, ratio: float) -> tuple[float, float, float]:
    """``alpha``, ``power`` and ``ratio`` checked (a ratio in [1e-6, 1e6])."""
    return (_ALPHA.check("alpha", alpha), _ALPHA.check("power", power),
            Real(1e-6, 1e6).check("ratio", ratio))


def _check_proportions(baseline: float, mde: float) -> tuple[float, float]:
    baseline = Real(0.0, 1.0, low_open=True, high_open=True).check("baseline", baseline)
    mde = Real().check("mde", mde)
    if mde == 0.0 or not 0.0 < baseline + mde < 1.0:
        raise InputError(f"mde: baseline + mde must be a proportion in (0, 1) other than the "
                         f"baseline, got {baseline:g} + {mde:g}")
    return baseline, mde


def sample_size_proportions(baseline: float, mde: float, *, alpha: float = 0.05,
                            power: float = 0.8, ratio: float = 1.0) -> dict[str, Any]:
    """Users needed to detect a change of a conversion rate from ``baseline`` to
    ``baseline + mde`` (absolute) with a two-sided z-test at ``alpha`` with ``power``; arm 2
    has ``ratio`` times arm 1's users. As statsmodels'
    ``NormalIndPower().solve_power(proportion_effectsize(baseline + mde, baseline), ...)``."""
    baseline, mde = _check_proportions(baseline, mde)
    alpha, power, ratio = _check_design(alpha, power, ratio)
    effect = abs(proportion_effect(baseline, mde))
    n1 = _solve_n(_power_z, effect, alpha, power, ratio, low=1e-6)
    return _sizes("proportions", effect, n1, ratio, alpha, power,
                  {"baseline": baseline, "mde": mde})


def sample_size_means(mde: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                      ratio: float = 1.0) -> dict[str, Any]:
    """Users needed to detect a difference ``mde`` in a mean with standard deviation ``sd``
    with a two-sided two-sample t-test; as statsmodels'
    ``TTestIndPower().solve_power(mde / sd, ...)``."""
    mde = Real().check("mde", mde)
    sd = Real(0.0, low_open=True).check("sd", sd)
    if mde == 0.0:
        raise InputError("mde: must be a non-zero difference, got 0")
    alpha, power, ratio = _check_design(alpha, power, ratio)
    effect = abs(mde) / sd
    low = 2.0 / (1.0 + ratio) + 1e-3  # a positive number of degrees of freedom
    n1 = _solve_n(_power_t, effect, alpha, power, ratio, low=low)
    return _sizes("means", effect, n1, ratio, alpha, power, {"mde": mde, "sd": sd})


def _sizes(kind: str, effect: float, n1: float, ratio: float, alpha: float, power: float,
           inputs: dict[str, float]) -> dict[str, Any]:
    n1_users = math.ceil(n1 - 1e-9)
    n2_users = math.ceil(n1 * ratio - 1e-9)
    return {"kind": kind, **inputs, "alpha": alpha, "power": power, "ratio": ratio,
            "effect_size": effect, "n1": n1, "n2": n1 * ratio, "n1_users": n1_users,
            "n2_users": n2_users, "total_users": n1_users + n2_users}


def power_proportions(baseline: float, mde: float, n1: float, *, alpha: float = 0.05,
                      ratio: float = 1.0) -> float:
    """The power of the two-sided z-test with ``n1`` and ``ratio * n1`` users."""
    baseline, mde = _check_proportions(baseline, mde)
    alpha, ratio = _ALPHA.check("alpha", alpha), Real(1e-6, 1e6).check("ratio", ratio)
    n1 = Real(0.0, low_open=True).check("n", n1)
    return _power_z(abs(proportion_effect(baseline, mde)), n1, alpha, ratio)
