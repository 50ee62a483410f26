"""Baselines: random, most popular, global/user/item means and regularised biases."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.registry import register
from recforge.params import EPOCHS, PENALTY, SEED, Rule


def _hash_uniform(seed: int, users: np.ndarray, n_items: int) -> np.ndarray:
    """Uniform [0, 1) values that depend only on (seed, user, item): splitmix64 mixing."""
    with np.errstate(over="ignore"):
        key = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
               + users.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
               + np.arange(n_items, dtype=np.uint64)[None, :] * np.uint64(0x94D049BB133111EB))
        key ^= key >> np.uint64(30)
        key *= np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(27)
        key *= np.uint64(0x94D049BB133111EB)
        key ^= key >> np.uint64(31)
    return ((key >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24))


@register("random")
class RandomRecommender(Recommender):
    """Uniformly random scores; a user's scores depend only on ``seed`` and the user.

    Paper: none (a reference point).
    Hyperparameters (defaults): none; training (`recforge.nn.TrainingConfig`, the rest at its
        defaults): its defaults.
    Defaults: ``seed`` only; nothing to tune.
    Consumes: interactions.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"seed": SEED}

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return _hash_uniform(self.seed, users, self.n_items_)


@register("most-popular")
class MostPopular(Recommender):
    """Scores every item by its number of training interactions (the same list for everyone).

    Paper: none (a reference point).
    Hyperparameters (defaults): none.
    Defaults: no hyperparameters.
    Consumes: interactions.
    """

    def __init__(self) -> None:
        pass

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), self.n_items_))


class _MeanModel(Recommender):
    """Rating baselines whose prediction for (u, i) is ``user_term_[u] + item_term_[i]``."""

    requires_ratings = True
    predicts_ratings = True

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_term_[users, None] + self.item_term_[None, :]

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.user_term_[users] + self.item_term_[items]


def _damped_means(keys: np.ndarray, values: np.ndarray, n: int, prior: float,
                  damping: float) -> np.ndarray:
    """Per-key mean of ``values`` shrunk towards ``prior``: (sum + damping*prior)/(count + damping)."""
    sums = np.bincount(keys, weights=values, minlength=n)
    counts = np.bincount(keys, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums + damping * prior) / (counts + damping)
    return np.where(counts + damping > 0, means, prior).astype(np.float32)


@register("global-mean")
class GlobalMean(_MeanModel):
    """Predicts the mean training rating for every pair.

    Paper: none (a reference point).
    Hyperparameters (defaults): none.
    Defaults: no hyperparameters.
    Consumes: interactions, ratings.
    """

    def __init__(self) -> None:
        pass

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.user_term_ = np.full(self.n_users_, self.global_mean_, dtype=np.float32)
        self.item_term_ = np.zeros(self.n_items_, dtype=np.float32)


@register("user-mean")
class UserMean(_MeanModel):
    """Predicts the user's mean rating, shrunk to the global mean by ``damping`` pseudo-ratings.

    Paper: none (a reference point).
    Hyperparameters (defaults): ``damping=0.0``.
    Defaults: ``damping=0`` (the plain mean), not tuned.
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"damping": PENALTY}

    def __init__(self, damping: float = 0.0):
        self.damping = damping

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.user_term_ = _damped_means(train.users, train.ratings, self.n_users_,
                                        self.global_mean_, self.damping)
        self.item_term_ = np.zeros(self.n_items_, dtype=np.float32)


@register("item-mean")
class ItemMean(_MeanModel):
    """Predicts the item's mean rating, shrunk to the global mean by ``damping`` pseudo-ratings.

    Paper: none (a reference point).
    Hyperparameters (defaults): ``damping=0.0``.
    Defaults: ``damping=0`` (the plain mean), not tuned.
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"damping": PENALTY}

    def __init__(self, damping: float = 0.0):
        self.damping = damping

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.user_term_ = np.zeros(self.n_users_, dtype=np.float32)
        self.item_term_ = _damped_means(train.items, train.ratings, self.n_items_,
                                        self.global_mean_, self.damping)


@register("baseline-only")
class BaselineOnly(_MeanModel):
    """``mu + b_u + b_i`` with L2-regularised biases fitted by alternating least squares.

    Each epoch sets ``b_i = sum_u (r_ui - mu - b_u) / (reg_item + n_i)`` then
    ``b_u = sum_i (r_ui - mu - b_i) / (reg_user + n_u)`` (Koren 2010, as in Surprise's
    BaselineOnly with ALS; defaults match its reg_i=10, reg_u=15, 10 epochs).

    Paper: Koren, "Factor in the neighbors", TKDD 2010.
    Hyperparameters (defaults): ``reg_user=15.0``, ``reg_item=10.0``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``.
    Defaults: Surprise's BaselineOnly with ALS (see above).
    Consumes: interactions, ratings.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "reg_user": PENALTY, "reg_item": PENALTY, "epochs": EPOCHS,
    }

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, epochs: int = 10):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.epochs = epochs

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        mu = self.global_mean_
        r = train.ratings.astype(np.float64) - mu
        n_u = np.bincount(train.users, minlength=self.n_users_)
        n_i = np.bincount(train.items, minlength=self.n_items_)
        b_u = np.zeros(self.n_users_)
        b_i = np.zeros(self.n_items_)
        for _ in range(self.epochs):
            b_i = np.bincount(train.items, weights=r - b_u[train.users],
                              minlength=self.n_items_) / (self.reg_item + n_i)
            b_u = np.bincount(train.users, weights=r - b_i[train.items],
                              minlength=self.n_users_) / (self.reg_user + n_u)
        self.user_term_ = (mu + b_u).astype(np.float32)
        self.item_term_ = b_i.astype(np.float32)
