"""Classification metrics for pointwise labels (click / no click, liked / not liked).

Each function takes 1-d arrays of equal length: ``labels`` (0/1 or bool), ``scores`` (any
real numbers, only their order matters) or ``probabilities`` (in ``[0, 1]``) and, for GAUC,
``users`` (one id per row; any integer ids). Notation: ``P`` = the positive rows, ``N`` = the
negative rows, ``n`` = the number of rows.

- ``ROC-AUC = (sum_{i in P} rank_i - |P| (|P| + 1) / 2) / (|P| |N|)``, ``rank_i`` the 1-based
  rank of row ``i`` among all rows by ascending score with tied scores given their mean rank
  (midranks). This is the Mann-Whitney U statistic over ``|P| |N|``: the fraction of
  (positive, negative) pairs in which the positive scores higher, a tie counting 1/2.
  NaN when either class is empty.
- ``GAUC = sum_u n_u AUC_u / sum_u n_u`` over the users ``u`` with both classes, ``AUC_u`` the
  ROC-AUC of user ``u``'s rows and ``n_u`` their number of rows (impressions). Users with only
  positive or only negative rows have no AUC and are skipped (neither in the numerator nor the
  denominator). NaN when no user has both classes.
- ``log loss = -mean_i [y_i log(p_i) + (1 - y_i) log(1 - p_i)]`` (natural log) with ``p_i``
  clipped to ``[eps, 1 - eps]``; ``eps`` defaults to the float64 machine epsilon
  (``2**-52``, about 2.2e-16), as scikit-learn clips float64 probabilities.
- ``calibration error`` is the expected calibration error over ``B`` equal-width bins of
  ``[0, 1]``: ``ECE = sum_b (n_b / n) |mean_{i in b} y_i - mean_{i in b} p_i|``, bin ``b``
  (0-based) holding ``b/B <= p < (b+1)/B`` (computed as ``min(floor(p B), B - 1)``, so the
  last bin also holds ``p = 1``); ``n_b`` is the bin's row count and empty bins add 0. Since
  ``(n_b / n) |mean y - mean p| = |sum_{i in b} (y_i - p_i)| / n`` that is what is summed.

Empty or non-1-d labels, labels other than 0/1, non-finite scores and probabilities outside
``[0, 1]`` are an `InputError`.
"""

from __future__ import annotations

import numpy as np

from recforge.errors import InputError
from recforge.numerics import mann_whitney_auc

#: the default log-loss clip: float64 machine epsilon (scikit-learn's clip for float64)
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def _labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as a 1-d float64 array of 0s and 1s; anything else is an `InputError`."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise InputError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    y = y.astype(np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("labels must be 0 or 1 (or bool)")
    return y


def _values(values: np.ndarray, n: int, what: str) -> np.ndarray:
    """``values`` as a finite 1-d float64 array of length ``n``."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (n,):
        raise InputError(f"{what} must have shape ({n},) like labels, got {v.shape}")
    if not np.isfinite(v).all():
        raise InputError(f"{what} must be finite (no NaN or inf)")
    return v


def _probabilities(probabilities: np.ndarray, n: int) -> np.ndarray:
    p = _values(probabilities, n, "probabilities")
    if ((p < 0) | (p > 1)).any():
        raise InputError("probabilities must lie in [0, 1]")
    return p


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney statistic, ties counting 1/2 (NaN if a class is empty)."""
    y = _labels(labels)
    return mann_whitney_auc(y, _values(scores, len(y), "scores"))


def _ranks_within(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based midranks of ``scores`` within each group (ties get their mean rank)."""
    order = np.lexsort((scores, groups))
    g, s = groups[order], scores[order]
    new_run = np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]
    new_group = np.r_[True, g[1:] != g[:-1]]
    position = np.arange(len(g))
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    run_id = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    run_last = np.r_[run_first[1:], len(g)] - 1
    mid = (run_first + run_last) / 2.0 - group_start[run_first] + 1.0
    ranks = np.empty(len(g))
    ranks[order] = mid[run_id]
    return ranks


def gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
    """GAUC: per-user ROC-AUC averaged with weights n_u (rows); one-class users skipped."""
    y = _labels(labels)
    s = _values(scores, len(y), "scores")
    u = np.asarray(users)
    if u.shape != y.shape:
        raise InputError(f"users must have shape {y.shape} like labels, got {u.shape}")
    _, group = np.unique(u, return_inverse=True)
    group = group.ravel()
    n_rows = np.bincount(group).astype(np.float64)
    n_pos = np.bincount(group, weights=y, minlength=len(n_rows))
    n_neg = n_rows - n_pos
    rank_sum = np.bincount(group, weights=_ranks_within(group, s) * y, minlength=len(n_rows))
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    auc = (rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2) / (n_pos[both] * n_neg[both])
    return float(np.average(auc, weights=n_rows[both]))


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to [eps, 1 - eps]."""
    if not 0 < eps < 0.5:
        raise InputError(f"eps must be in (0, 0.5), got {eps!r}")
    y = _labels(labels)
    p = np.clip(_probabilities(probabilities, len(y)), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins, weighted by bin counts."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins!r}")
    y = _labels(labels)
    p = _probabilities(probabilities, len(y))
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=y - p, minlength=n_bins)
    return float(np.abs(gap).sum() / len(y))
