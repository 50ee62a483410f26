"""EASE: the model contract plus the closed form checked against a direct inverse."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data import Interactions
from recforge.errors import ParameterError
from recforge.models.neighbours import ease as ease_module
from recforge.models.neighbours.ease import EASE
from recforge.testing import ModelContract, contract_data


class TestEASE(ModelContract):
    def make_model(self, seed: int = 0) -> EASE:
        return EASE(reg=20.0)


class TestEASEFloat32(ModelContract):
    def make_model(self, seed: int = 0) -> EASE:
        return EASE(reg=20.0, dtype="float32")


@pytest.fixture(scope="module")
def data() -> Interactions:
    return contract_data()


def _closed_form(data: Interactions, reg: float) -> np.ndarray:
    x = data.binary_csr.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + reg * np.eye(data.n_items))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_weights_match_closed_form(data: Interactions, dtype: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease_module, "_SYMMETRISE_ROWS", 7)  # several blocks of the inverse
    model = EASE(reg=15.0, dtype=dtype, weight_exponent=0.0).fit(data)
    expected = _closed_form(data, 15.0)
    assert model.B_ == pytest.approx(expected, abs=1e-5 if dtype == "float64" else 1e-4)
    assert not np.diag(model.B_).any()
    users = np.arange(data.n_users)
    assert model.score(users) == pytest.approx(data.binary_csr.toarray() @ expected, abs=1e-4)


def test_weights_solve_the_constrained_least_squares(data: Interactions) -> None:
    """Stationarity of |X - XB|^2 + reg |B|^2 with diag(B) = 0: off the diagonal,
    (X^T X + reg I) B = X^T X."""
    reg = 30.0
    model = EASE(reg=reg, weight_exponent=0.0).fit(data)
    x = data.binary_csr.toarray().astype(np.float64)
    gram = x.T @ x
    residual = (gram + reg * np.eye(len(gram))) @ model.B_ - gram
    off_diagonal = ~np.eye(len(gram), dtype=bool)
    assert np.abs(residual[off_diagonal]).max() < 1e-3


def test_similar_items_read_b(data: Interactions) -> None:
    model = EASE(reg=10.0, weight_exponent=0.0).fit(data)
    items, scores = model.similar_items([3], k=4)
    row = model.B_[3].copy()
    row[3] = -np.inf
    assert items[0].tolist() == np.argsort(-row, kind="stable")[:4].tolist()
    assert scores[0] == pytest.approx(np.sort(row)[::-1][:4])


def test_invalid_parameters_and_memory_limit(data: Interactions,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ParameterError, match=r"^reg: must be a finite number > 0, got 0.0$"):
        EASE(reg=0.0)
    with pytest.raises(ParameterError, match="^dtype: must be one of 'float32', 'float64'"):
        EASE(dtype="float16")  # type: ignore[arg-type]
    monkeypatch.setattr(ease_module, "_physical_memory", lambda: 1024)
    with pytest.raises(MemoryError, match="restrict the catalogue"):
        EASE().fit(data)


class TestEASEVariants(ModelContract):
    def make_model(self, seed: int = 0) -> EASE:
        return EASE(reg=5.0, dropout=0.3, weight_exponent=0.25)


@pytest.mark.parametrize(("dropout", "exponent"), [(0.25, 0.0), (0.0, 0.3), (0.5, 0.5)])
def test_variants_match_closed_form(data: Interactions, dropout: float, exponent: float) -> None:
    """EDLAE: Lambda = reg I + p/(1-p) diag(G); weighting: EASE on X diag(n_j^-beta),
    scores Xw @ B."""
    reg = 12.0
    x = data.binary_csr.toarray().astype(np.float64)
    w = np.maximum(x.sum(0), 1.0) ** -exponent
    xw = x * w[None, :]
    gram = xw.T @ xw
    p = np.linalg.inv(gram + np.diag(reg + dropout / (1 - dropout) * np.diag(gram)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(reg=reg, dropout=dropout, weight_exponent=exponent).fit(data)
    assert model.B_ == pytest.approx(b, abs=1e-5)
    assert model.score(np.arange(data.n_users)) == pytest.approx(xw @ b, abs=1e-4)
    if exponent == 0.0:
        assert model.item_weights_ is None
    plain = EASE(reg=reg, weight_exponent=0.0).fit(data)
    assert not np.allclose(model.B_, plain.B_)


def test_variant_parameters_are_checked(data: Interactions) -> None:
    with pytest.raises(ValueError, match="dropout"):
        EASE(dropout=1.0).fit(data)
    with pytest.raises(ValueError, match="weight_exponent"):
        EASE(weight_exponent=-0.1).fit(data)
