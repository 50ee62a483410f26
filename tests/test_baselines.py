"""Baselines: the model contract plus hand-checked behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data import Interactions
from recforge.models import (
    BaselineOnly,
    GlobalMean,
    ItemMean,
    MostPopular,
    RandomRecommender,
    UserMean,
)
from recforge.testing import ModelContract


class TestRandom(ModelContract):
    def make_model(self, seed: int = 0) -> RandomRecommender:
        return RandomRecommender(seed=seed)


class TestMostPopular(ModelContract):
    def make_model(self, seed: int = 0) -> MostPopular:
        return MostPopular()


class TestGlobalMean(ModelContract):
    def make_model(self, seed: int = 0) -> GlobalMean:
        return GlobalMean()


class TestUserMean(ModelContract):
    def make_model(self, seed: int = 0) -> UserMean:
        return UserMean(damping=1.0)


class TestItemMean(ModelContract):
    def make_model(self, seed: int = 0) -> ItemMean:
        return ItemMean(damping=2.0)


class TestBaselineOnly(ModelContract):
    def make_model(self, seed: int = 0) -> BaselineOnly:
        return BaselineOnly()


@pytest.fixture
def tiny() -> Interactions:
    frame = pd.DataFrame({
        "user": ["a", "a", "b", "b", "c"],
        "item": ["x", "y", "x", "z", "x"],
        "rating": [5.0, 3.0, 4.0, 1.0, 2.0],
    })
    return Interactions.from_pandas(frame)


def test_means_by_hand(tiny: Interactions) -> None:
    a, b = tiny.user_map.to_index(["a", "b"])
    x, y, z = tiny.item_map.to_index(["x", "y", "z"])
    assert GlobalMean().fit(tiny).predict([a], [y])[0] == pytest.approx(3.0)
    assert UserMean().fit(tiny).predict([a, b], [z, z]) == pytest.approx([4.0, 2.5])
    assert ItemMean().fit(tiny).predict([a, a], [x, z]) == pytest.approx([11 / 3, 1.0])
    # damping 1 shrinks item z (one rating of 1) towards the global mean 3: (1 + 3) / 2
    assert ItemMean(damping=1.0).fit(tiny).predict([a], [z])[0] == pytest.approx(2.0)


def test_most_popular_order_and_ties(tiny: Interactions) -> None:
    model = MostPopular().fit(tiny)
    items, scores = model.recommend([-1], k=3)
    x, y, z = tiny.item_map.to_index(["x", "y", "z"])
    assert items[0].tolist() == [x, y, z]  # y and z tie on one rating: lower index first
    assert scores[0].tolist() == [3.0, 1.0, 1.0]
    items, _ = model.recommend(tiny.user_map.to_index(["a"]), k=3)
    assert items[0].tolist() == [z, -1, -1]  # only z is unseen; the rest is padding


def test_baseline_only_matches_closed_form_one_epoch(tiny: Interactions) -> None:
    model = BaselineOnly(reg_user=0.0, reg_item=0.0, epochs=1).fit(tiny)
    mu = 3.0
    r = tiny.ratings - mu
    b_i = np.bincount(tiny.items, weights=r) / np.bincount(tiny.items)
    b_u = np.bincount(tiny.users, weights=r - b_i[tiny.items]) / np.bincount(tiny.users)
    pred = model.predict(tiny.users, tiny.items)
    expected = np.clip(mu + b_u[tiny.users] + b_i[tiny.items], 1.0, 5.0)
    assert pred == pytest.approx(expected, abs=1e-5)


def test_rating_models_need_ratings() -> None:
    implicit = Interactions.from_arrays(["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="needs explicit ratings"):
        BaselineOnly().fit(implicit)
    MostPopular().fit(implicit)  # ranking baselines are fine without ratings


def test_random_is_seeded_and_batch_independent(tiny: Interactions) -> None:
    model = RandomRecommender(seed=5).fit(tiny)
    whole = model.score([0, 1, 2])
    assert np.array_equal(whole[1], model.score([1])[0])
    other = RandomRecommender(seed=6).fit(tiny).score([0, 1, 2])
    assert not np.array_equal(whole, other)
