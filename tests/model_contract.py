"""The contract every recforge model passes.

A model's test module subclasses `ModelContract` and defines `make_model(seed)`; the class
then runs fit, recommend, exclude-seen, cold users, predict, save/load round trip, seeded
determinism and parameter checks against a small dataset with ratings and timestamps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import Interactions
from recforge.models import NotFittedError, Recommender, get_model_class


def contract_data(seed: int = 7, n_users: int = 60, n_items: int = 40) -> Interactions:
    """A small explicit dataset with low-rank structure, ratings 1-5 and timestamps."""
    rng = np.random.default_rng(seed)
    u_f = rng.normal(size=(n_users, 3))
    i_f = rng.normal(size=(n_items, 3))
    affinity = u_f @ i_f.T + np.log1p(np.arange(n_items))[::-1] * 0.5
    counts = rng.integers(2, 20, size=n_users)
    counts[:3] = 1  # users with a single interaction
    rows = []
    for u in range(n_users):  # fixture construction only, not library code
        p = np.exp(affinity[u] - affinity[u].max())
        items = rng.choice(n_items, size=counts[u], replace=False, p=p / p.sum())
        rows.append(np.column_stack([np.full(len(items), u), items]))
    pairs = np.vstack(rows)
    ratings = np.clip(np.round(3 + affinity[pairs[:, 0], pairs[:, 1]] / 2), 1, 5)
    frame = pd.DataFrame({
        "user": pairs[:, 0] + 1,
        "item": pairs[:, 1] + 1,
        "rating": ratings,
        "timestamp": rng.integers(1_000_000, 2_000_000, size=len(pairs)),
    })
    return Interactions.from_pandas(frame, item_ids=np.arange(1, n_items + 2), name="contract")


class ModelContract:
    """Shared checks; subclasses set `make_model`."""

    #: subclasses may set False for models whose `recommend` is random by design
    deterministic_given_seed = True

    def make_model(self, seed: int = 0) -> Recommender:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Interactions:
        return contract_data()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Interactions) -> Recommender:
        return cls().make_model(0).fit(data)

    def test_fit_returns_self_and_sets_state(self, data: Interactions) -> None:
        model = self.make_model(0)
        assert model.fit(data) is model
        assert model.n_users_ == data.n_users and model.n_items_ == data.n_items

    def test_unfitted_model_raises(self) -> None:
        with pytest.raises(NotFittedError):
            self.make_model(0).recommend([0], k=3)

    def test_registered_under_its_name(self) -> None:
        model = self.make_model(0)
        assert get_model_class(model.name) is type(model)

    def test_params_round_trip(self) -> None:
        model = self.make_model(0)
        params = model.get_params()
        clone = type(model)(**params)
        assert clone.get_params() == params
        with pytest.raises(ValueError, match="no parameter"):
            model.set_params(not_a_parameter=1)

    def test_recommend_shapes_and_order(self, fitted: Recommender, data: Interactions) -> None:
        users = np.arange(data.n_users)
        items, scores = fitted.recommend(users, k=5)
        assert items.shape == scores.shape == (data.n_users, 5)
        valid = items >= 0
        assert valid[:, 0].all()
        assert ((items < data.n_items) | ~valid).all()
        finite = np.where(np.isfinite(scores), scores, -1e30)
        assert (np.diff(finite, axis=1) <= 1e-6).all()
        for row in items:  # no duplicates within a list
            kept = row[row >= 0]
            assert len(np.unique(kept)) == len(kept)

    def test_exclude_seen(self, fitted: Recommender, data: Interactions) -> None:
        users = np.arange(data.n_users)
        items, _ = fitted.recommend(users, k=10, exclude_seen=True)
        seen = data.binary_csr
        hits = np.asarray(seen[np.repeat(users, 10), np.where(items >= 0, items, 0).ravel()])
        assert not (hits.ravel()[items.ravel() >= 0] > 0).any()

    def test_include_seen_returns_full_lists(self, fitted: Recommender, data: Interactions) -> None:
        items, _ = fitted.recommend(np.arange(5), k=data.n_items, exclude_seen=False)
        assert (items >= 0).all()

    def test_unknown_and_cold_users_fall_back(self, fitted: Recommender, data: Interactions) -> None:
        cold = np.array([-1, data.n_users + 10])
        items, scores = fitted.recommend(cold, k=5)
        assert (items >= 0).all() and np.isfinite(scores).all()
        popular = np.argsort(-fitted.popularity_, kind="stable")[:5]
        assert (items == popular).all()
        preds = fitted.predict(cold, np.array([0, 1]))
        assert np.allclose(preds, fitted.fallback_prediction)

    def test_predict_shape_and_finite(self, fitted: Recommender, data: Interactions) -> None:
        preds = fitted.predict(data.users[:50], data.items[:50])
        assert preds.shape == (50,) and np.isfinite(preds).all()

    def test_score_matches_predict(self, fitted: Recommender, data: Interactions) -> None:
        if fitted.predicts_ratings:
            return  # rating models clip predict to the rating range; scores are unclipped
        users = data.users[:30]
        items = data.items[:30]
        full = fitted.score(users)
        assert np.allclose(full[np.arange(30), items], fitted.predict(users, items), atol=1e-4)

    def test_save_load_round_trip(self, fitted: Recommender, tmp_path: Path) -> None:
        path = fitted.save(tmp_path / "model")
        loaded = Recommender.load(path)
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        users = np.arange(-1, fitted.n_users_)
        a_items, a_scores = fitted.recommend(users, k=7)
        b_items, b_scores = loaded.recommend(users, k=7)
        assert np.array_equal(a_items, b_items)
        assert np.array_equal(a_scores, b_scores)

    def test_same_seed_same_output(self, data: Interactions) -> None:
        if not self.deterministic_given_seed:
            return
        a = self.make_model(3).fit(data).recommend(np.arange(data.n_users), k=5)
        b = self.make_model(3).fit(data).recommend(np.arange(data.n_users), k=5)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])

    def test_similar_items_when_available(self, fitted: Recommender) -> None:
        # models without item vectors may still override similar_items (e.g. item-kNN)
        try:
            items, _ = fitted.similar_items([0, 1], k=3)
        except NotImplementedError:
            assert fitted.item_vectors() is None
            return
        assert items.shape == (2, 3)
        assert 0 not in items[0] and 1 not in items[1]
