"""`ModelContract`: the checks every recforge model passes, for your own models too.

Subclass `ModelContract` in a pytest test module and define ``make_model(seed)``; pytest then
runs fit, recommend, exclude-seen, cold users, predict, the scoring contract (candidates,
queries with a fresh history, what the model consumes), every protocol the model can be
evaluated by, the save/load round trip, seeded determinism and parameter checks against a
small dataset with ratings and timestamps (`contract_data`)::

    from recforge.testing import ModelContract

    class TestMyModel(ModelContract):
        def make_model(self, seed=0):
            return MyModel(seed=seed)

Only pytest runs the checks (``tmp_path`` is its fixture); this module does not import it.
The model is fitted once per test class (`fitted`), like a class-scoped fixture.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.data.splits import leave_last_out
from recforge.errors import InputError
from recforge.evaluation.evaluator import Evaluator, check_compatible
from recforge.evaluation.protocols import make_protocol
from recforge.models.base import CAPABILITIES, NotFittedError, Recommender
from recforge.models.registry import get_model_class

#: the protocols every model is evaluated by when it can be (`Evaluator` refuses otherwise)
PROTOCOLS = ("full", "sampled-9", "next-item", "next-item-sampled-9")


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


@contextlib.contextmanager
def raises(kind: type[BaseException], match: str) -> Iterator[None]:
    """Assert that the block raises ``kind`` with a message matching ``match``."""
    try:
        yield
    except kind as exc:
        assert re.search(match, str(exc)), f"{exc!r} does not match {match!r}"
    else:
        raise AssertionError(f"{kind.__name__} not raised")


class ModelContract:
    """Shared checks; subclasses define `make_model`."""

    #: subclasses may set False for models whose `recommend` is random by design
    deterministic_given_seed = True
    _fitted: ClassVar[dict[type, Recommender]] = {}

    def make_model(self, seed: int = 0) -> Recommender:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def data(self) -> Interactions:
        """The contract's dataset (`contract_data`)."""
        return _contract_dataset()

    @property
    def fitted(self) -> Recommender:
        """``make_model(0)`` fitted on `data`, once per test class."""
        cls = type(self)
        if cls not in ModelContract._fitted:
            ModelContract._fitted[cls] = self.make_model(0).fit(self.data)
        return ModelContract._fitted[cls]

    def fresh_queries(self) -> QueryBatch:
        """An anonymous query and a known user's, both with a history newer than the data
        (known and unknown items) and a request time after it."""
        data = self.data
        later = int(data.timestamps.max()) + 100
        return QueryBatch.from_ids([None, data.user_map.ids[4]], [[3, 5, 999], [7]],
                                   user_map=data.user_map, item_map=data.item_map,
                                   timestamps=[[later, later + 1, later + 2], [later]],
                                   context={"timestamp": np.array([later + 10, later + 10])})

    # ------------------------------------------------------------------ fit and parameters
    def test_fit_returns_self_and_sets_state(self) -> None:
        model = self.make_model(0)
        assert model.fit(self.data) is model
        assert model.n_users_ == self.data.n_users and model.n_items_ == self.data.n_items

    def test_unfitted_model_raises(self) -> None:
        with raises(NotFittedError, "not fitted"):
            self.make_model(0).recommend([0], k=3)

    def test_registered_under_its_name(self) -> None:
        model = self.make_model(0)
        assert get_model_class(model.name) is type(model)

    def test_declares_what_it_consumes(self) -> None:
        model = self.make_model(0)
        assert model.consumes <= CAPABILITIES
        assert ("ratings" in model.consumes) >= model.requires_ratings

    def test_params_round_trip(self) -> None:
        model = self.make_model(0)
        params = model.get_params()
        clone = type(model)(**params)
        assert clone.get_params() == params
        with raises(ValueError, "no parameter"):
            model.set_params(not_a_parameter=1)

    # ------------------------------------------------------------------ recommend and predict
    def test_recommend_shapes_and_order(self) -> None:
        users = np.arange(self.data.n_users)
        items, scores = self.fitted.recommend(users, k=5)
        assert items.shape == scores.shape == (self.data.n_users, 5)
        valid = items >= 0
        assert valid[:, 0].all()
        assert ((items < self.data.n_items) | ~valid).all()
        finite = np.where(np.isfinite(scores), scores, -1e30)
        assert (np.diff(finite, axis=1) <= 1e-6).all()
        for row in items:  # no duplicates within a list
            kept = row[row >= 0]
            assert len(np.unique(kept)) == len(kept)

    def test_exclude_seen(self) -> None:
        users = np.arange(self.data.n_users)
        items, _ = self.fitted.recommend(users, k=10, exclude_seen=True)
        seen = self.data.binary_csr
        hits = np.asarray(seen[np.repeat(users, 10), np.where(items >= 0, items, 0).ravel()])
        assert not (hits.ravel()[items.ravel() >= 0] > 0).any()

    def test_include_seen_returns_full_lists(self) -> None:
        items, _ = self.fitted.recommend(np.arange(5), k=self.data.n_items, exclude_seen=False)
        assert (items >= 0).all()

    def test_unknown_and_cold_users_fall_back(self) -> None:
        fitted = self.fitted
        cold = np.array([-1, self.data.n_users + 10])
        items, scores = fitted.recommend(cold, k=5)
        assert (items >= 0).all() and np.isfinite(scores).all()
        if fitted.cold_start == "popularity" and "timestamps" not in fitted.consumes:
            popular = np.argsort(-fitted.popularity_, kind="stable")[:5]
            assert (items == popular).all()
        preds = fitted.predict(cold, np.array([0, 1]))
        assert np.allclose(preds, fitted.fallback_prediction)

    def test_predict_shape_and_finite(self) -> None:
        preds = self.fitted.predict(self.data.users[:50], self.data.items[:50])
        assert preds.shape == (50,) and np.isfinite(preds).all()

    def test_score_matches_predict(self) -> None:
        fitted = self.fitted
        if fitted.predicts_ratings:
            return  # rating models clip predict to the rating range; scores are unclipped
        users, items = self.data.users[:30], self.data.items[:30]
        full = fitted.score(users)
        assert np.allclose(full[np.arange(30), items], fitted.predict(users, items), atol=1e-4)

    def test_recommend_is_the_top_of_score(self) -> None:
        users = np.arange(-1, 10)
        full = self.fitted.score(users)
        items, scores = self.fitted.recommend(users, k=5, exclude_seen=False)
        assert np.allclose(np.take_along_axis(full, items, axis=1), scores, atol=1e-6)
        assert np.allclose(-np.sort(-full, axis=1)[:, :5], scores, atol=1e-6)

    # ------------------------------------------------------------------ the scoring contract
    def test_score_candidates_padded_and_ragged(self) -> None:
        users = np.arange(6)
        full = self.fitted.score(users)
        padded = np.array([[0, 5, 2], [1, -1, -1], [3, 3, 7], [9, 8, -1], [4, 0, 1], [2, 6, 5]])
        scores = self.fitted.score(users, padded)
        inside = padded >= 0
        rows = np.broadcast_to(users[:, None], padded.shape)
        assert np.allclose(scores[inside], full[rows[inside], padded[inside]], atol=1e-5)
        assert np.isneginf(scores[~inside]).all()
        ragged = [row[row >= 0] for row in padded]
        assert np.array_equal(self.fitted.score(users, ragged), scores)

    def test_user_indices_are_their_training_history(self) -> None:
        users = np.arange(-1, self.data.n_users)
        queries = self.fitted.training_history(users)
        assert np.array_equal(self.fitted.score(queries), self.fitted.score(users))

    def test_queries_with_a_fresh_history(self) -> None:
        queries = self.fresh_queries()
        scores = self.fitted.score(queries)
        assert scores.shape == (2, self.data.n_items) and not np.isnan(scores).any()
        assert np.array_equal(self.fitted.score(queries), scores)
        items, _ = self.fitted.recommend(queries, k=self.data.n_items, exclude_seen=True)
        for q in range(len(queries)):
            assert not set(items[q].tolist()) & set(queries.history(q).tolist())
        assert (items[0] >= 0).sum() == self.data.n_items - len(queries.history(0))

    def test_evaluated_by_every_protocol_it_can_be(self) -> None:
        split = leave_last_out(self.data)
        for name in PROTOCOLS:
            protocol = make_protocol(name)
            evaluator = Evaluator(split.train, split.test, ["ndcg@5", "auc"], protocol=protocol)
            try:
                check_compatible(self.fitted, protocol, split.train, split.test)
            except InputError:
                with raises(InputError, "cannot be evaluated by protocol"):
                    evaluator.evaluate(self.fitted)
                continue
            metrics = evaluator.evaluate(self.fitted).metrics
            assert all(0 <= value <= 1 for value in metrics.values()), (name, metrics)

    # ------------------------------------------------------------------ persistence
    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        fitted = self.fitted
        loaded = Recommender.load(fitted.save(tmp_path / "model"))
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        users = np.arange(-1, fitted.n_users_)
        a_items, a_scores = fitted.recommend(users, k=7)
        b_items, b_scores = loaded.recommend(users, k=7)
        assert np.array_equal(a_items, b_items)
        assert np.array_equal(a_scores, b_scores)
        queries = self.fresh_queries()
        assert np.array_equal(fitted.score(queries), loaded.score(queries))
        candidates = [[0, 3], [5]]
        assert np.array_equal(fitted.score([0, 1], candidates), loaded.score([0, 1], candidates))

    def test_same_seed_same_output(self) -> None:
        if not self.deterministic_given_seed:
            return
        users = np.arange(self.data.n_users)
        a = self.make_model(3).fit(self.data).recommend(users, k=5)
        b = self.make_model(3).fit(self.data).recommend(users, k=5)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])

    def test_similar_items_when_available(self) -> None:
        fitted = self.fitted
        # models without item vectors may still override similar_items (e.g. item-kNN)
        try:
            items, _ = fitted.similar_items([0, 1], k=3)
        except NotImplementedError:
            assert fitted.item_vectors() is None
            return
        assert items.shape == (2, 3)
        assert 0 not in items[0] and 1 not in items[1]


@functools.cache
def _contract_dataset() -> Interactions:
    return contract_data()
