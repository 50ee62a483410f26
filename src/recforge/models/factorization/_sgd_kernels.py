"""Numba kernels shared by the rating-prediction family (biased MF, SVD++, explicit ALS).

* `sgd_cell_mf` -- one serial stochastic-gradient pass over ``mu + b_u + b_i + p_u . q_i``
  (Funk 2006; Koren, Bell & Volinsky 2009) on a shuffled range of ratings.
* `sgd_epoch_mf` -- the same pass, stratified and parallel. Interactions are arranged in ``strata x strata``
  cells (user block, item block); a pass runs ``strata`` sub-epochs, and in each one the cells
  ``(b, (b + s) mod strata)`` -- which share no user and no item -- run in parallel
  (stratified SGD, Gemulla et al. 2011, "Large-scale matrix factorization with distributed
  stochastic gradient descent"). No two threads ever touch the same parameter, so the result
  depends on the seed and on ``strata`` only, never on the number of threads or on scheduling.
* `sgd_epoch_svdpp` -- one pass of SVD++ (Koren 2008) user by user (serial, deterministic).
* `als_solve_rows` -- the ridge solves of one alternating-least-squares half step, one row at a
  time in parallel (each row is independent, so the result is deterministic), with the
  Cholesky solver of `recforge.models.factorization.ials`.
* `predict_pairs` -- ``mu + b_u + b_i + p_u . q_i`` for many pairs, in parallel.

Randomness inside kernels comes from a splitmix64 stream seeded per call (and per cell), so
no kernel depends on numba's global random state.
"""

from __future__ import annotations

import numba
import numpy as np

