"""Explicit ALS-WR: the model contract and the weighted-lambda normal equations."""

from __future__ import annotations

import numpy as np
from test_mf import low_rank_ratings, rmse

from recforge.models import BaselineOnly
from recforge.models.factorization.als_explicit import ExplicitALS
from recforge.testing import ModelContract, contract_data


class TestExplicitALS(ModelContract):
    def make_model(self, seed: int = 0) -> ExplicitALS:
        return ExplicitALS(factors=5, epochs=3, seed=seed)


def test_item_rows_solve_the_weighted_lambda_problem() -> None:
    data = contract_data()
    model = ExplicitALS(factors=4, epochs=2, reg=0.3).fit(data)
    assert not model.user_bias_.any() and not model.item_bias_.any()
    by_item = data.item_user_csr
    p = model.user_factors_.astype(np.float64)
    for item in (0, 5, 17):  # items were solved last, against the current user factors
        row = by_item[item]
        design = p[row.indices]
        x = model.item_factors_[item].astype(np.float64)
        t = row.data - model.global_mean_
        gradient = design.T @ (design @ x - t) + 0.3 * row.nnz * x
        assert np.abs(gradient).max() < 1e-4


def test_weighting_changes_the_solution() -> None:
    data = contract_data()
    weighted = ExplicitALS(factors=4, epochs=2, reg=0.3).fit(data)
    plain = ExplicitALS(factors=4, epochs=2, reg=0.3)
    plain.weighted_reg = False
    plain.fit(data)
    assert not np.allclose(weighted.item_factors_, plain.item_factors_)


def test_learns_low_rank_structure() -> None:
    train, test = low_rank_ratings()
    model = ExplicitALS(factors=5, epochs=10, reg=0.05).fit(train)  # rank 3 + two biases
    assert rmse(model, test) < 0.5 * rmse(BaselineOnly().fit(train), test)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
