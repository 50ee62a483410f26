"""Biased matrix factorisation, ``r_ui ~ mu + b_u + b_i + p_u . q_i``.

`BiasedMF` ("biased-mf") trains it by stochastic gradient descent -- Funk's "FunkSVD" (2006)
with the biases of Koren, Bell & Volinsky, "Matrix factorization techniques for recommender
systems" (IEEE Computer 2009) -- and `BiasedMFALS` ("biased-mf-als") by alternating least
squares on the same objective. Both share the scoring code of `FactorScorer`, which SVD, SVD++
and explicit ALS reuse as well.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.factorization._sgd_kernels import (
    als_solve_rows,
    predict_pairs,
    sgd_cell_mf,
    sgd_epoch_mf,
)
from recforge.models.factorization.factors import init_factors
from recforge.models.iterative import IterativeRecommender
from recforge.models.registry import register
from recforge.params import (
    DECAY,
    INIT_STD,
    LEARNING_RATE,
    PENALTY,
    POSITIVE_PENALTY,
    SEED,
    SOLVE_WIDTH,
    WIDTH,
    Integer,
    Optional,
    Rule,
)

#: most strata per side of `BiasedMF`'s parallel schedule (``strata^2`` cells)
MAX_STRATA = 1024


def init_rows(rng: np.random.Generator, counts: np.ndarray, factors: int,
              std: float) -> np.ndarray:
    """``N(0, std^2)`` float32 factors, one row per entity; rows with no training data are zero
    (so unseen users/items fall back to the bias terms)."""
    out = init_factors(rng, len(counts), factors, std)
    out[counts == 0] = 0.0
    return out


def kernel_seed(rng: np.random.Generator) -> np.uint64:
    """A 64-bit seed for a kernel's splitmix64 stream, drawn from ``rng``."""
    return np.uint64(rng.integers(0, 2**63, dtype=np.int64))


class FactorScorer(Recommender):
    """Scoring of ``mu + b_u + b_i + u_vec(u) . q_i`` rating models (MF, SVD, SVD++, ALS).

    Learned state: ``user_bias_``, ``item_bias_``, ``user_factors_``, ``item_factors_``;
    subclasses may override `_user_rows`/`_user_matrix` (SVD++ adds its implicit term).
    """

    requires_ratings = True
    predicts_ratings = True

    def _user_rows(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users]

    def _user_matrix(self) -> np.ndarray:
        return self.user_factors_

    def _score(self, users: np.ndarray) -> np.ndarray:
        scores = self._user_rows(users) @ self.item_factors_.T
        scores += self.user_bias_[users, None] + self.item_bias_[None, :]
        scores += np.float32(self.global_mean_)
        return scores

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return predict_pairs(users, items, self.global_mean_, self.user_bias_, self.item_bias_,
                             self._user_matrix(), self.item_factors_)

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def training_mse(self, train: Interactions) -> float:
        """Mean squared error of the current parameters on ``train``."""
        err = self._predict(train.users, train.items) - train.ratings
        return float(np.mean(err.astype(np.float64) ** 2))

    def _init_biases(self) -> None:
        self.user_bias_ = np.zeros(self.n_users_, dtype=np.float32)
        self.item_bias_ = np.zeros(self.n_items_, dtype=np.float32)


class FactorRatingModel(FactorScorer, IterativeRecommender):
    """A `FactorScorer` trained epoch by epoch (the shared loop of `IterativeRecommender`,
    which drops the training-only buffers in ``_training`` once fitting ends)."""

    _training: SimpleNamespace


#: training ratings from which `BiasedMF` runs its parallel (stratified) schedule by default
PARALLEL_MIN_RATINGS = 1_000_000


