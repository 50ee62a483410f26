"""Implicit ALS: the model contract, the row solvers against dense algebra, and the loss."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data import Interactions
from recforge.errors import InputError
from recforge.evaluation import Evaluator, early_stopping
from recforge.models import ImplicitALS, MostPopular
from recforge.models.factorization.ials import _solve_rows, confidence
from recforge.testing import ModelContract, contract_data


class TestImplicitALS(ModelContract):
    def make_model(self, seed: int = 0) -> ImplicitALS:
        return ImplicitALS(factors=8, epochs=4, reg=0.1, alpha=5.0, seed=seed)


class TestImplicitALSCholesky(ModelContract):
    def make_model(self, seed: int = 0) -> ImplicitALS:
        return ImplicitALS(factors=8, epochs=3, solver="cholesky", seed=seed)


def _problem(seed: int = 0, n: int = 30, m: int = 25, k: int = 6):
    rng = np.random.default_rng(seed)
    mat = sp.random(n, m, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    mat.data = confidence(rng.integers(1, 5, mat.nnz), alpha=3.0, scaling="linear", epsilon=1.0)
    other = rng.standard_normal((m, k)).astype(np.float32)
    return mat, other, 0.5


def _dense_solution(mat: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    conf = np.ones(mat.shape, dtype=np.float64)
    pref = (mat.toarray() > 0).astype(np.float64)
    conf[pref > 0] = mat.toarray()[pref > 0]
    y = other.astype(np.float64)
    rows = []
    for u in range(mat.shape[0]):  # reference: Hu et al.'s closed form, one row at a time
        a = y.T @ (conf[u, :, None] * y) + reg * np.eye(y.shape[1])
        rows.append(np.linalg.solve(a, y.T @ (conf[u] * pref[u])))
    return np.array(rows)


def _dense_objective(mat: sp.csr_matrix, x: np.ndarray, other: np.ndarray, reg: float) -> float:
    dense = mat.toarray().astype(np.float64)
    conf = np.where(dense > 0, dense, 1.0)
    err = (dense > 0) - x.astype(np.float64) @ other.T.astype(np.float64)
    return float((conf * err**2).sum() + reg * (x.astype(np.float64) ** 2).sum())


@pytest.mark.parametrize("exact, steps, tol", [(True, 0, 1e-4), (False, 12, 2e-3)])
def test_row_solvers_match_the_closed_form(exact: bool, steps: int, tol: float) -> None:
    mat, other, reg = _problem()
    gram = other.T @ other + reg * np.eye(other.shape[1], dtype=np.float32)
    factors = np.zeros((mat.shape[0], other.shape[1]), dtype=np.float32)
    total = _solve_rows(mat.indptr, mat.indices, mat.data, factors, other, gram, exact, steps)
    expected = _dense_solution(mat, other, reg)
    assert np.allclose(factors, expected, atol=tol, rtol=tol)
    # the returned sum is the rows' objective
    assert total == pytest.approx(_dense_objective(mat, factors, other, reg), rel=1e-3)


def test_few_cg_steps_improve_a_warm_start() -> None:
    mat, other, reg = _problem(seed=1)
    gram = other.T @ other + reg * np.eye(other.shape[1], dtype=np.float32)
    factors = np.zeros((mat.shape[0], other.shape[1]), dtype=np.float32)
    before = _dense_objective(mat, factors, other, reg)
    _solve_rows(mat.indptr, mat.indices, mat.data, factors, other, gram, False, 2)
    after_two = _dense_objective(mat, factors, other, reg)
    _solve_rows(mat.indptr, mat.indices, mat.data, factors, other, gram, False, 2)
    after_four = _dense_objective(mat, factors, other, reg)
    assert before > after_two > after_four


def test_epoch_loss_is_the_full_objective() -> None:
    data = contract_data()
    model = ImplicitALS(factors=5, epochs=3, reg=0.3, alpha=4.0, solver="cholesky")
    model.fit(data)
    conf = 1.0 + 4.0 * data.binary_csr.toarray()
    err = (conf > 1) - model.user_factors_.astype(np.float64) @ model.item_factors_.T
    penalty = 0.3 * sum(float((f.astype(np.float64) ** 2).sum())
                        for f in (model.user_factors_, model.item_factors_))
    expected = ((conf * err**2).sum() + penalty) / conf.sum()
    assert model.history_[-1]["loss"] == pytest.approx(expected, rel=1e-4)
    losses = [h["loss"] for h in model.history_]
    assert all(b <= a + 1e-7 for a, b in itertools.pairwise(losses))  # exact ALS never worsens


def test_confidence_scalings() -> None:
    r = np.array([0.0, 1.0, 4.0], dtype=np.float32)
    assert confidence(r, 2.0, "linear", 1.0) == pytest.approx([1.0, 3.0, 9.0])
    assert confidence(r, 2.0, "log", 0.5) == pytest.approx(1.0 + 2.0 * np.log1p(r / 0.5))
    with pytest.raises(ValueError, match="scaling"):
        confidence(r, 2.0, "square", 1.0)  # type: ignore[arg-type]


def test_use_values_weights_by_rating() -> None:
    data = contract_data()
    binary = ImplicitALS(factors=6, epochs=2).fit(data)
    rated = ImplicitALS(factors=6, epochs=2, use_values=True).fit(data)
    assert not np.allclose(binary.user_factors_, rated.user_factors_)


def test_thread_count_does_not_change_the_result() -> None:
    data = contract_data()
    one = ImplicitALS(factors=6, epochs=3, threads=1).fit(data)
    two = ImplicitALS(factors=6, epochs=3, threads=2).fit(data)
    assert np.array_equal(one.user_factors_, two.user_factors_)
    assert not hasattr(one, "_training")  # training buffers are released


def planted_clusters(seed: int = 0, groups: int = 4, users_per_group: int = 25,
                     items_per_group: int = 15, per_user: int = 8) -> tuple[Interactions, Interactions]:
    """Users of group g interact only with items of group g: (train, one held-out item each)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(groups * users_per_group):
        g = u // users_per_group
        chosen = rng.choice(items_per_group, size=per_user, replace=False) + g * items_per_group
        users += [u] * per_user
        items += chosen.tolist()
    data = Interactions.from_arrays(users, items, item_ids=np.arange(groups * items_per_group))
    last = np.arange(per_user - 1, len(data), per_user)
    mask = np.zeros(len(data), dtype=bool)
    mask[last] = True
    return data.subset(~mask), data.subset(mask)


