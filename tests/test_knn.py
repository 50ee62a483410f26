"""kNN models: the model contract plus estimates checked against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import require_module

from recforge.data import Interactions
from recforge.errors import ParameterError
from recforge.models import BaselineOnly, get_model_class
from recforge.models.neighbours.knn import ItemKNN, ItemKNNImplicit, UserKNN, UserKNNImplicit
from recforge.models.neighbours.similarity import corated_similarity, vector_similarity
from recforge.testing import ModelContract, contract_data


class TestUserKNN(ModelContract):
    def make_model(self, seed: int = 0) -> UserKNN:
        return UserKNN(k=10)


class TestItemKNN(ModelContract):
    def make_model(self, seed: int = 0) -> ItemKNN:
        return ItemKNN(k=10, similarity="adjusted-cosine", prediction="mean-centred")


class TestItemKNNImplicit(ModelContract):
    def make_model(self, seed: int = 0) -> ItemKNNImplicit:
        return ItemKNNImplicit(k=10, weighting="bm25")


class TestUserKNNImplicit(ModelContract):
    def make_model(self, seed: int = 0) -> UserKNNImplicit:
        return UserKNNImplicit(k=10, similarity="jaccard", weighting="none")


@pytest.fixture(scope="module")
def data() -> Interactions:
    """Contract data with continuous ratings, so that no two similarities tie."""
    base = contract_data()
    noise = np.random.default_rng(1).uniform(-0.4, 0.4, len(base))
    frame = pd.DataFrame({"user": base.users, "item": base.items,
                          "rating": base.ratings + noise})
    return Interactions.from_pandas(frame)


def _reference_estimate(model: UserKNN | ItemKNN, data: Interactions, user: int,
                        item: int) -> float:
    """The kNN estimate of one (user, item) pair, computed straight from its definition."""
    sim = model.similarity_.toarray()
    rated = data.subset(data.items == item) if model.user_based else data.subset(data.users == user)
    others = rated.users if model.user_based else rated.items
    target = user if model.user_based else item
    sims = sim[target, others]
    offset = model.user_offset_[rated.users] + model.item_offset_[rated.items]
    order = np.argsort(-sims, kind="stable")[:model.k]
    order = order[sims[order] > 0]
    base = model.user_offset_[user] + model.item_offset_[item]
    if len(order) < max(model.min_k, 1):
        return float(base)
    return float(base + (sims[order] * (rated.ratings - offset)[order]).sum() / sims[order].sum())


@pytest.mark.parametrize("cls", [UserKNN, ItemKNN])
@pytest.mark.parametrize("prediction", ["mean-centred", "baseline-centred"])
def test_estimates_match_definition(data: Interactions, cls: type, prediction: str) -> None:
    model = cls(k=4, similarity="pearson", prediction=prediction, shrinkage=0.0).fit(data)
    rng = np.random.default_rng(2)
    users = rng.integers(0, data.n_users, 40)
    items = rng.integers(0, data.n_items, 40)
    expected = [_reference_estimate(model, data, u, i) for u, i in zip(users, items)]
    assert model._predict(users, items) == pytest.approx(np.array(expected), abs=1e-4)


def test_offsets_follow_the_prediction_variant(data: Interactions) -> None:
    baseline = BaselineOnly().fit(data)
    model = ItemKNN(prediction="baseline-centred").fit(data)
    assert model.user_offset_ == pytest.approx(baseline.user_term_)
    assert model.item_offset_ == pytest.approx(baseline.item_term_)
    model = UserKNN(prediction="mean-centred").fit(data)
    means = np.bincount(data.users, data.ratings) / np.bincount(data.users)
    assert model.user_offset_ == pytest.approx(means, abs=1e-5)
    assert not model.item_offset_.any()


def _item_matrix(data: Interactions, values: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((values, (data.items, data.users)), shape=(data.n_items, data.n_users))


def test_similarity_bases(data: Interactions) -> None:
    """pearson-baseline is the co-rated cosine of baseline residuals (with shrinkage);
    adjusted cosine that of ratings centred by the user's mean."""
    baseline = BaselineOnly().fit(data)
    residual = data.ratings - baseline.user_term_[data.users] - baseline.item_term_[data.items]
    expected = corated_similarity(_item_matrix(data, residual), "cosine", shrinkage=50.0)
    model = ItemKNN(similarity="pearson-baseline", shrinkage=50.0).fit(data)
    assert model.similarity_.toarray() == pytest.approx(expected.toarray(), abs=1e-5)
    user_mean = np.bincount(data.users, data.ratings) / np.bincount(data.users)
    centred = _item_matrix(data, data.ratings - user_mean[data.users])
    expected = corated_similarity(centred, "cosine")
    model = ItemKNN(similarity="adjusted-cosine", shrinkage=0.0).fit(data)
    assert model.similarity_.toarray() == pytest.approx(expected.toarray(), abs=1e-5)


def test_min_k_falls_back_to_offset(data: Interactions) -> None:
    model = UserKNN(k=5, min_k=1000, prediction="baseline-centred").fit(data)
    users, items = data.users[:20], data.items[:20]
    offset = model.user_offset_[users] + model.item_offset_[items]
    assert model._predict(users, items) == pytest.approx(offset, abs=1e-5)


