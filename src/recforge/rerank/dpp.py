"""Determinantal point process re-ranking by fast greedy MAP inference (Chen, Zhang & Zhou,
"Fast Greedy MAP Inference for Determinantal Point Process to Improve Recommendation
Diversity", NeurIPS 2018, Algorithm 1), vectorised over users.

Each user's top-``candidates`` items (seen items excluded) form the kernel
``L = Diag(q) S Diag(q)``: ``S`` is the cosine similarity of item representations (the
model's item vectors or any item feature matrix, e.g. genres multi-hot; an item with no
features has cosine 0 with the others and 1 with itself, so ``S`` is positive semi-definite)
and ``q_i = exp(alpha * r_i)`` the quality, ``r`` the model's scores min-max normalised over
the user's candidates to ``[0, 1]``. Greedy MAP inference adds, one position at a time, the
candidate that most increases ``log det(L_Y)``, which equals
``sum_{i in Y} 2 alpha r_i + log det(S_Y)``. With the paper's trade-off
``alpha = theta / (2 (1 - theta))`` and ``theta`` in ``[0, 1)`` this ranks lists by
``theta * sum r + (1 - theta) * log det(S_Y)`` (up to the factor ``1 / (1 - theta)``):
``theta = 0`` is pure diversity, ``theta -> 1`` approaches the model's own order.

Algorithm 1 keeps, for every candidate ``i``, the incremental Cholesky row ``c_i`` and
``d_i^2 = L_ii - |c_i|^2`` (the gain ``det(L_{Y+i}) / det(L_Y)``): after picking ``j``,
``e_i = (L_ji - <c_j, c_i>) / d_j``, ``c_i <- [c_i, e_i]``, ``d_i^2 <- d_i^2 - e_i^2``; each
step costs ``O(N t)``, so a list of ``k`` costs ``O(N k^2)``. Since ``L = Diag(q) S Diag(q)``,
its Cholesky factor is ``Diag(q)`` times that of ``S``; the rows are kept for ``S`` (entries
in ``[-1, 1]``, no overflow for large ``alpha``) and ``log d_i^2 = 2 alpha r_i +
log d_i^2(S)`` is compared in log space, which picks exactly as Algorithm 1 on ``L``.
Inference stops for a user when the best ``d_j^2 < epsilon`` (the remaining candidates are
(numerically) spanned by those picked: ``L`` restricted to the list would be singular); the
rest of that user's list is then filled with the remaining candidates in descending
relevance. Ties go to the earlier candidate.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recforge.params import Real
from recforge.rerank.base import (
    DEFAULT_CANDIDATES,
    GreedyReranker,
    Similarity,
    candidate_vectors,
    minmax_relevance,
    similarity_to,
)

THETA = Real(0, 1, high_open=True)
EPSILON = Real(0, low_open=True)


def quality_weight(theta: float) -> float:
    """The quality exponent ``alpha = theta / (2 (1 - theta))`` of ``q_i = exp(alpha r_i)``."""
    return theta / (2.0 * (1.0 - theta))


def fast_greedy_map(unit: np.ndarray, log_quality: np.ndarray, open_: np.ndarray, k: int,
                    epsilon: float) -> np.ndarray:
    """Greedy MAP positions ``(n, k)`` (``-1`` after a row stops) of the kernels
    ``L = Diag(q) (U U^T + Diag(1 - |u_i|^2)) Diag(q)``, one per row.

    ``unit`` ``(n, N, d)`` holds each row's candidate vectors (unit or zero), ``log_quality``
    ``(n, N)`` is ``log q`` and ``open_`` marks the candidates that may be picked. A row stops
    when its best ``d_j^2 < epsilon`` or no candidate is open (Algorithm 1 of Chen et al.)."""
    n, size = open_.shape
    rows = np.arange(n)
    residual = 1.0 - np.einsum("ncd,ncd->nc", unit, unit)  # the diagonal added to U U^T
    d2 = np.ones((n, size))  # d_i^2 of S; L's is q_i^2 times it
    cholesky = np.zeros((n, k, size))
    active = np.ones(n, dtype=bool)
    open_ = open_.copy()
    chosen = np.full((n, k), -1, dtype=np.int64)
    for t in range(min(k, size)):
        with np.errstate(divide="ignore"):
            gain = np.where(open_, np.log(np.maximum(d2, 0.0)) + 2.0 * log_quality, -np.inf)
        pick = np.argmax(gain, axis=1)
        active &= gain[rows, pick] >= np.log(epsilon)
        if not active.any():
            break
        chosen[active, t] = pick[active]
        open_[rows[active], pick[active]] = False
        row = similarity_to(unit, pick)
        row[rows, pick] += residual[rows, pick]
        cross = np.einsum("nt,ntc->nc", cholesky[rows, :t, pick], cholesky[:, :t, :])
        scale = np.where(active, np.sqrt(np.maximum(d2[rows, pick], 0.0)), 1.0)
        step = np.where(active[:, None], (row - cross) / np.maximum(scale, 1e-300)[:, None], 0.0)
        cholesky[:, t, :] = step
        d2 -= step**2
    return chosen


def fill_by_relevance(chosen: np.ndarray, relevance: np.ndarray,
                      valid: np.ndarray) -> np.ndarray:
    """``chosen`` positions (a prefix per row, ``-1`` after it) completed with the rows' other
    ``valid`` positions in descending ``relevance`` (ties: the earlier position)."""
    taken = np.zeros(valid.shape, dtype=bool)
    rows = np.arange(len(chosen))[:, None]
    taken[np.broadcast_to(rows, chosen.shape)[chosen >= 0], chosen[chosen >= 0]] = True
    left = valid & ~taken
    order = np.argsort(np.where(left, -relevance, np.inf), axis=1, kind="stable")
    filled = (chosen >= 0).sum(axis=1, keepdims=True)
    slot = np.arange(chosen.shape[1])[None, :] - filled
    extra = np.take_along_axis(order, np.clip(slot, 0, valid.shape[1] - 1), axis=1)
    usable = (slot >= 0) & (slot < left.sum(axis=1, keepdims=True))
    return np.where(chosen >= 0, chosen, np.where(usable, extra, -1))


class DPPReranker(GreedyReranker):
    """Re-rank a model's top ``candidates`` by greedy DPP MAP inference (see the module).

    ``theta`` in ``[0, 1)`` weighs relevance against diversity (0: diversity only; towards 1:
    the model's order); ``epsilon`` > 0 is the stopping threshold on ``d_j^2``. ``similarity``
    is ``"vectors"`` (the model's `item_vectors`) or an item feature matrix (dense or sparse,
    one row per item). ``batch_size`` users are re-ranked at once.
    """

    def __init__(self, theta: float = 0.7, candidates: int = DEFAULT_CANDIDATES,
                 similarity: Similarity = "vectors", batch_size: int = 256,
                 epsilon: float = 1e-10):
        self.theta = THETA.check("theta", theta)
        self.epsilon = EPSILON.check("epsilon", epsilon)
        super().__init__(candidates, similarity, batch_size)

    def greedy(self, items: np.ndarray, scores: np.ndarray,
               features: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
        """DPP selection of ``k`` of each row's candidate ``items`` (``-1`` padded) by
        ``scores``; vectorised over rows, one step per output position."""
        valid = items >= 0
        relevance = minmax_relevance(scores, valid)
        log_quality = quality_weight(self.theta) * relevance
        chosen = fast_greedy_map(candidate_vectors(features, items), log_quality, valid, k,
                                 self.epsilon)
        positions = fill_by_relevance(chosen, relevance, valid)
        rows = np.arange(len(items))[:, None]
        return np.where(positions >= 0, items[rows, np.maximum(positions, 0)], -1)
