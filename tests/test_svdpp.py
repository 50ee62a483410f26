"""SVD++: the model contract, one epoch against a plain Python reference, and learning."""

from __future__ import annotations

import numpy as np
import pytest
from test_mf import low_rank_ratings, rmse

from recforge.models import BaselineOnly
from recforge.models.factorization._sgd_kernels import sgd_epoch_svdpp
from recforge.models.factorization.svdpp import SVDpp
from recforge.testing import ModelContract, contract_data


class TestSVDpp(ModelContract):
    def make_model(self, seed: int = 0) -> SVDpp:
        return SVDpp(factors=6, epochs=4, seed=seed)


def _reference_epoch(indptr, items, ratings, order, mu, bu, bi, p, q, y, lr, reg, reg_b, reg_y):
    """Koren's SVD++ updates with the y_j step applied once per user, one rating at a time."""
    sse = 0.0
    for u in order:
        rated = items[indptr[u]:indptr[u + 1]]
        if not len(rated):
            continue
        norm = len(rated) ** -0.5
        z = p[u] + norm * y[rated].sum(axis=0)
        grad = np.zeros_like(z)
        for i, r in zip(rated, ratings[indptr[u]:indptr[u + 1]]):
            err = r - (mu + bu[u] + bi[i] + q[i] @ z)
            sse += err**2
            bu[u] += lr * (err - reg_b * bu[u])
            bi[i] += lr * (err - reg_b * bi[i])
            old_q = q[i].copy()
            q[i] += lr * (err * z - reg * old_q)
            step = lr * (err * old_q - reg * p[u])
            p[u] += step
            z = z + step
            grad += err * old_q
        y[rated] += lr * (norm * grad - reg_y * y[rated])
    return sse


def test_epoch_matches_the_reference() -> None:
    data = contract_data()
    csr = data.csr
    rng = np.random.default_rng(0)
    k = 5
    params = [rng.normal(0, 0.1, data.n_users), rng.normal(0, 0.1, data.n_items),
              rng.normal(0, 0.1, (data.n_users, k)), rng.normal(0, 0.1, (data.n_items, k)),
              rng.normal(0, 0.1, (data.n_items, k))]
    got = [a.copy() for a in params]
    items, ratings = csr.indices.copy(), csr.data.astype(np.float64)
    rows = np.repeat(np.arange(data.n_users, dtype=np.int32), np.diff(csr.indptr))
    order = rng.permutation(data.n_users)
    sse = sgd_epoch_svdpp(csr.indptr, rows, items, ratings, order, np.uint64(4), 3.5, *got,
                          0.02, 0.05, 0.01, 0.1)
    # the kernel shuffled each user's ratings in place: replay that order in the reference
    expected = _reference_epoch(csr.indptr, items, ratings, order, 3.5, *params,
                                0.02, 0.05, 0.01, 0.1)
    for a, b in zip(got, params):
        assert np.allclose(a, b, atol=1e-9)
    assert sse == pytest.approx(expected)


def test_implicit_sum_is_the_normalised_sum_of_y() -> None:
    data = contract_data()
    model = SVDpp(factors=4, epochs=3).fit(data)
    u = 10
    rated = data.csr[u].indices
    expected = model.implicit_factors_[rated].sum(axis=0) / np.sqrt(len(rated))
    assert np.allclose(model.implicit_sum_[u], expected, atol=1e-5)
    users, items = data.users[:30], data.items[:30]
    assert np.allclose(model.score(users)[np.arange(30), items], model._predict(users, items),
                       atol=1e-4)


def test_learns_low_rank_structure() -> None:
    train, test = low_rank_ratings()
    model = SVDpp(factors=10, epochs=40, learning_rate=0.02, lr_decay=1.0, reg=0.05).fit(train)
    assert rmse(model, test) < 0.5 * rmse(BaselineOnly().fit(train), test)
