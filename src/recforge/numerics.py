"""Numerical routines shared by several models: a Cholesky solve for numba kernels, a
limited-memory BFGS optimiser that keeps its memory between calls, and the Mann-Whitney
ROC-AUC (the early-stopping criterion of click models; `recforge.evaluation.classification`
documents and validates it as a metric)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numba
import numpy as np


@numba.njit(fastmath=True, nogil=True, error_model="numpy")
def cholesky_solve(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> None:
    """Solve ``a x = b`` for symmetric positive-definite ``a`` given by its lower triangle
    (overwritten with the Cholesky factor ``L``); float64 accumulation."""
    k = b.shape[0]
    for j in range(k):
        s = np.float64(a[j, j])
        for m in range(j):
            s -= np.float64(a[j, m]) * a[j, m]
        d = np.sqrt(max(s, 1e-30))
        a[j, j] = d
        for i in range(j + 1, k):
            t = np.float64(a[i, j])
            for m in range(j):
                t -= np.float64(a[i, m]) * a[j, m]
            a[i, j] = t / d
    for i in range(k):  # L z = b
        t = np.float64(b[i])
        for m in range(i):
            t -= np.float64(a[i, m]) * x[m]
        x[i] = t / a[i, i]
    for i in range(k - 1, -1, -1):  # L^T x = z
        t = np.float64(x[i])
        for m in range(i + 1, k):
            t -= np.float64(a[m, i]) * x[m]
        x[i] = t / a[i, i]


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS: OpenBLAS's threaded ddot stalls badly on a busy machine
    (milliseconds for a 10k-vector), and this loop is as fast when the machine is idle."""
    return float(np.einsum("i,i->", a, b))


class LBFGS:
    """Limited-memory BFGS (Nocedal & Wright, "Numerical Optimization", algorithm 7.4) that
    keeps its curvature memory between calls to `run`, so training can pause every epoch
    without restarting the optimiser. Backtracking (Armijo) line search from the unit step;
    curvature pairs with ``s . y <= 0`` are skipped."""

    def __init__(self, fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
                 memory: int = 10):
        self.fun = fun
        self.x = x0
        self.f, self.g = fun(x0)
        self.pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=memory)

    def _direction(self) -> np.ndarray:
        """``-H g`` by the two-loop recursion over the stored pairs."""
        q = self.g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * dot(s, q)
            q -= alpha * y
            alphas.append(alpha)
        if self.pairs:
            s, y, _ = self.pairs[-1]
            q *= dot(s, y) / dot(y, y)
        else:
            q /= max(np.abs(q).sum(), 1.0)  # a cautious first step
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            q += (alpha - rho * dot(y, q)) * s
        return -q

    def run(self, steps: int) -> float:
        """Take up to ``steps`` iterations; returns the objective at the current point."""
        for _ in range(steps):
            d = self._direction()
            slope = dot(self.g, d)
            if slope >= 0:  # not a descent direction: forget the curvature and retry
                self.pairs.clear()
                d, slope = -self.g, -dot(self.g, self.g)
            t = 1.0
            for _ in range(30):
                f_new, g_new = self.fun(self.x + t * d)
                if f_new <= self.f + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                return self.f  # no decrease found: converged as far as float32 allows
            s, y = t * d, g_new - self.g
            curvature = dot(s, y)
            if curvature > 1e-10:
                self.pairs.append((s, y, 1.0 / curvature))
            self.x, self.f, self.g = self.x + s, f_new, g_new
        return self.f


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of 0/1 ``labels`` by ``scores``: the share of (positive, negative) pairs in which
    the positive scores higher, a tie counting 1/2 (midranks); NaN when a class is empty. No
    input checks (callers validate)."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=np.float64)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = rankdata(np.asarray(scores, dtype=np.float64)) @ y
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