@register("biased-mf")
class BiasedMF(FactorRatingModel):
    """Biased MF trained by SGD with L2 regularisation and an exponential learning-rate decay.

    Epoch ``e`` (from 0) uses learning rate ``learning_rate * lr_decay**e`` for factors and
    biases. Each epoch visits every training rating once in a seeded random order, stratified
    into ``strata x strata`` (user block, item block) cells whose diagonals run in parallel
    (Gemulla et al. 2011): deterministic for a given ``seed`` and ``strata`` on any number of
    threads. ``strata=1`` is plain serial SGD; ``None`` (default) picks 1 below
    `PARALLEL_MIN_RATINGS` training ratings and 8 from there on.

    Defaults were chosen on validation splits carved from training data only -- a seeded
    per-user random 10% of ML-100K ``u1.base`` and ``u2.base`` (grid over factors, lr, decay,
    reg), confirmed on the same carve of ``u3..u5.base`` and on `recforge.data.synthetic` --
    never on a test split: mean validation RMSE 0.912 over the five carves, against 0.923 for
    ``factors=50, learning_rate=0.01, lr_decay=0.95, reg=0.05`` and 0.942 for Surprise's SVD
    settings (lr 0.005, reg 0.02, 20 epochs, init_std 0.1); also the best of five settings on two
    ML-100K-sized synthetic sets. ``reg`` is data-dependent: on a larger synthetic set (1M
    ratings, 20k users) reg 0.05 validated better (0.778 against 0.793; ML-100K: 0.930
    against 0.912), so tune it on a validation split for very different data.
    On small data (and on a busy machine) the parallel schedule's per-sub-epoch
    synchronisation costs more than it saves; on 10M synthetic ratings ``strata=8`` fitted
    in 93 s against 119 s for serial SGD on 2 busy shared cores, with the same held-out RMSE
    (benchmarks/bench_rating.py; an earlier, busier run measured 123 s against 353 s).

    Paper: Koren, Bell & Volinsky, IEEE Computer 2009 (Funk's SGD).
    Hyperparameters (defaults): ``factors=100``, ``lr_decay=0.97``, ``reg=0.1``,
        ``reg_bias=0.01``, ``init_std=0.05``, ``strata=None``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=40``,
        ``learning_rate=0.02``.
    Defaults: chosen as described above.
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "factors": WIDTH, "learning_rate": LEARNING_RATE, "lr_decay": DECAY, "reg": PENALTY,
        "reg_bias": PENALTY, "init_std": INIT_STD, "strata": Optional(Integer(1, MAX_STRATA)),
        "seed": SEED,
    }

    def __init__(self, factors: int = 100, epochs: int = 40, learning_rate: float = 0.02,
                 lr_decay: float = 0.97, reg: float = 0.1, reg_bias: float = 0.01,
                 init_std: float = 0.05, strata: int | None = None, seed: int = 0,
                 patience: int = 5,
                 verbose: bool = False):
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.reg = reg
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.strata = strata
        self.seed = seed
        self.patience = patience
        self.verbose = verbose

    def _init_training(self, train: Interactions) -> None:
        strata = self.strata or (1 if len(train) < PARALLEL_MIN_RATINGS else 8)
        rng = np.random.default_rng(self.seed)
        self._init_biases()
        self.user_factors_ = init_rows(rng, train.user_counts, self.factors, self.init_std)
        self.item_factors_ = init_rows(rng, train.item_counts, self.factors, self.init_std)
        user_block = rng.permutation(self.n_users_) % strata
        item_block = rng.permutation(self.n_items_) % strata
        cell = user_block[train.users] * strata + item_block[train.items]
        order = np.argsort(cell, kind="stable")
        self._training = SimpleNamespace(
            rng=rng, strata=strata, users=train.users[order], items=train.items[order],
            cell_ptr=np.searchsorted(cell[order], np.arange(strata**2 + 1)),
            ratings=train.ratings[order].astype(np.float32))

    def _run_epoch(self, epoch: int) -> float:
        t = self._training
        rate = self.learning_rate * self.lr_decay**epoch
        data = (t.users, t.items, t.ratings)
        params = (self.global_mean_, self.user_bias_, self.item_bias_, self.user_factors_,
                  self.item_factors_, rate, self.reg, self.reg_bias)
        seed = kernel_seed(t.rng)
        if t.strata == 1:
            sse = sgd_cell_mf(*data, 0, len(t.ratings), seed, *params)
        else:
            sse = sgd_epoch_mf(*data, t.cell_ptr, t.strata, t.rng.permutation(t.strata), seed,
                               *params)
        return sse / len(t.ratings)


def als_half_step(matrix: sp.csr_matrix, offset: float, fixed_factors: np.ndarray,
                  fixed_bias: np.ndarray | None, reg: float, reg_bias: float | None,
                  weighted: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve every row of ``matrix`` (its ratings minus ``offset``) for its factors -- and its
    bias when ``reg_bias`` is given -- with the other side held fixed.

    The row's objective is ``sum_j (t_j - b_j - x . y_j - c)^2 + s (reg |x|^2 + reg_bias c^2)``
    where ``y_j``/``b_j`` are the fixed factors/biases (``b_j = 0`` when ``fixed_bias`` is None)
    and ``s`` is the row's rating count when ``weighted`` (the weighted-lambda regularisation of
    Zhou et al. 2008), else 1. Returns the factors and the biases (None without ``reg_bias``).
    """
    targets = matrix.data.astype(np.float64) - offset
    if fixed_bias is not None:
        targets -= fixed_bias[matrix.indices]
    k = fixed_factors.shape[1]
    fixed = fixed_factors.astype(np.float64)
    reg_vec = np.full(k, reg)
    if reg_bias is not None:
        fixed = np.hstack([fixed, np.ones((len(fixed), 1))])
        reg_vec = np.append(reg_vec, reg_bias)
    scale = np.diff(matrix.indptr).astype(np.float64) if weighted else np.ones(matrix.shape[0])
    out = np.empty((matrix.shape[0], fixed.shape[1]))
    als_solve_rows(matrix.indptr, matrix.indices, targets, fixed, reg_vec, scale, out)
    factors = np.ascontiguousarray(out[:, :k], dtype=np.float32)
    return factors, (out[:, k].astype(np.float32) if reg_bias is not None else None)


