"""Splits: exact partitions, determinism, per-method rules (property-based) and ML-100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data import IdMap, Interactions
from recforge.data.splits import (
    SPLITTERS,
    Split,
    last_n_split,
    leave_last_out,
    make_split,
    order_by_time,
    random_split,
    temporal_split,
    user_holdout_split,
    validation_split,
)
from recforge.errors import ParameterError


@st.composite
def interactions(draw: st.DrawFn, min_size: int = 2) -> Interactions:
    """Random unique (user, item) pairs with few distinct timestamps (so ties are common)."""
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(2, 10))
    cells = draw(st.lists(st.integers(0, n_users * n_items - 1), min_size=min_size,
                          max_size=n_users * n_items, unique=True))
    cells = np.array(cells)
    times = draw(st.lists(st.integers(0, 4), min_size=len(cells), max_size=len(cells)))
    return Interactions(cells // n_items, cells % n_items, user_map=IdMap(np.arange(n_users)),
                        item_map=IdMap(np.arange(n_items)), timestamps=times,
                        ratings=np.arange(len(cells)) % 5 + 1)


def rows(data: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(data.users.tolist(), data.items.tolist(), data.timestamps.tolist(),
                   strict=True))


def assert_partition(split: Split, data: Interactions) -> None:
    assert len(split.train) + len(split.test) == len(data)
    assert rows(split.train) | rows(split.test) == rows(data)
    assert not rows(split.train) & rows(split.test)
    assert split.train.user_map is data.user_map and split.test.item_map is data.item_map


def splits_of(data: Interactions, seed: int) -> list[Split]:
    out = [random_split(data, 0.3, seed=seed), random_split(data, 0.3, seed=seed, per_user=True),
           leave_last_out(data, n=2)]
    if (data.user_counts > 0).sum() >= 2:
        out.append(user_holdout_split(data, 0.5, 0.4, seed=seed))
    if len(set(data.timestamps.tolist())) > 1:
        out.append(temporal_split(data, test_fraction=0.3))
    return out


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(0, 3))
def test_every_split_partitions_the_data(data: Interactions, seed: int) -> None:
    for split in splits_of(data, seed):
        assert_partition(split, data)


@settings(max_examples=40, deadline=None)
@given(interactions(), st.integers(0, 3))
def test_same_seed_same_split(data: Interactions, seed: int) -> None:
    for a, b in zip(splits_of(data, seed), splits_of(data, seed), strict=True):
        assert np.array_equal(a.test.users, b.test.users)
        assert np.array_equal(a.test.items, b.test.items)


@settings(max_examples=60, deadline=None)
@given(interactions(), st.floats(0.05, 0.95))
def test_per_user_ratio_bounds(data: Interactions, fraction: float) -> None:
    split = random_split(data, fraction, seed=1, per_user=True)
    n = data.user_counts
    expected = np.where(n >= 2, np.clip(np.floor(fraction * n + 0.5), 1, n - 1), 0)
    assert np.array_equal(split.test.user_counts, expected)


def reference_last(data: Interactions, n: int,
                   ties: str = "item-id") -> set[tuple[int, int, int]]:
    """Per user with more than n rows, the n rows last by (timestamp, item) with
    ``ties="item-id"``, or by timestamp then row order (a stable sort) with ``"file-order"``."""
    frame = pd.DataFrame({"u": data.users, "i": data.items, "t": data.timestamps})
    frame = frame.sort_values(["u", "t", "i"] if ties == "item-id" else ["u", "t"],
                              kind="stable")
    frame = frame[frame.groupby("u")["i"].transform("size") > n]
    last = frame.groupby("u").tail(n)
    return set(zip(last["u"].tolist(), last["i"].tolist(), last["t"].tolist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 3))
def test_leave_last_out_holds_the_latest_by_each_tie_rule(data: Interactions, n: int) -> None:
    for ties in ("item-id", "file-order"):
        split = leave_last_out(data, n, ties=ties)
        assert rows(split.test) == reference_last(data, n, ties), ties
    assert leave_last_out(data, n).test.items.tolist() == split.test.items.tolist()  # default
    assert last_n_split(data, n).test.items.tolist() == split.test.items.tolist()


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 3), st.integers(0, 5))
def test_random_ties_keep_the_time_order_and_follow_the_seed(data: Interactions, n: int,
                                                             seed: int) -> None:
    order = order_by_time(data, "random", seed)
    assert sorted(order.tolist()) == list(range(len(data)))
    assert (np.diff(data.timestamps[order]) >= 0).all()
    assert np.array_equal(order, order_by_time(data, "random", seed))
    split = leave_last_out(data, n, ties="random", seed=seed)
    by_time = {(u, t) for u, _, t in reference_last(data, n)}  # same users and timestamps
    assert {(u, t) for u, _, t in rows(split.test)} == by_time


def test_random_ties_differ_between_seeds_on_a_tied_block() -> None:
    data = Interactions.from_pandas(pd.DataFrame({"user": [1] * 20, "item": range(20),
                                                  "timestamp": [7] * 20}))
    held = {int(leave_last_out(data, ties="random", seed=s).test.items[0]) for s in range(10)}
    assert len(held) > 1
    assert int(leave_last_out(data, ties="item-id").test.items[0]) == 19
    assert int(leave_last_out(data, ties="file-order").test.items[0]) == 19


def test_unknown_tie_rule_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="ties.*'file-order', 'item-id', 'random'"):
        leave_last_out(toy(), ties="latest")


@settings(max_examples=60, deadline=None)
@given(interactions(), st.floats(0.05, 0.95))
def test_temporal_train_precedes_test(data: Interactions, fraction: float) -> None:
    if len(set(data.timestamps.tolist())) < 2:
        with pytest.raises(ValueError, match="empty"):
            temporal_split(data, test_fraction=fraction)
        return
    split = temporal_split(data, test_fraction=fraction)
    assert split.train.timestamps.max() < split.test.timestamps.min()
    target = np.clip(np.floor(fraction * len(data) + 0.5), 1, len(data) - 1)
    earliest_only = (split.train.timestamps == data.timestamps.min()).all()
    assert len(split.test) >= target or earliest_only  # cutoff moved off the earliest time


@settings(max_examples=60, deadline=None)
@given(interactions(), st.floats(0.0, 0.9), st.integers(0, 3))
def test_user_holdout(data: Interactions, history: float, seed: int) -> None:
    active = int((data.user_counts > 0).sum())
    if active < 2:
        with pytest.raises(ValueError, match="at least 2 users"):
            user_holdout_split(data, 1, history, seed=seed)
        return
    split = user_holdout_split(data, 1, history, seed=seed)
    held = np.flatnonzero(split.test.user_counts > 0)
    assert len(held) == 1
    user = held[0]
    n = data.user_counts[user]
    kept = split.train.user_counts[user]
    assert kept == min(np.floor(history * n + 0.5), n - 1)
    if kept:  # history comes first in time
        mine = split.train.users == user
        assert split.train.timestamps[mine].max() <= split.test.timestamps.min()
    else:
        assert split.cold_users.tolist() == [user]
    others = np.setdiff1d(np.arange(data.n_users), held)
    assert (split.test.user_counts[others] == 0).all()


def toy() -> Interactions:
    frame = pd.DataFrame({
        "user": [1, 1, 1, 2, 2, 3, 3, 3, 3],
        "item": [10, 20, 30, 10, 40, 20, 30, 40, 50],
        "timestamp": [1, 5, 5, 2, 9, 3, 4, 8, 8],
    })
    return Interactions.from_pandas(frame)


def test_leave_last_out_tie_rule_and_single_users() -> None:
    frame = toy().to_pandas()
    frame = pd.concat([frame, pd.DataFrame({"user": [4], "item": [10], "timestamp": [7]})])
    split = leave_last_out(Interactions.from_pandas(frame), ties="item-id")
    held = split.test.to_pandas()[["user", "item"]].values.tolist()
    assert held == [[1, 30], [2, 40], [3, 50]]  # ties (t=5, t=8) go to the larger item id
    assert 4 in split.train.to_pandas()["user"].tolist()  # a single interaction stays in train
    backwards = Interactions.from_pandas(frame.iloc[::-1])  # the tied rows read in reverse
    for ties, expected in (("item-id", [[1, 30], [2, 40], [3, 50]]),
                           ("file-order", [[1, 20], [2, 40], [3, 40]])):
        test = leave_last_out(backwards, ties=ties).test.to_pandas()
        assert sorted(test[["user", "item"]].values.tolist()) == expected, ties


def test_cold_start_properties_and_summary() -> None:
    data = toy()
    split = user_holdout_split(data, 1, seed=0)
    (cold,) = split.cold_users
    assert split.test.user_counts[cold] == data.user_counts[cold]
    summary = split.summary()
    assert summary["n_train"] + summary["n_test"] == len(data)
    assert summary["n_cold_users"] == 1 and summary["n_cold_user_test"] == len(split.test)
    assert summary["params"] == {"test_users": 1, "history_fraction": 0.0}
    train, test = split
    assert train is split.train and test is split.test
    items = temporal_split(data, cutoff=9)
    assert items.cold_items.tolist() == []  # item 40 was seen at t=8
    assert temporal_split(data, cutoff=8).cold_items.tolist() == [3, 4]  # items 40, 50: t >= 8


def test_make_split_dispatches_and_rejects_unknown_methods() -> None:
    data = toy()
    for method in SPLITTERS:
        split = make_split(data, method, seed=2)
        assert split.method == method
        assert_partition(split, data)
    assert make_split(data, "temporal").params["test_fraction"] == 0.2
    with pytest.raises(ValueError, match="random, temporal, leave-last-out, user-holdout"):
        make_split(data, "kfold")


def test_validation_is_carved_from_train_the_same_way() -> None:
    data = toy()
    split = leave_last_out(data)
    inner = split.train_valid()
    assert inner.method == "leave-last-out"
    assert_partition(inner, split.train)
    assert rows(inner.test) == reference_last(split.train, 1)
    other = split.train_valid(method="random", test_fraction=0.5, seed=1)
    assert other.method == "random"
    assert rows(validation_split(split.train, "random", seed=1, test_fraction=0.5).test) == \
        rows(other.test)


def test_clear_errors() -> None:
    data = toy()
    no_time = Interactions.from_pandas(data.to_pandas().drop(columns="timestamp"))
    for func, name in ((leave_last_out, "leave-last-out"),
                       (lambda d: temporal_split(d, 0.2), "temporal_split")):
        with pytest.raises(ValueError, match=f"^{name} needs timestamps"):
            func(no_time)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(data)
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(data, 1.5)
    with pytest.raises(ValueError, match="empty"):
        temporal_split(data, cutoff="2100-01-01")
    with pytest.raises(ValueError, match="cannot read cutoff"):
        temporal_split(data, cutoff="soon")
    with pytest.raises(ValueError, match="history_fraction"):
        user_holdout_split(data, 1, history_fraction=1.0)
    with pytest.raises(ValueError, match="leave at least one"):
        user_holdout_split(data, 3)
    with pytest.raises(ValueError, match="positive integer"):
        leave_last_out(data, 0)


def test_random_split_without_timestamps_and_exact_size() -> None:
    data = Interactions.from_arrays(np.repeat(np.arange(50), 4), np.tile(np.arange(4), 50))
    split = random_split(data, 0.25, seed=7)
    assert len(split.test) == 50
    assert not np.array_equal(split.test.items, random_split(data, 0.25, seed=8).test.items)
    fold_in = user_holdout_split(data, 0.2, history_fraction=0.5, seed=0)
    assert len(fold_in.cold_users) == 0 and (fold_in.test.user_counts[
        fold_in.test.user_counts > 0] == 2).all()


def test_ml100k_leave_last_out(ml100k_dir) -> None:
    frame = pd.read_csv(ml100k_dir / "u.data", sep="\t",
                        names=["user", "item", "rating", "timestamp"])
    data = Interactions.from_pandas(frame)
    for ties in ("item-id", "file-order"):
        split = leave_last_out(data, ties=ties)
        assert len(split.test) == 943 and len(split.train) == 99_057
        assert rows(split.test) == reference_last(data, 1, ties), ties
