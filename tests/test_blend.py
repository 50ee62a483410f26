"""Linear blend: the model contract, ridge weights, no peeking outside train, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recforge.data import Interactions
from recforge.models import Recommender
from recforge.models.factorization.blend import LinearBlend, ridge_weights
from recforge.testing import ModelContract, contract_data

FAST = {"biased-mf": {"factors": 6, "epochs": 5}, "truncated-svd": {"factors": 3},
        "autorec": {"hidden": 6, "epochs": 2, "lbfgs_steps": 5}}


class TestLinearBlend(ModelContract):
    def make_model(self, seed: int = 0) -> LinearBlend:
        return LinearBlend(models=["biased-mf", "truncated-svd", "baseline-only"], params=FAST,
                           seed=seed)


def test_ridge_recovers_a_linear_combination() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = 0.5 + x @ np.array([0.2, 0.7, -0.1])
    weights, intercept = ridge_weights(x, y, alpha=0.0)
    assert np.allclose(weights, [0.2, 0.7, -0.1]) and intercept == pytest.approx(0.5)
    shrunk, _ = ridge_weights(x, y, alpha=1e4)
    assert np.abs(shrunk).sum() < np.abs(weights).sum()


def test_predictions_are_the_weighted_member_predictions() -> None:
    data = contract_data()
    blend = LinearBlend(models=["biased-mf", "baseline-only"], params=FAST).fit(data)
    members = blend._members
    users, items = data.users[:25], data.items[:25]
    parts = np.column_stack([m.predict(users, items) for m in members])
    expected = np.clip(parts @ blend.weights_ + blend.intercept_, 1, 5)
    assert np.allclose(blend.predict(users, items), expected, atol=1e-5)
    assert 0 < blend.validation_rmse_ < 2


def test_fit_sees_only_the_training_data(monkeypatch: pytest.MonkeyPatch) -> None:
    data = contract_data()
    seen: list[Interactions] = []
    original = Recommender.fit

    def spy(self: Recommender, train: Interactions, valid: Interactions | None = None):
        seen.append(train)
        return original(self, train, valid)

    monkeypatch.setattr(Recommender, "fit", spy)
    LinearBlend(models=["baseline-only"], refit=False).fit(data)
    assert len(seen) == 2  # the blend itself, then its one member on the carved-out part
    member_train = seen[1]
    assert len(member_train) < len(data)
    keys = set(zip(data.users.tolist(), data.items.tolist()))
    assert set(zip(member_train.users.tolist(), member_train.items.tolist())) <= keys


def test_refit_uses_all_training_data() -> None:
    data = contract_data()
    blend = LinearBlend(models=["baseline-only"]).fit(data)
    assert blend._members[0].n_users_ == data.n_users
    assert np.array_equal(blend._members[0].user_activity_, data.user_counts)


def test_save_load_keeps_members(tmp_path: Path) -> None:
    data = contract_data()
    blend = LinearBlend(models=["truncated-svd", "biased-mf"], params=FAST).fit(data)
    loaded = Recommender.load(blend.save(tmp_path / "blend"))
    users, items = data.users[:30], data.items[:30]
    assert np.array_equal(loaded.predict(users, items), blend.predict(users, items))
    assert [type(m) for m in loaded._members] == [type(m) for m in blend._members]


def test_rejects_ranking_members() -> None:
    with pytest.raises(ValueError, match="does not predict ratings"):
        LinearBlend(models=["most-popular"]).fit(contract_data())