def test_learns_the_planted_structure() -> None:
    train, test = planted_clusters()
    evaluator = Evaluator(train, test, metrics=["hr@10"])
    model = ImplicitALS(factors=8, epochs=8, reg=0.1, alpha=10.0).fit(train)
    hr = evaluator.evaluate(model).metrics["HR@10"]
    popular = evaluator.evaluate(MostPopular().fit(train)).metrics["HR@10"]
    assert hr > 0.9 and hr > popular + 0.4


def test_early_stopping_uses_validation() -> None:
    data = contract_data()
    rng = np.random.default_rng(1)
    valid_mask = rng.random(len(data)) < 0.15
    model = ImplicitALS(factors=6, epochs=6, patience=2)
    train = data.subset(~valid_mask)
    model.fit(train, early_stopping(train, data.subset(valid_mask)))
    assert "ndcg@10" in model.history_[0]
    assert 1 <= model.best_epoch_ <= len(model.history_)


def test_ranking_early_stopping_needs_a_score_from_the_evaluation_layer() -> None:
    data = contract_data()
    with pytest.raises(InputError, match=r"pass valid=recforge\.evaluation\.early_stopping"):
        ImplicitALS(factors=4, epochs=2).fit(data, data)


def test_invalid_solver_raises() -> None:
    with pytest.raises(ValueError, match="solver"):
        ImplicitALS(solver="lu").fit(contract_data())  # type: ignore[arg-type]