class AlternatingLeastSquares(FactorRatingModel):
    """Epoch = solve every user's row exactly with the items fixed, then every item's with the
    users fixed (ridge regressions over ``ratings - mu``, in parallel; deterministic).

    Subclasses set ``weighted_reg`` and `_bias_reg` (None: no biases are learned). ``reg``
    is positive: each row's ridge system must stay non-singular.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "factors": SOLVE_WIDTH, "reg": POSITIVE_PENALTY, "init_std": INIT_STD, "seed": SEED,
    }

    #: scale the regularisation by each row's rating count (Zhou et al. 2008)
    weighted_reg: bool = False
    factors: int
    reg: float
    init_std: float
    seed: int

    def _bias_reg(self) -> float | None:
        raise NotImplementedError

    def _init_training(self, train: Interactions) -> None:
        rng = np.random.default_rng(self.seed)
        self._init_biases()
        self.user_factors_ = init_rows(rng, train.user_counts, self.factors, self.init_std)
        self.item_factors_ = init_rows(rng, train.item_counts, self.factors, self.init_std)
        self._training = SimpleNamespace(train=train)

    def _run_epoch(self, epoch: int) -> float:
        train, reg_bias = self._training.train, self._bias_reg()
        self.user_factors_, user_bias = als_half_step(
            train.csr, self.global_mean_, self.item_factors_, self.item_bias_, self.reg,
            reg_bias, self.weighted_reg)
        if user_bias is not None:
            self.user_bias_ = user_bias
        self.item_factors_, item_bias = als_half_step(
            train.item_user_csr, self.global_mean_, self.user_factors_, self.user_bias_,
            self.reg, reg_bias, self.weighted_reg)
        if item_bias is not None:
            self.item_bias_ = item_bias
        return self.training_mse(train)


@register("biased-mf-als")
class BiasedMFALS(AlternatingLeastSquares):
    """Biased MF (the model and scoring of `BiasedMF`) trained by alternating least squares,
    each half step solving ``(p_u, b_u)`` (resp. ``(q_i, b_i)``) jointly.

    Defaults chosen like `BiasedMF`'s, on the validation carves of ML-100K ``u1.base`` and
    ``u2.base`` (grid over factors 2..50, reg 5..20, reg_bias 2..10; mean RMSE 0.917): ALS
    overfits with more than a few factors at these regularisations.

    Paper: Koren, Bell & Volinsky, IEEE Computer 2009.
    Hyperparameters (defaults): ``factors=3``, ``reg=7.0``, ``reg_bias=2.0``, ``init_std=0.1``;
        training (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=30``,
        ``patience=3``.
    Defaults: chosen as described above.
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"reg_bias": PENALTY}

    def __init__(self, factors: int = 3, epochs: int = 30, reg: float = 7.0,
                 reg_bias: float = 2.0, init_std: float = 0.1, seed: int = 0,
                 patience: int = 3, verbose: bool = False):
        self.factors = factors
        self.epochs = epochs
        self.reg = reg
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.seed = seed
        self.patience = patience
        self.verbose = verbose

    def _bias_reg(self) -> float:
        return self.reg_bias
