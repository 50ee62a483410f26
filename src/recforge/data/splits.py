"""Train/test splits of `Interactions`, all deterministic (seeded where random) and vectorised.

Every splitter returns a `Split` whose ``train`` and ``test`` partition the interactions exactly
and share the full id maps (`Interactions.subset`), so indices mean the same in both.

* `random_split`: a global random share, or per user (``per_user=True``; as a named method,
  `random_per_user_split`, LightGCN's split).
* `temporal_split`: a global time cutoff; ``timestamp >= cutoff`` is test.
* `leave_last_out` (alias `last_n_split`): each user's latest ``n`` interactions are test, in
  the time order of `order_by_time`, whose ``ties`` rule orders equal timestamps.
* `user_holdout_split`: a random share of users is held out, optionally with some history.
* `make_split`: the dispatcher used by the CLI (``random``, ``temporal``, ``leave-last-out``,
  ``user-holdout``, ``random-per-user``); `validation_split` / `Split.train_valid` carve a validation set from
  training data the same way.

Rounding: a share ``f`` of ``n`` interactions is ``floor(f * n + 0.5)`` (half up).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.params import Choice

#: how events with equal timestamps are ordered (`order_by_time`): ``"file-order"`` keeps the
#: order of the rows as read (a stable sort; RecBole's rule), ``"item-id"`` puts the larger
#: item index later, ``"random"`` orders them at random (seeded)
TIE_RULES = ("file-order", "item-id", "random")
#: the default tie rule: the convention of RecBole's leave-one-out (see `leave_last_out`)
DEFAULT_TIES = "file-order"
TIES = Choice(*TIE_RULES)


@dataclass(frozen=True)
class Split:
    """A train/test partition of one `Interactions`, with the method that made it."""

    train: Interactions
    test: Interactions
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        """``train, test = split``."""
        return iter((self.train, self.test))

    @property
    def cold_users(self) -> np.ndarray:
        """Indices of users with test interactions but none in train."""
        return np.flatnonzero((self.test.user_counts > 0) & (self.train.user_counts == 0))

    @property
    def cold_items(self) -> np.ndarray:
        """Indices of items with test interactions but none in train."""
        return np.flatnonzero((self.test.item_counts > 0) & (self.train.item_counts == 0))

    def summary(self) -> dict[str, Any]:
        """Sizes and cold-start counts, JSON-ready."""
        n_all = len(self.train) + len(self.test)
        cold = np.zeros(self.test.n_users, dtype=bool)
        cold[self.cold_users] = True
        return {
            "method": self.method,
            "params": {k: v for k, v in self.params.items() if v is not None},
            "n_train": len(self.train),
            "n_test": len(self.test),
            "test_share": round(len(self.test) / n_all, 6) if n_all else 0.0,
            "n_train_users": int((self.train.user_counts > 0).sum()),
            "n_test_users": int((self.test.user_counts > 0).sum()),
            "n_cold_users": len(self.cold_users),
            "n_cold_items": len(self.cold_items),
            "n_cold_user_test": int(cold[self.test.users].sum()),
        }

    def train_valid(self, method: str | None = None, seed: int = 0, **kwargs: Any) -> Split:
        """Split ``train`` into (train, validation), by default with this split's method and
        parameters (``kwargs`` override them; a new ``method`` starts from its defaults)."""
        if method is None:
            method, kwargs = self.method, {**self.params, **kwargs}
        return validation_split(self.train, method, seed=seed, **kwargs)


# ---------------------------------------------------------------------- splitters
def random_split(data: Interactions, test_fraction: float = 0.2, seed: int = 0,
                 per_user: bool = False) -> Split:
    """Random split: ``test_fraction`` of all interactions (at least one, never all), or with
    ``per_user`` of each user's: a user with ``n >= 2`` interactions puts
    ``clip(round(test_fraction * n), 1, n - 1)`` in test; users with one stay in train."""
    _check_fraction(test_fraction, "test_fraction")
    rng = np.random.default_rng(seed)
    keys = rng.random(len(data))
    params = {"test_fraction": test_fraction, "per_user": per_user}
    if per_user:
        rank, counts = _rank_within_user(data, keys)
        n_test = np.where(counts >= 2, np.clip(_round(test_fraction * counts), 1, counts - 1), 0)
        return _split(data, rank < n_test[data.users], "random", params)
    _check_size(data, 2, "random_split")
    n_test = int(np.clip(_round(test_fraction * len(data)), 1, len(data) - 1))
    test = np.zeros(len(data), dtype=bool)
    test[np.argpartition(keys, n_test - 1)[:n_test]] = True
    return _split(data, test, "random", params)


def temporal_split(data: Interactions, test_fraction: float | None = None,
                   cutoff: Any | None = None) -> Split:
    """Global time split: interactions at or after ``cutoff`` are test.

    Give ``cutoff`` (epoch seconds or anything `pandas.Timestamp` reads) or ``test_fraction``,
    which sets the cutoff to the timestamp of the ``round(test_fraction * n)``-th latest
    interaction (ties at the cutoff all go to test, so the share can be a little larger; if
    that is the earliest timestamp, the next later one is used so train is not empty).
    Every train timestamp is earlier than every test timestamp.
    """
    timestamps = _require_timestamps(data, "temporal_split")
    if (test_fraction is None) == (cutoff is None):
        raise ValueError("temporal_split needs exactly one of test_fraction or cutoff")
    if cutoff is None:
        _check_fraction(test_fraction, "test_fraction")
        _check_size(data, 2, "temporal_split")
        n_test = int(np.clip(_round(test_fraction * len(data)), 1, len(data) - 1))
        at = len(data) - n_test
        cutoff_value = int(np.partition(timestamps, at)[at])
        if cutoff_value == timestamps.min():  # ties would leave train empty: next timestamp
            later = timestamps[timestamps > cutoff_value]
            cutoff_value = int(later.min()) if len(later) else cutoff_value
    else:
        cutoff_value = _epoch(cutoff)
    test = timestamps >= cutoff_value
    if test.all() or not test.any():
        empty = "train" if test.all() else "test"
        raise ValueError(f"temporal cutoff {cutoff_value} leaves the {empty} part empty "
                         f"(timestamps run from {timestamps.min()} to {timestamps.max()})")
    return _split(data, test, "temporal", {"test_fraction": test_fraction, "cutoff": cutoff})


def order_by_time(data: Interactions, ties: str = DEFAULT_TIES, seed: int = 0) -> np.ndarray:
    """The row indices of ``data`` in time order (earliest first), equal timestamps ordered by
    the tie rule ``ties`` (see `TIE_RULES`; ``seed`` seeds ``"random"``). Needs timestamps.

    The one place the time order of events is decided: `leave_last_out` holds out the end of
    each user's part of this order, and sequence splits can reuse it."""
    ties = TIES.check("ties", ties)
    timestamps = _require_timestamps(data, "order_by_time")
    if ties == "item-id":
        return np.lexsort((data.items, timestamps))
    if ties == "random":
        return np.lexsort((np.random.default_rng(seed).random(len(data)), timestamps))
    return np.argsort(timestamps, kind="stable")