from recforge.numerics import cholesky_solve

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(inline="always")
def _splitmix(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Advance a splitmix64 state; return (new state, 64 random bits)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return state, z ^ (z >> np.uint64(31))


@numba.njit(inline="always")
def _shuffle_segment(users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                     lo: int, hi: int, seed: np.uint64) -> None:
    """Fisher-Yates shuffle of the aligned triples in ``[lo, hi)``, in place."""
    state = seed
    for n in range(hi - lo, 1, -1):
        state, bits = _splitmix(state)
        j = lo + np.int64(bits % np.uint64(n))
        k = lo + n - 1
        users[j], users[k] = users[k], users[j]
        items[j], items[k] = items[k], items[j]
        ratings[j], ratings[k] = ratings[k], ratings[j]


@numba.njit(inline="always")
def _mf_step(u: int, i: int, r: float, mu: float, bu: np.ndarray, bi: np.ndarray,
             P: np.ndarray, Q: np.ndarray, lr: float, reg: float, reg_bias: float) -> float:
    """One SGD update on the rating ``r`` of (u, i); returns the squared error before it."""
    k = P.shape[1]
    pred = mu + bu[u] + bi[i]
    for f in range(k):
        pred += P[u, f] * Q[i, f]
    err = r - pred
    bu[u] += lr * (err - reg_bias * bu[u])
    bi[i] += lr * (err - reg_bias * bi[i])
    for f in range(k):
        pf = P[u, f]
        qf = Q[i, f]
        P[u, f] += lr * (err * qf - reg * pf)
        Q[i, f] += lr * (err * pf - reg * qf)
    return err * err


@numba.njit(cache=True, fastmath=True)
def sgd_cell_mf(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, lo: int, hi: int,
                seed: np.uint64, mu: float, bu: np.ndarray, bi: np.ndarray, P: np.ndarray,
                Q: np.ndarray, lr: float, reg: float, reg_bias: float) -> float:
    """Shuffle the triples in ``[lo, hi)`` in place (seeded), then run one SGD update of biased
    MF on each, in that order; returns the sum of squared errors seen. Serial."""
    _shuffle_segment(users, items, ratings, lo, hi, seed)
    sse = 0.0
    for n in range(lo, hi):
        sse += _mf_step(users[n], items[n], ratings[n], mu, bu, bi, P, Q, lr, reg, reg_bias)
    return sse


@numba.njit(parallel=True, cache=True)
def sgd_epoch_mf(users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                 cell_ptr: np.ndarray, strata: int, sub_order: np.ndarray, seed: np.uint64,
                 mu: float, bu: np.ndarray, bi: np.ndarray, P: np.ndarray, Q: np.ndarray,
                 lr: float, reg: float, reg_bias: float) -> float:
    """One stratified SGD pass of biased MF; returns the sum of squared errors seen.

    ``users/items/ratings`` are sorted by cell ``user_block * strata + item_block`` with
    ``cell_ptr`` the cell boundaries; `sgd_cell_mf` runs each cell, seeded by ``seed`` and the
    cell. ``sub_order`` is the order of the sub-epochs.
    """
    total = 0.0
    for s in sub_order:
        sse = np.zeros(strata)
        for b in numba.prange(strata):
            cell = b * strata + (b + s) % strata
            sse[b] = sgd_cell_mf(users, items, ratings, cell_ptr[cell], cell_ptr[cell + 1],
                                 seed + np.uint64(cell) * _MIX2, mu, bu, bi, P, Q,
                                 lr, reg, reg_bias)
        total += sse.sum()
    return total


@numba.njit(cache=True, fastmath=True)
def sgd_epoch_svdpp(indptr: np.ndarray, users: np.ndarray, items: np.ndarray,
                    ratings: np.ndarray, user_order: np.ndarray, seed: np.uint64, mu: float, bu: np.ndarray,
                    bi: np.ndarray, P: np.ndarray, Q: np.ndarray, Y: np.ndarray, lr: float,
                    reg: float, reg_bias: float, reg_implicit: float) -> float:
    """One SGD pass of SVD++, ``r_ui ~ mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_j y_j)``.

    ``indptr/items/ratings`` are the user x item CSR arrays (``users`` the row of each entry);
    users come in ``user_order``, each user's ratings (its row, which is also its implicit set
    N(u)) shuffled in place. The implicit sum is computed once per user and the
    ``y_j`` updates are accumulated over the user's ratings and applied once at the end of the
    user (the usual per-user batching of SVD++, which turns the cost per rating from
    O(|N(u)| k) into O(k)). Returns the sum of squared errors seen.
    """
    k = P.shape[1]
    z = np.empty(k)
    grad = np.empty(k)
    total = 0.0
    for u in user_order:
        lo, hi = indptr[u], indptr[u + 1]
        if hi == lo:
            continue
        _shuffle_segment(users, items, ratings, lo, hi, seed + np.uint64(u) * _MIX2)
        norm = 1.0 / np.sqrt(hi - lo)
        for f in range(k):
            acc = 0.0
            for n in range(lo, hi):
                acc += Y[items[n], f]
            z[f] = P[u, f] + norm * acc
            grad[f] = 0.0
        for n in range(lo, hi):
            i = items[n]
            pred = mu + bu[u] + bi[i]
            for f in range(k):
                pred += Q[i, f] * z[f]
            err = ratings[n] - pred
            total += err * err
            bu[u] += lr * (err - reg_bias * bu[u])
            bi[i] += lr * (err - reg_bias * bi[i])
            for f in range(k):
                qf = Q[i, f]
                Q[i, f] += lr * (err * z[f] - reg * qf)
                step = lr * (err * qf - reg * P[u, f])
                P[u, f] += step
                z[f] += step
                grad[f] += err * qf
        for n in range(lo, hi):
            j = items[n]
            for f in range(k):
                Y[j, f] += lr * (norm * grad[f] - reg_implicit * Y[j, f])
    return total


@numba.njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def als_solve_rows(indptr: np.ndarray, indices: np.ndarray, targets: np.ndarray,
                   fixed: np.ndarray, reg: np.ndarray, row_scale: np.ndarray,
                   out: np.ndarray) -> None:
    """Ridge solve of every row: ``out[u] = argmin_x sum_j (t_uj - x . fixed[j])^2 +
    row_scale[u] * sum_f reg[f] x_f^2`` over the row's entries ``j`` (CSR ``indptr/indices``,
    ``targets`` aligned with ``indices``). Rows without entries get zeros."""
    d = fixed.shape[1]
    for u in numba.prange(len(indptr) - 1):
        lo, hi = indptr[u], indptr[u + 1]
        out[u] = 0.0
        if hi == lo:
            continue
        gram = np.zeros((d, d))
        rhs = np.zeros(d)
        for n in range(lo, hi):
            y = fixed[indices[n]]
            for a in range(d):
                rhs[a] += targets[n] * y[a]
                for b in range(a + 1):
                    gram[a, b] += y[a] * y[b]
        for a in range(d):
            gram[a, a] += row_scale[u] * reg[a]
        cholesky_solve(gram, rhs, out[u])


@numba.njit(parallel=True, cache=True, fastmath=True)
def predict_pairs(users: np.ndarray, items: np.ndarray, mu: float, bu: np.ndarray,
                  bi: np.ndarray, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``mu + bu[u] + bi[i] + P[u] . Q[i]`` for every (u, i) pair, without gathering rows
    (in the dtype of ``P``)."""
    out = np.empty(len(users), dtype=P.dtype)
    k = P.shape[1]
    for n in numba.prange(len(users)):
        u, i = users[n], items[n]
        acc = mu + bu[u] + bi[i]
        for f in range(k):
            acc += P[u, f] * Q[i, f]
        out[n] = acc
    return out
