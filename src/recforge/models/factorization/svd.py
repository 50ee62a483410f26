"""Truncated SVD of the baseline-centred rating matrix.

The classic "SVD" recommender (Sarwar, Karypis, Konstan & Riedl, "Application of
dimensionality reduction in recommender systems -- a case study", WebKDD 2000): subtract a
baseline from every observed rating, treat unobserved entries as zero residual, and keep the
rank-``factors`` truncated SVD ``U S V^T`` of that sparse matrix. Predictions are the baseline
plus ``(U S^1/2)_u . (V S^1/2)_i``. The baseline is ``mu + b_u + b_i`` with regularised
biases (`recforge.models.baselines.simple.BaselineOnly`), which centres better than user or item
means alone.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recforge.data.interactions import Interactions
from recforge.models.baselines.simple import BaselineOnly
from recforge.models.factorization.mf import FactorScorer
from recforge.models.registry import register
from recforge.params import PENALTY, SEED, WIDTH, Rule


@register("truncated-svd")
class TruncatedSVD(FactorScorer):
    """Rank-``factors`` truncated SVD of the ratings minus ``mu + b_u + b_i`` (ARPACK, seeded
    start vector, so deterministic per seed).

    ``factors`` was chosen on validation splits carved from training data (per-user random
    10% of ML-100K ``u1.base``/``u2.base``); the baseline regularisation matches
    `BaselineOnly`'s defaults.

    Paper: Sarwar et al., "Application of dimensionality reduction in recommender systems",
        WebKDD 2000.
    Hyperparameters (defaults): ``factors=10``, ``reg_user=15.0``, ``reg_item=10.0``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): its defaults.
    Defaults: chosen as described above.
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "factors": WIDTH, "reg_user": PENALTY, "reg_item": PENALTY, "seed": SEED,
    }

    def __init__(self, factors: int = 10, reg_user: float = 15.0, reg_item: float = 10.0,
                 seed: int = 0):
        self.factors = factors
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.seed = seed

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        rank = min(self.factors, min(train.n_users, train.n_items) - 1)
        if rank < 1:
            raise ValueError("truncated SVD needs at least two users and two items")
        base = BaselineOnly(reg_user=self.reg_user, reg_item=self.reg_item).fit(train)
        self.user_bias_ = base.user_term_ - np.float32(self.global_mean_)
        self.item_bias_ = base.item_term_
        residual = train.ratings - base.user_term_[train.users] - base.item_term_[train.items]
        matrix = sp.csr_matrix((residual.astype(np.float64), (train.users, train.items)),
                               shape=(self.n_users_, self.n_items_))
        start = np.random.default_rng(self.seed).uniform(-1, 1, min(matrix.shape))
        u, s, vt = svds(matrix, k=rank, v0=start)
        root = np.sqrt(s)
        self.user_factors_ = np.ascontiguousarray(u * root, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(vt.T * root, dtype=np.float32)