def leave_last_out(data: Interactions, n: int = 1, ties: str = DEFAULT_TIES,
                   seed: int = 0) -> Split:
    """Each user's latest ``n`` interactions are test, in the time order of `order_by_time`
    (``ties`` and ``seed`` say how equal timestamps are ordered; see `TIE_RULES`).

    The default, ``"file-order"``, is RecBole's (a stable sort by timestamp over the rows as
    read), so of a user's several ratings in their last second the one read last is held out.
    ``"item-id"`` was this project's rule before issue 11 (the larger item index is later; on
    ML-100K, the larger movie id). Users with ``n`` or fewer interactions stay entirely in
    train. Needs timestamps.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    _require_timestamps(data, "leave-last-out")
    position = np.empty(len(data), dtype=np.int64)
    position[order_by_time(data, ties, seed)] = np.arange(len(data))
    rank, counts = _rank_within_user(data, position)
    from_end = counts[data.users] - 1 - rank
    test = (from_end < n) & (counts[data.users] > n)
    return _split(data, test, "leave-last-out", {"n": int(n), "ties": ties})


#: per-user last-N split by time (the same as `leave_last_out`)
last_n_split = leave_last_out


def user_holdout_split(data: Interactions, test_users: float = 0.1,
                       history_fraction: float = 0.0, seed: int = 0) -> Split:
    """Hold out random users: a share (float in (0, 1)) or a count (int) of the users with
    interactions.

    Each held-out user keeps ``clip(round(history_fraction * n), 0, n - 1)`` of their ``n``
    interactions in train as fold-in history, the earliest ones when the data has timestamps
    (ties broken at random) and random ones otherwise; the rest are test. With
    ``history_fraction=0`` every held-out user is cold.
    """
    if not 0 <= history_fraction < 1:
        raise ValueError(f"history_fraction must be in [0, 1), got {history_fraction}")
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(data.user_counts > 0)
    chosen = rng.choice(active, _n_held_out(test_users, len(active)), replace=False)
    held = np.zeros(data.n_users, dtype=bool)
    held[chosen] = True
    keys = rng.random(len(data))
    order_keys = (keys,) if data.timestamps is None else (data.timestamps, keys)
    rank, counts = _rank_within_user(data, *order_keys)
    n_history = np.clip(_round(history_fraction * counts), 0, np.maximum(counts - 1, 0))
    test = held[data.users] & (rank >= n_history[data.users])
    return _split(data, test, "user-holdout",
                  {"test_users": test_users, "history_fraction": history_fraction})


def random_per_user_split(data: Interactions, test_fraction: float = 0.2,
                          seed: int = 0) -> Split:
    """`random_split` with ``per_user=True`` as a method of its own, ``random-per-user``: each
    user with ``n >= 2`` interactions puts ``clip(round(test_fraction * n), 1, n - 1)`` random
    ones in test. With the default 0.2 it is the split of LightGCN (He et al. 2020), whose
    protocol ranks every item a user has not trained on (Recall@20, NDCG@20)."""
    split = random_split(data, test_fraction, seed, per_user=True)
    return Split(split.train, split.test, "random-per-user", {"test_fraction": test_fraction})


SPLITTERS: dict[str, Callable[..., Split]] = {
    "random": random_split,
    "temporal": temporal_split,
    "leave-last-out": leave_last_out,
    "user-holdout": user_holdout_split,
    "random-per-user": random_per_user_split,
}


def make_split(data: Interactions, method: str, seed: int = 0, **kwargs: Any) -> Split:
    """Split by method name (see `SPLITTERS`); ``seed`` goes to the random methods and
    ``kwargs`` to the splitter (defaults: ``temporal`` uses ``test_fraction=0.2``)."""
    func = SPLITTERS.get(method)
    if func is None:
        raise ValueError(f"unknown split method {method!r}; valid: {', '.join(SPLITTERS)}")
    if method == "temporal" and kwargs.get("cutoff") is None:
        kwargs.setdefault("test_fraction", 0.2)
    if "seed" in inspect.signature(func).parameters:
        kwargs["seed"] = seed
    return func(data, **kwargs)


def validation_split(train: Interactions, method: str = "random", seed: int = 0,
                     **kwargs: Any) -> Split:
    """Carve a validation set out of training data: ``(train', valid)`` as a `Split`, made
    by `make_split` (for early stopping and tuning)."""
    return make_split(train, method, seed=seed, **kwargs)


# ---------------------------------------------------------------------- helpers
def _split(data: Interactions, test: np.ndarray, method: str, params: dict[str, Any]) -> Split:
    return Split(data.subset(~test), data.subset(test), method, params)


def _rank_within_user(data: Interactions, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each interaction's position in its user's list sorted by ``keys`` (first key first,
    ties by position), and each user's interaction count."""
    order = np.lexsort((*reversed(keys), data.users))
    counts = data.user_counts
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(data), dtype=np.int64)
    rank[order] = np.arange(len(data)) - starts[data.users[order]]
    return rank, counts


