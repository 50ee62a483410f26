"""Neighbourhood (k-nearest-neighbour) models over the shared `similarity` module.

Rating prediction (Herlocker et al. 1999; Koren 2010, "Factor in the neighbors"), as in
Surprise's KNNWithMeans and KNNBaseline. For a user-based model the *entity* is the user and
the *context* the item; for an item-based model the reverse. The estimate for (entity e,
context c) is ::

    r^ = o(e, c) + sum_{f in N^k_c(e)} s(e, f) (r(f, c) - o(f, c)) / sum_{f in N^k_c(e)} s(e, f)

where ``N^k_c(e)`` are the ``k`` entities most similar to ``e`` with a rating in context ``c``
(positive similarities only), and the offset ``o`` is the entity's mean rating
("mean-centred") or the baseline ``mu + b_u + b_i`` of `BaselineOnly` ("baseline-centred").
With fewer than ``min_k`` such neighbours the estimate is the offset alone.

Top-N from implicit feedback (Deshpande & Karypis 2004; user-based: Sarwar et al. 2000) on
the binary matrix: item-based scores are ``score(u, j) = sum_{i in I(u)} s(i, j)`` with each
item's similarity row pruned to its ``k`` best neighbours, i.e. the sparse product
``X[u] @ S``; user-based scores are ``sum_{v in N^k(u)} s(u, v) x(v, j)``, i.e. ``S[u] @ X``.

The two feedback kinds are separate registered classes (not one class with a ``feedback``
switch) because they differ in what the base API declares per class: the rating models need
ratings and predict them, the implicit ones only rank.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.memory import check_memory, knn_need
from recforge.models.base import Recommender
from recforge.models.baselines.simple import BaselineOnly
from recforge.models.neighbours.similarity import (
    BLOCK_BYTES,
    ItemSimilarityMixin,
    VectorMeasure,
    Weighting,
    apply_weighting,
    corated_similarity,
    vector_similarity,
)
from recforge.models.registry import register
from recforge.params import MAX_COUNT, UNIT, Choice, Integer, Optional, Real, Rule, parameter_error

RatingSimilarity = Literal["cosine", "pearson", "adjusted-cosine", "msd", "pearson-baseline"]
Prediction = Literal["mean-centred", "baseline-centred"]
Neighbourhood = Literal["history", "candidate"]

#: rating similarity -> (co-rated measure, what it is computed on)
_RATING_MEASURES = {
    "cosine": ("cosine", "rating"),
    "pearson": ("pearson", "rating"),
    "msd": ("msd", "rating"),
    "pearson-baseline": ("cosine", "baseline-residual"),
    "adjusted-cosine": ("cosine", "user-centred"),
}


@numba.njit(parallel=True, cache=True, nogil=True)
def _neighbourhood_average(entities: np.ndarray, contexts: np.ndarray,
                           s_indptr: np.ndarray, s_indices: np.ndarray, s_data: np.ndarray,
                           c_indptr: np.ndarray, c_indices: np.ndarray, c_data: np.ndarray,
                           k: int, min_k: int, out: np.ndarray) -> None:
    """``out[p]``: similarity-weighted mean residual over the ``k`` most similar neighbours
    of ``entities[p]`` rated in ``contexts[p]`` (NaN with fewer than ``min_k``).

    Both the similarity rows and the context rows have sorted indices: a merge join finds
    the neighbours the context has rated."""
    for p in numba.prange(len(entities)):
        a, a_end = s_indptr[entities[p]], s_indptr[entities[p] + 1]
        b, b_end = c_indptr[contexts[p]], c_indptr[contexts[p] + 1]
        sims = np.empty(min(a_end - a, b_end - b), dtype=np.float64)
        vals = np.empty_like(sims)
        m = 0
        while a < a_end and b < b_end:
            if s_indices[a] == c_indices[b]:
                sims[m] = s_data[a]
                vals[m] = c_data[b]
                m += 1
                a += 1
                b += 1
            elif s_indices[a] < c_indices[b]:
                a += 1
            else:
                b += 1
        if m == 0 or m < min_k:
            out[p] = np.nan
            continue
        if m > k:
            best = np.argsort(-sims[:m], kind="mergesort")[:k]
            out[p] = np.sum(sims[best] * vals[best]) / np.sum(sims[best])
        else:
            out[p] = np.sum(sims[:m] * vals[:m]) / np.sum(sims[:m])


def _entity_context(users: np.ndarray, items: np.ndarray,
                    user_based: bool) -> tuple[np.ndarray, np.ndarray]:
    return (users, items) if user_based else (items, users)


class _RatingKNN(Recommender):
    """Rating kNN; subclasses fix the orientation (``user_based``).

    Defaults follow Surprise's KNNBaseline (pearson-baseline, k=40, shrinkage 100); a grid
    on validation splits carved from ML-100K u1.base and the synthetic ratings
    (benchmarks/bench_knn_ease.py validate) kept them: no setting beat them by more than
    0.002 RMSE on either set. ``max_neighbors`` bounds the stored similarities per row
    (memory on large catalogues); ``k`` is chosen at prediction time among the neighbours a
    context has rated.
    """

    requires_ratings = True
    predicts_ratings = True
    batch_size = 256  # full-catalogue scoring builds batch x n_items (user, item) pairs
    user_based: ClassVar[bool]
    param_rules: ClassVar[dict[str, Rule]] = {
        "k": Integer(1, MAX_COUNT), "similarity": Choice(*_RATING_MEASURES),
        "prediction": Choice("mean-centred", "baseline-centred"), "shrinkage": Real(0),
        "min_support": Integer(0, MAX_COUNT), "min_k": Integer(0, MAX_COUNT),
        "max_neighbors": Optional(Integer(1, MAX_COUNT)),
    }

    def __init__(self, k: int = 40, similarity: RatingSimilarity = "pearson-baseline",
                 prediction: Prediction = "baseline-centred", shrinkage: float = 100.0,
                 min_support: int = 1, min_k: int = 1, max_neighbors: int | None = None):
        self.k = k
        self.similarity = similarity
        self.prediction = prediction
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.min_k = min_k
        self.max_neighbors = max_neighbors

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        n = self.n_users_ if self.user_based else self.n_items_
        check_memory(self.name, knn_need(n, self.max_neighbors or n, 2, BLOCK_BYTES),
                     "set max_neighbors (e.g. 200) to prune each row to its best neighbours")
        measure, basis = _RATING_MEASURES[self.similarity]
        baseline = None
        if self.prediction == "baseline-centred" or basis == "baseline-residual":
            baseline = BaselineOnly().fit(train)
        self.user_offset_, self.item_offset_ = self._offsets(train, baseline)
        ent, ctx = _entity_context(train.users, train.items, self.user_based)
        n_ent, n_ctx = _entity_context(self.n_users_, self.n_items_, self.user_based)
        values = _similarity_values(train, basis, baseline)
        self.similarity_ = corated_similarity(_sparse(values, ent, ctx, (n_ent, n_ctx)), measure,
                                              k=self.max_neighbors, shrinkage=self.shrinkage,
                                              min_support=self.min_support)
        residual = train.ratings - self._offset(train.users, train.items)
        self.context_residuals_ = _sparse(residual, ctx, ent, (n_ctx, n_ent))

    def _offsets(self, train: Interactions,
                 baseline: BaselineOnly | None) -> tuple[np.ndarray, np.ndarray]:
        """(user term, item term) of the offset: the baseline, or the entity's mean rating."""
        if baseline is not None and self.prediction == "baseline-centred":
            return baseline.user_term_, baseline.item_term_
        keys = train.users if self.user_based else train.items
        mean = _means(keys, train.ratings, len(train.user_map if self.user_based
                                                 else train.item_map), self.global_mean_)
        zeros = np.zeros(self.n_items_ if self.user_based else self.n_users_, np.float32)
        return _entity_context(mean.astype(np.float32), zeros, self.user_based)

    def _offset(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.user_offset_[users].astype(np.float64) + self.item_offset_[items]

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ent, ctx = _entity_context(users, items, self.user_based)
        sim, res = self.similarity_, self.context_residuals_
        average = np.empty(len(users), dtype=np.float64)
        _neighbourhood_average(ent.astype(np.int64), ctx.astype(np.int64),
                               sim.indptr, sim.indices, sim.data,
                               res.indptr, res.indices, res.data,
                               int(self.k), int(self.min_k), average)
        return (self._offset(users, items) + np.nan_to_num(average)).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        grid_users = np.repeat(users, self.n_items_)
        grid_items = np.tile(np.arange(self.n_items_), len(users))
        return self._predict(grid_users, grid_items).reshape(len(users), self.n_items_)


def _means(keys: np.ndarray, values: np.ndarray, n: int, default: float) -> np.ndarray:
    counts = np.bincount(keys, minlength=n)
    sums = np.bincount(keys, weights=values, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)


def _similarity_values(train: Interactions, basis: str,
                       baseline: BaselineOnly | None) -> np.ndarray:
    """Per-rating values the similarity is computed on: the rating, the rating minus the
    user's mean (adjusted cosine) or minus the baseline (pearson-baseline)."""
    ratings = train.ratings.astype(np.float64)
    if basis == "baseline-residual":
        return ratings - (baseline.user_term_[train.users].astype(np.float64)
                          + baseline.item_term_[train.items])
    if basis == "user-centred":
        user_mean = _means(train.users, ratings, train.n_users, float(ratings.mean()))
        return ratings - user_mean[train.users]
    return ratings


def _sparse(values: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR with sorted indices that keeps stored zeros (a stored entry is an observation)."""
    matrix = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape)
    matrix.sort_indices()
    return matrix


@register("user-knn")
class UserKNN(_RatingKNN):
    """User-based rating kNN (KNNWithMeans / KNNBaseline with ``user_based=True``); the
    adjusted cosine (centred on user means) is an item-item measure.

    Paper: Herlocker et al., SIGIR 1999; Koren, TKDD 2010.
    Hyperparameters (defaults): ``k=40``, ``similarity='pearson-baseline'``,
        ``prediction='baseline-centred'``, ``shrinkage=100.0``, ``min_support=1``, ``min_k=1``,
        ``max_neighbors=None``.
    Defaults: Surprise's KNNBaseline, kept after a grid on validation splits carved from
        training data only, never a test split (`_RatingKNN`).
    Consumes: interactions, ratings.
    """

    user_based = True
    param_rules: ClassVar[dict[str, Rule]] = {
        "similarity": Choice(*(s for s in _RATING_MEASURES if s != "adjusted-cosine")),
    }


@register("item-knn")
class ItemKNN(ItemSimilarityMixin, _RatingKNN):
    """Item-based rating kNN (KNNWithMeans / KNNBaseline with ``user_based=False``);
    `similar_items` reads the item-item similarity matrix.

    Paper: Sarwar et al., WWW 2001; Koren, TKDD 2010.
    Hyperparameters (defaults): ``k=40``, ``similarity='pearson-baseline'``,
        ``prediction='baseline-centred'``, ``shrinkage=100.0``, ``min_support=1``, ``min_k=1``,
        ``max_neighbors=None``.
    Defaults: Surprise's KNNBaseline, kept after a grid on validation splits carved from
        training data only, never a test split (`_RatingKNN`).
    Consumes: interactions, ratings.
    """

    user_based = False


class _ImplicitKNN(Recommender):
    """Top-N kNN on the binary matrix; subclasses fix the orientation (``user_based``).

    The defaults (BM25 weighting, dot-product similarity, k=20) were chosen by sampled-99
    HR@10 on a leave-last-out validation split carved from the training data of ML-100K and
    of the synthetic set (benchmarks/bench_knn_ease.py validate).
    """

    user_based: ClassVar[bool]
    param_rules: ClassVar[dict[str, Rule]] = {
        "k": Integer(1, MAX_COUNT), "similarity": Choice("cosine", "jaccard", "dot"),
        "weighting": Choice("none", "tfidf", "bm25"), "shrinkage": Real(0), "bm25_k1": Real(0),
        "bm25_b": UNIT, "alpha": UNIT,
    }

    def __init__(self, k: int = 20, similarity: VectorMeasure = "dot",
                 weighting: Weighting = "bm25", shrinkage: float = 0.0,
                 bm25_k1: float = 1.2, bm25_b: float = 0.75, alpha: float = 0.5):
        self.k = k
        self.similarity = similarity
        self.weighting = weighting
        self.shrinkage = shrinkage
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.alpha = alpha

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.similarity == "jaccard" and self.weighting != "none":
            raise parameter_error("weighting", "similarity 'jaccard' compares sets of "
                                               "interactions; use weighting='none'")
        if self.alpha != 0.5 and self.similarity != "cosine":
            raise parameter_error("alpha", "the asymmetric cosine applies to similarity "
                                           f"'cosine' only, not {self.similarity!r}")
        n = self.n_users_ if self.user_based else self.n_items_
        check_memory(self.name, knn_need(n, self.k, 3, BLOCK_BYTES),
                     "lower k (prune each row to fewer neighbours)")
        entities = self.seen_ if self.user_based else self.seen_.T.tocsr()
        weighted = apply_weighting(entities, self.weighting, self.bm25_k1, self.bm25_b)
        self.similarity_ = vector_similarity(weighted, self.similarity, k=self.k,
                                             shrinkage=self.shrinkage, alpha=self.alpha)

    def _score(self, users: np.ndarray) -> np.ndarray:
        if self.user_based:
            return (self.similarity_[users] @ self.seen_).toarray()
        return (self.seen_[users] @ self.similarity_).toarray()


@register("user-knn-implicit")
class UserKNNImplicit(_ImplicitKNN):
    """User-based top-N kNN: ``score(u, j) = sum_{v in N^k(u)} s(u, v) x(v, j)``.

    Paper: Sarwar et al., "Analysis of recommendation algorithms for e-commerce", EC 2000.
    Hyperparameters (defaults): ``k=20``, ``similarity='dot'``, ``weighting='bm25'``,
        ``shrinkage=0.0``, ``bm25_k1=1.2``, ``bm25_b=0.75``, ``alpha=0.5``.
    Defaults: by sampled-99 HR@10 on leave-last-out validation splits carved from training data
        only, never a test split (`_ImplicitKNN`).
    Consumes: interactions.
    """

    user_based = True


@register("item-knn-implicit")
class ItemKNNImplicit(ItemSimilarityMixin, _ImplicitKNN):
    """Item-based top-N kNN (Deshpande & Karypis 2004): ``score(u, j) = sum_{i in I(u)}
    s(i, j)`` over each item's ``k`` nearest neighbours.

    ``neighbourhood`` says whose ``k`` nearest neighbours count: "history" (Deshpande &
    Karypis) sums ``s(i, j)`` over the history items ``i`` that have the candidate ``j`` among
    *their* ``k`` nearest neighbours (``X[u] @ S``); "candidate" (Sarwar et al. 2001, as in
    rating kNN) sums ``s(j, i)`` over the history items ``i`` among the *candidate's* ``k``
    nearest neighbours (``X[u] @ S^T``). Row ``j`` of `similarity_` is item ``j``'s ``k``
    nearest neighbours either way; ``alpha`` orients the asymmetric cosine from that row
    (``x``: the row's item, ``y``: its neighbour).

    Defaults (asymmetric cosine ``alpha=0.2`` on the binary matrix, ``k=200``, candidate
    neighbourhood) were chosen by sampled-99 HR@10 on leave-last-out validation splits carved
    from the training data only (two per dataset, negatives seeds 0-2) of ML-100K and of the
    implicit synthetic set (benchmarks/bench_knn_ease.py validate): the candidate neighbourhood
    beat the history one by 0.03-0.07 at every setting tried; row-normalising the similarity,
    a locality exponent and shrinkage did not help. The user-based model keeps the defaults of
    `_ImplicitKNN` (BM25, dot, k=20).

    Paper: Deshpande & Karypis, TOIS 2004.
    Hyperparameters (defaults): ``k=200``, ``similarity='cosine'``, ``weighting='none'``,
        ``shrinkage=0.0``, ``bm25_k1=1.2``, ``bm25_b=0.75``, ``alpha=0.2``,
        ``neighbourhood='candidate'``.
    Defaults: chosen as described above.
    Consumes: interactions.
    """

    user_based = False
    param_rules: ClassVar[dict[str, Rule]] = {"neighbourhood": Choice("history", "candidate")}

    def __init__(self, k: int = 200, similarity: VectorMeasure = "cosine",
                 weighting: Weighting = "none", shrinkage: float = 0.0,
                 bm25_k1: float = 1.2, bm25_b: float = 0.75, alpha: float = 0.2,
                 neighbourhood: Neighbourhood = "candidate"):
        super().__init__(k=k, similarity=similarity, weighting=weighting, shrinkage=shrinkage,
                         bm25_k1=bm25_k1, bm25_b=bm25_b, alpha=alpha)
        self.neighbourhood = neighbourhood

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self.scoring_ = (self.similarity_ if self.neighbourhood == "history"
                         else self.similarity_.T.tocsr())

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.seen_[users] @ self.scoring_).toarray()
