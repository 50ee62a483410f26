"""Top-k selection over score matrices, compiled with numba and parallel over rows.

Order: score descending; ties broken by the lower column index; ``-inf`` and NaN never
outrank a finite score. One pass over each row with a k-sized heap, so selecting the top 10
of 50,000 items costs about one read of the row.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _before(sa: float, ia: int, sb: float, ib: int) -> bool:
    """True when (score sa, index ia) ranks above (sb, ib)."""
    return sa > sb or (sa == sb and ia < ib)


@numba.njit(inline="always")
def _sift_down(hs: np.ndarray, hi: np.ndarray, pos: int, size: int) -> None:
    # min-heap ordered by "ranks lowest first": the root is the current k-th best.
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _before(hs[left], hi[left], hs[right], hi[right]):
            worst = right
        if _before(hs[pos], hi[pos], hs[worst], hi[worst]):
            hs[pos], hs[worst] = hs[worst], hs[pos]
            hi[pos], hi[worst] = hi[worst], hi[pos]
            pos = worst
        else:
            return


@numba.njit(parallel=True, cache=True, nogil=True)
def _top_k_rows(scores: np.ndarray, k: int, out_idx: np.ndarray, out_val: np.ndarray) -> None:
    n, m = scores.shape
    for r in numba.prange(n):
        hs = np.empty(k, dtype=np.float32)
        hi = np.empty(k, dtype=np.int64)
        for j in range(k):
            s = scores[r, j]
            hs[j] = -np.inf if np.isnan(s) else s
            hi[j] = j
        for p in range(k // 2 - 1, -1, -1):
            _sift_down(hs, hi, p, k)
        for j in range(k, m):
            s = scores[r, j]
            if s > hs[0]:  # NaN compares False; equal scores lose to the lower index held
                hs[0] = s
                hi[0] = j
                _sift_down(hs, hi, 0, k)
        # heap-sort out: repeatedly move the worst to the end
        for size in range(k - 1, -1, -1):
            out_val[r, size] = hs[0]
            out_idx[r, size] = hi[0]
            hs[0] = hs[size]
            hi[0] = hi[size]
            _sift_down(hs, hi, 0, size)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` best scores per row, best first."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-d array")
    n, m = scores.shape
    k = min(int(k), m)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float32)
    if k > 0 and n > 0:
        _top_k_rows(scores, k, idx, val)
    return idx, val