def _round(values: Any) -> Any:
    """Round half up to integers."""
    return np.floor(np.asarray(values) + 0.5).astype(np.int64)


def _check_fraction(value: Any, name: str) -> None:
    if not (isinstance(value, (int, float, np.number)) and 0 < value < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")


def _check_size(data: Interactions, minimum: int, where: str) -> None:
    if len(data) < minimum:
        raise ValueError(f"{where} needs at least {minimum} interactions, got {len(data)}")


def _require_timestamps(data: Interactions, where: str) -> np.ndarray:
    if data.timestamps is None:
        raise ValueError(f"{where} needs timestamps; these interactions have none "
                         "(use random_split or user_holdout_split)")
    return data.timestamps


def _n_held_out(test_users: float, n_active: int) -> int:
    """The number of users to hold out: a count, or a share rounded half up (at least 1)."""
    if n_active < 2:
        raise ValueError(f"user_holdout_split needs at least 2 users with interactions, "
                         f"got {n_active}")
    if isinstance(test_users, (int, np.integer)) and not isinstance(test_users, bool):
        if not 1 <= test_users < n_active:
            raise ValueError(f"test_users={test_users} must leave at least one of the "
                             f"{n_active} users in train")
        return int(test_users)
    _check_fraction(test_users, "test_users")
    return int(np.clip(_round(test_users * n_active), 1, n_active - 1))


def _epoch(value: Any) -> int:
    """Epoch seconds from a number or anything `pandas.Timestamp` reads."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return int(value)
    try:
        return int(pd.Timestamp(value).timestamp())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot read cutoff {value!r} as a time") from exc
