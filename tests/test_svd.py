"""Truncated SVD: the model contract and the factorisation against dense linear algebra."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.models import BaselineOnly
from recforge.models.factorization.svd import TruncatedSVD
from recforge.testing import ModelContract, contract_data


class TestTruncatedSVD(ModelContract):
    def make_model(self, seed: int = 0) -> TruncatedSVD:
        return TruncatedSVD(factors=4, seed=seed)


@pytest.mark.parametrize("rank", [1, 3, 8])
def test_scores_are_baseline_plus_the_best_rank_k_approximation(rank: int) -> None:
    data = contract_data()
    model = TruncatedSVD(factors=rank).fit(data)
    base = BaselineOnly().fit(data)
    residual = np.zeros((data.n_users, data.n_items))
    residual[data.users, data.items] = (data.ratings - base.user_term_[data.users]
                                        - base.item_term_[data.items])
    u, s, vt = np.linalg.svd(residual, full_matrices=False)
    low_rank = (u[:, :rank] * s[:rank]) @ vt[:rank]
    expected = base.user_term_[:, None] + base.item_term_[None, :] + low_rank
    users = np.arange(data.n_users)
    assert np.allclose(model.score(users), expected, atol=1e-4)


def test_rank_is_capped_by_the_matrix_size() -> None:
    data = contract_data(n_users=12, n_items=25)
    model = TruncatedSVD(factors=50).fit(data)
    assert model.item_factors_.shape == (data.n_items, data.n_users - 1)


def test_more_factors_fit_the_training_data_better() -> None:
    data = contract_data()
    errors = []
    for rank in (1, 5, 20):
        model = TruncatedSVD(factors=rank).fit(data)
        errors.append(np.mean((model.predict(data.users, data.items) - data.ratings) ** 2))
    assert errors[0] > errors[1] > errors[2]
