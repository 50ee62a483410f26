"""I-AutoRec: the model contract, the gradient against finite differences, the optimiser, and
learning behaviour."""

from __future__ import annotations

import numpy as np
from test_mf import low_rank_ratings, rmse

from recforge.models import BaselineOnly
from recforge.models.neural.autorec import AutoRec, _Objective
from recforge.numerics import LBFGS
from recforge.testing import ModelContract, contract_data


class TestAutoRec(ModelContract):
    def make_model(self, seed: int = 0) -> AutoRec:
        return AutoRec(hidden=8, reg=1.0, epochs=3, lbfgs_steps=5, seed=seed)


def test_gradient_matches_finite_differences() -> None:
    data = contract_data()
    objective = _Objective(data, hidden=7, reg=0.3, dtype=np.float64)
    rng = np.random.default_rng(0)
    theta = rng.normal(0, 0.1, 2 * data.n_users * 7 + 7 + data.n_users)
    _, grad = objective(theta)
    for j in rng.choice(len(theta), 40, replace=False):
        step = np.zeros_like(theta)
        step[j] = 1e-6
        numeric = (objective(theta + step)[0] - objective(theta - step)[0]) / 2e-6
        assert abs(numeric - grad[j]) < 1e-4 * max(1.0, abs(grad[j]))


def test_objective_is_the_masked_error_plus_l2() -> None:
    data = contract_data()
    objective = _Objective(data, hidden=3, reg=0.5, dtype=np.float64)
    theta = np.random.default_rng(1).normal(0, 0.2, 2 * data.n_users * 3 + 3 + data.n_users)
    enc, enc_bias, dec, dec_bias = objective.unpack(theta)
    dense = np.zeros((data.n_items, data.n_users))
    dense[data.items, data.users] = data.ratings
    codes = 1 / (1 + np.exp(-(dense @ enc + enc_bias)))
    out = codes @ dec.T + dec_bias
    err = (out - dense)[data.items, data.users]
    expected = err @ err + 0.25 * ((enc**2).sum() + (dec**2).sum())
    assert np.isclose(objective(theta)[0], expected)


def test_lbfgs_minimises_a_quadratic_and_keeps_memory() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20))
    hessian = a @ a.T + np.eye(20)
    target = rng.normal(size=20)

    def quadratic(x: np.ndarray) -> tuple[float, np.ndarray]:
        r = x - target
        return 0.5 * float(r @ hessian @ r), hessian @ r

    opt = LBFGS(quadratic, np.zeros(20))
    opt.run(5)
    assert len(opt.pairs) == 5  # memory carries over between calls (epochs)
    opt.run(100)
    assert np.allclose(opt.x, target, atol=1e-5)


def test_learns_and_predicts_cold_items_at_the_mean() -> None:
    train, test = low_rank_ratings()
    model = AutoRec(hidden=20, reg=5.0, epochs=10, lbfgs_steps=10).fit(train)
    assert rmse(model, test) < 0.8 * rmse(BaselineOnly().fit(train), test)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    data = contract_data()  # its last catalogue item has no ratings
    fitted = AutoRec(hidden=4, epochs=1).fit(data)
    cold = np.full(3, data.n_items - 1)
    assert np.allclose(fitted.predict([0, 1, 2], cold), fitted.global_mean_)
    assert fitted.item_vectors().shape == (data.n_items, 4)
