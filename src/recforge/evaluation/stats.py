"""Statistics over per-user metric values: bootstrap intervals and paired significance tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

#: index draws per bootstrap block (bounds the memory of the vectorised resampling)
_BLOCK_DRAWS = 1 << 22


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, n_boot: int = 1000,
                 seed: int = 0, weights: np.ndarray | None = None) -> dict[str, float]:
    """Mean of ``values`` with a percentile-bootstrap interval, resampling users.

    With ``weights`` the statistic is the weighted mean ``sum(w * v) / sum(w)`` (e.g. per-user
    mean squared errors weighted by the user's number of test ratings give the global MSE).
    NaN values are dropped first. Returns ``mean``, ``low``, ``high`` and ``n`` (values used).
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = ~np.isnan(values)
    values, weights = values[keep], weights[keep]
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    per_block = max(1, _BLOCK_DRAWS // n)
    for lo in range(0, n_boot, per_block):
        idx = rng.integers(0, n, size=(min(per_block, n_boot - lo), n))
        w = weights[idx]
        replicates[lo:lo + len(idx)] = (w * values[idx]).sum(axis=1) / w.sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    mean = float(np.sum(weights * values) / np.sum(weights))
    return {"mean": mean, "low": float(low), "high": float(high), "n": n}


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` against ``b`` (same users, in order).

    Pairs with a NaN on either side are dropped. When every difference is zero the tests are
    undefined; their p-values are then reported as 1 (no evidence of a difference).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired tests need two arrays of the same shape")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = a - b
    out: dict[str, Any] = {"n": len(diff), "mean_a": _mean(a), "mean_b": _mean(b),
                           "mean_diff": _mean(diff)}
    if len(diff) < 2 or not diff.any():
        return out | {"t_statistic": float("nan"), "t_pvalue": 1.0,
                      "wilcoxon_statistic": float("nan"), "wilcoxon_pvalue": 1.0}
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b)
    return out | {"t_statistic": float(t.statistic), "t_pvalue": float(t.pvalue),
                  "wilcoxon_statistic": float(w.statistic), "wilcoxon_pvalue": float(w.pvalue)}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