def test_max_neighbors_prunes_the_pool(data: Interactions) -> None:
    model = ItemKNN(max_neighbors=3).fit(data)
    assert np.diff(model.similarity_.indptr).max() <= 3
    assert np.isfinite(model.predict(data.users, data.items)).all()


def test_invalid_parameters(data: Interactions) -> None:
    with pytest.raises(ParameterError, match="^similarity: must be one of .*, got 'adjusted"):
        UserKNN(similarity="adjusted-cosine")
    assert ItemKNN(similarity="adjusted-cosine").similarity == "adjusted-cosine"
    with pytest.raises(ParameterError, match="^prediction: must be one of"):
        ItemKNN(prediction="z-score")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^weighting: similarity 'jaccard'"):
        ItemKNNImplicit(similarity="jaccard", weighting="tfidf").fit(data)
    with pytest.raises(ParameterError, match="^alpha: the asymmetric cosine"):
        ItemKNNImplicit(similarity="dot", alpha=0.3).fit(data)


@pytest.mark.parametrize("cls", [UserKNN, ItemKNN])
@pytest.mark.parametrize("measure", ["pearson", "msd", "cosine"])
def test_matches_surprise(data: Interactions, cls: type, measure: str) -> None:
    """Same estimates as Surprise's KNNWithMeans on unrated pairs (a benchmark-only extra)."""
    surprise = require_module("surprise")
    frame = pd.DataFrame({"u": data.users, "i": data.items, "r": data.ratings})
    trainset = surprise.Dataset.load_from_df(
        frame, surprise.Reader(rating_scale=(0, 6))).build_full_trainset()
    k = 100 if measure == "cosine" else 5  # co-rated cosine ties at 1.0: compare without cut
    reference = surprise.KNNWithMeans(k=k, verbose=False, sim_options={
        "name": measure, "user_based": cls is UserKNN})
    reference.fit(trainset)
    model = cls(k=k, similarity=measure, prediction="mean-centred", shrinkage=0.0).fit(data)
    users = np.repeat(np.arange(data.n_users), data.n_items)
    items = np.tile(np.arange(data.n_items), data.n_users)
    unrated = np.asarray(data.binary_csr[users, items]).ravel() == 0  # Surprise counts itself
    users, items = users[unrated][::7], items[unrated][::7]
    expected = [reference.predict(u, i, clip=False).est for u, i in zip(users, items)]
    assert model._predict(users, items) == pytest.approx(np.array(expected), abs=1e-4)


@pytest.mark.parametrize("cls", [ItemKNNImplicit, UserKNNImplicit])
def test_implicit_scores_are_sparse_products(data: Interactions, cls: type) -> None:
    extra = {"alpha": 0.5, "neighbourhood": "history"} if cls is ItemKNNImplicit else {}
    model = cls(k=5, similarity="cosine", weighting="none", **extra).fit(data)
    binary = data.binary_csr.toarray()
    entities = binary if cls is UserKNNImplicit else binary.T
    pruned = vector_similarity(entities, "cosine", k=5).toarray()
    assert np.diff(model.similarity_.indptr).max() <= 5
    assert model.similarity_.toarray() == pytest.approx(pruned)
    expected = pruned @ binary if cls is UserKNNImplicit else binary @ pruned
    assert model.score(np.arange(data.n_users)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_candidate_neighbourhood_scores_with_the_transpose(data: Interactions,
                                                           alpha: float) -> None:
    """neighbourhood="candidate": score(u, j) = sum over history items among j's k nearest
    neighbours of s(j, i), i.e. X @ S^T with S's rows pruned to k."""
    model = ItemKNNImplicit(k=4, similarity="cosine", weighting="none", alpha=alpha,
                            neighbourhood="candidate").fit(data)
    binary = data.binary_csr.toarray()
    pruned = vector_similarity(binary.T, "cosine", k=4, alpha=alpha).toarray()
    assert model.similarity_.toarray() == pytest.approx(pruned)
    assert model.score(np.arange(data.n_users)) == pytest.approx(binary @ pruned.T, abs=1e-5)
    history = ItemKNNImplicit(k=4, similarity="cosine", weighting="none", alpha=alpha,
                              neighbourhood="history").fit(data)
    assert not np.allclose(history.score(np.arange(data.n_users)), binary @ pruned.T)
    with pytest.raises(ParameterError, match="^neighbourhood: must be one of"):
        ItemKNNImplicit(neighbourhood="user")  # type: ignore[arg-type]


class TestItemKNNImplicitCandidate(ModelContract):
    def make_model(self, seed: int = 0) -> ItemKNNImplicit:
        return ItemKNNImplicit(k=10, similarity="cosine", weighting="none", alpha=0.3,
                               neighbourhood="candidate")


def test_item_similar_items_read_the_similarity_matrix(data: Interactions) -> None:
    model = ItemKNNImplicit(k=5).fit(data)
    items, scores = model.similar_items([0, 1], k=3)
    row = model.similarity_[0].toarray().ravel()
    assert items[0, 0] == int(np.argmax(row)) and scores[0, 0] == pytest.approx(row.max())
    with pytest.raises(NotImplementedError):
        UserKNN().fit(data).similar_items([0], k=3)


def test_registry_flags() -> None:
    assert get_model_class("item-knn").requires_ratings
    assert get_model_class("user-knn").predicts_ratings
    assert not get_model_class("item-knn-implicit").requires_ratings
    assert not get_model_class("user-knn-implicit").predicts_ratings
