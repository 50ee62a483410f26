"""Biased MF (SGD and ALS): the model contract, the kernels against plain references, and
learning behaviour."""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import pytest

from recforge.data import Interactions
from recforge.models import BaselineOnly
from recforge.models.factorization._sgd_kernels import als_solve_rows, sgd_cell_mf
from recforge.models.factorization.mf import BiasedMF, BiasedMFALS, als_half_step
from recforge.testing import ModelContract, contract_data


class TestBiasedMF(ModelContract):
    def make_model(self, seed: int = 0) -> BiasedMF:
        return BiasedMF(factors=8, epochs=5, seed=seed)


class TestBiasedMFStratified(ModelContract):
    def make_model(self, seed: int = 0) -> BiasedMF:
        return BiasedMF(factors=8, epochs=5, strata=4, seed=seed)


class TestBiasedMFALS(ModelContract):
    def make_model(self, seed: int = 0) -> BiasedMFALS:
        return BiasedMFALS(factors=6, epochs=3, seed=seed)


def low_rank_ratings(n_users: int = 300, n_items: int = 200, rank: int = 3, density: float = 0.2,
                     noise: float = 0.3, seed: int = 0) -> tuple[Interactions, Interactions]:
    """Ratings ``3 + biases + u.v + noise`` on a random mask, split 80/20 at random."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.7, (n_users, rank))
    v = rng.normal(0, 0.7, (n_items, rank))
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    truth = (3 + rng.normal(0, 0.3, n_users)[users] + rng.normal(0, 0.3, n_items)[items]
             + np.einsum("ij,ij->i", u[users], v[items]))
    ratings = truth + rng.normal(0, noise, len(users))
    data = Interactions.from_pandas(pd.DataFrame({"user": users, "item": items,
                                                  "rating": ratings}))
    test = rng.random(len(data)) < 0.2
    return data.subset(~test), data.subset(test)


def rmse(model, data: Interactions) -> float:
    err = model.predict(data.users, data.items) - data.ratings
    return float(np.sqrt(np.mean(err.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def low_rank() -> tuple[Interactions, Interactions]:
    return low_rank_ratings()


@pytest.mark.parametrize("model", [
    BiasedMF(factors=10, epochs=60, learning_rate=0.02, lr_decay=1.0, strata=4, seed=1),
    BiasedMF(factors=10, epochs=60, learning_rate=0.02, lr_decay=1.0, strata=1),
    BiasedMFALS(factors=3, epochs=10, reg=1.0, reg_bias=1.0),
])
def test_learns_low_rank_structure(model, low_rank) -> None:
    train, test = low_rank
    baseline = rmse(BaselineOnly().fit(train), test)
    learned = rmse(model.fit(train), test)
    assert learned < 0.5 * baseline, (learned, baseline)  # noise floor 0.3 / 0.86
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]


def test_sgd_cell_matches_a_plain_python_pass() -> None:
    rng = np.random.default_rng(3)
    users = rng.integers(0, 6, 40).astype(np.int32)
    items = rng.integers(0, 5, 40).astype(np.int32)
    ratings = rng.integers(1, 6, 40).astype(np.float32)
    bu, bi = rng.normal(0, 0.1, 6), rng.normal(0, 0.1, 5)
    p, q = rng.normal(0, 0.1, (6, 4)), rng.normal(0, 0.1, (5, 4))
    lr, reg, reg_b, mu = 0.05, 0.1, 0.02, 3.0
    got = [a.copy() for a in (bu, bi, p, q)]
    u2, i2, r2 = users.copy(), items.copy(), ratings.copy()
    sse = sgd_cell_mf(u2, i2, r2, 0, 40, np.uint64(9), mu, *got, lr, reg, reg_b)
    assert sorted(zip(u2, i2, r2)) == sorted(zip(users, items, ratings))  # a permutation
    expected_sse = 0.0
    for u, i, r in zip(u2, i2, r2):  # reference: Funk's update, one rating at a time
        err = r - (mu + bu[u] + bi[i] + p[u] @ q[i])
        expected_sse += err**2
        bu[u] += lr * (err - reg_b * bu[u])
        bi[i] += lr * (err - reg_b * bi[i])
        p[u], q[i] = p[u] + lr * (err * q[i] - reg * p[u]), q[i] + lr * (err * p[u] - reg * q[i])
    for a, b in zip(got, (bu, bi, p, q)):
        assert np.allclose(a, b, atol=1e-9)
    assert sse == pytest.approx(expected_sse)


def test_stratified_sgd_is_independent_of_the_thread_count() -> None:
    data = contract_data(n_users=80, n_items=50)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            model = BiasedMF(factors=6, epochs=4, strata=4, seed=2).fit(data)
            results.append((model.user_factors_, model.item_factors_, model.item_bias_))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_default_strata_follow_the_data_size(monkeypatch: pytest.MonkeyPatch) -> None:
    data = contract_data()
    serial = BiasedMF(factors=4, epochs=2, strata=1).fit(data)
    assert np.array_equal(BiasedMF(factors=4, epochs=2).fit(data).user_factors_,
                          serial.user_factors_)
    monkeypatch.setattr("recforge.models.factorization.mf.PARALLEL_MIN_RATINGS", 10)
    stratified = BiasedMF(factors=4, epochs=2, strata=8).fit(data)
    assert np.array_equal(BiasedMF(factors=4, epochs=2).fit(data).user_factors_,
                          stratified.user_factors_)


def test_seed_changes_the_result() -> None:
    data = contract_data()
    a = BiasedMF(factors=6, epochs=3, seed=0).fit(data).item_factors_
    b = BiasedMF(factors=6, epochs=3, seed=1).fit(data).item_factors_
    assert not np.array_equal(a, b)


def test_learning_rate_schedule_decays() -> None:
    data = contract_data()
    frozen = BiasedMF(factors=4, epochs=3, lr_decay=0.0, seed=0).fit(data)
    once = BiasedMF(factors=4, epochs=1, seed=0).fit(data)
    # lr_decay = 0 turns every epoch after the first into a no-op
    assert np.array_equal(frozen.user_factors_, once.user_factors_)


def test_early_stopping_restores_the_best_epoch(low_rank) -> None:
    train, test = low_rank
    model = BiasedMF(factors=30, epochs=40, learning_rate=0.05, lr_decay=1.0, reg=0.0, patience=3).fit(
        train, test)
    scores = [h["neg_rmse"] for h in model.history_]
    assert len(scores) < 40 and model.best_epoch_ == int(np.argmax(scores)) + 1
    assert -rmse(model, test) == pytest.approx(max(scores), abs=1e-5)


def test_cold_items_predict_from_biases() -> None:
    data = contract_data()  # the last catalogue item has no ratings
    cold = data.n_items - 1
    assert data.item_counts[cold] == 0
    for model in (BiasedMF(factors=4, epochs=2), BiasedMFALS(factors=4, epochs=2)):
        model.fit(data)
        assert not model.item_factors_[cold].any() and model.item_bias_[cold] == 0
        users = np.arange(5)
        expected = model.global_mean_ + model.user_bias_[users]
        assert np.allclose(model.predict(users, np.full(5, cold)), np.clip(expected, 1, 5),
                           atol=1e-5)


def test_score_equals_unclipped_predict() -> None:
    data = contract_data()
    model = BiasedMF(factors=5, epochs=3).fit(data)
    users, items = data.users[:40], data.items[:40]
    full = model.score(users)[np.arange(40), items]
    assert np.allclose(full, model._predict(users, items), atol=1e-5)


def test_als_rows_solve_the_ridge_normal_equations() -> None:
    rng = np.random.default_rng(0)
    fixed = rng.normal(size=(30, 5))
    indptr = np.array([0, 10, 10, 25])
    indices = rng.integers(0, 30, 25).astype(np.int32)
    targets = rng.normal(size=25)
    reg = np.array([0.1, 0.1, 0.1, 0.1, 0.3])
    scale = np.array([2.0, 1.0, 3.0])
    out = np.empty((3, 5))
    als_solve_rows(indptr, indices, targets, fixed, reg, scale, out)
    for u in (0, 2):
        y = fixed[indices[indptr[u]:indptr[u + 1]]]
        direct = np.linalg.solve(y.T @ y + np.diag(scale[u] * reg), y.T @ targets[indptr[u]:indptr[u + 1]])
        assert np.allclose(out[u], direct)
    assert not out[1].any()  # a row without entries


def test_als_half_step_minimises_the_biased_objective() -> None:
    data = contract_data()
    rng = np.random.default_rng(1)
    q = rng.normal(0, 0.3, (data.n_items, 4)).astype(np.float32)
    b_i = rng.normal(0, 0.3, data.n_items).astype(np.float32)
    p, b_u = als_half_step(data.csr, 3.0, q, b_i, reg=2.0, reg_bias=5.0, weighted=False)
    row = data.csr[7]
    t = row.data - 3.0 - b_i[row.indices]
    x = np.append(p[7], b_u[7]).astype(np.float64)
    design = np.hstack([q[row.indices], np.ones((row.nnz, 1))]).astype(np.float64)
    gradient = design.T @ (design @ x - t) + np.array([2.0] * 4 + [5.0]) * x
    assert np.abs(gradient).max() < 1e-4
