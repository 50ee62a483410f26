"""Sequences: time order with the shared tie rule, padded and ragged views, batches, the
next-item split and the history windows."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data import Interactions
from recforge.data.sequences import Sequences, last_window, pad_histories
from recforge.data.splits import leave_last_out
from recforge.data.synthetic import generate
from recforge.errors import ParameterError

# user 0 rates items 3, 1, 2, 0 at 30, 10, 20, 20 (items 2 and 0 tie); user 1 rates 0, 4
TIED = Interactions.from_arrays([0, 0, 0, 1, 1, 0], [3, 1, 2, 0, 4, 0],
                                timestamps=[30, 10, 20, 5, 1, 20])


@pytest.mark.parametrize(("ties", "user0"), [("file-order", [1, 2, 0, 3]),
                                             ("item-id", [1, 0, 2, 3])])
def test_time_order_follows_the_tie_rule(ties: str, user0: list[int]) -> None:
    seq = Sequences.from_interactions(TIED, ties=ties)
    assert seq.sequence(0).tolist() == user0 and seq.sequence(1).tolist() == [4, 0]
    assert seq.timestamps.tolist() == [10, 20, 20, 30, 1, 5]
    assert (TIED.items[seq.positions] == seq.items).all()


def test_random_ties_are_seeded() -> None:
    orders = {tuple(Sequences.from_interactions(TIED, ties="random", seed=s).items)
              for s in range(20)}
    assert len(orders) == 2  # the tied pair in either order
    same = [Sequences.from_interactions(TIED, ties="random", seed=3).items for _ in range(2)]
    assert np.array_equal(*same)
    with pytest.raises(ParameterError, match="ties"):
        Sequences.from_interactions(TIED, ties="time")


def test_last_items_agree_with_leave_last_out() -> None:
    data = generate(n_users=100, n_items=80, n_interactions=2000, feedback="implicit")
    for ties in ("file-order", "item-id"):
        test = leave_last_out(data, ties=ties).test
        seq = Sequences.from_interactions(data, ties=ties)
        held = seq.next_item_split().test
        last = np.full(data.n_users, -1)
        last[test.users] = test.items
        eligible = seq.lengths >= 3
        assert np.array_equal(held[eligible], last[eligible])


def test_padded_ragged_and_prefix_views() -> None:
    seq = Sequences.from_interactions(TIED, ties="item-id")
    pad = seq.n_items
    assert seq.padded(3).tolist() == [[0, 2, 3], [pad, 4, 0]]
    assert seq.padded(2, users=[1], pad=-1).tolist() == [[4, 0]]
    items, offsets = seq.ragged([1, 0])
    assert items.tolist() == [4, 0, 1, 0, 2, 3] and offsets.tolist() == [0, 2, 6]
    assert seq.prefix_windows(2).tolist() == [[pad, pad], [pad, 1], [1, 0], [0, 2],
                                              [pad, pad], [pad, 4]]
    with pytest.raises(IndexError):
        seq.padded(2, users=[2])


def test_batches_cover_every_user_once() -> None:
    data = generate(n_users=50, n_items=40, n_interactions=600, feedback="implicit")
    seq = Sequences.from_interactions(data)
    ragged = list(seq.batches(16, rng=0))
    users = np.concatenate([b["users"] for b in ragged])
    assert sorted(users.tolist()) == list(range(50)) and users.tolist() != list(range(50))
    first = ragged[0]
    assert first["offsets"][-1] == len(first["items"]) == seq.lengths[first["users"]].sum()
    padded = next(seq.batches(16, length=4))
    assert np.array_equal(padded["items"], seq.padded(4, np.arange(16)))


def test_next_item_split() -> None:
    seq = Sequences.from_interactions(TIED, ties="item-id")
    split = seq.next_item_split()
    assert split.valid.tolist() == [2, -1] and split.test.tolist() == [3, -1]
    assert split.train.sequence(0).tolist() == [1, 0]
    assert split.train.sequence(1).tolist() == [4, 0]  # too short: all in train
    assert seq.drop_last(1).sequence(0).tolist() == [1, 0, 2]
    assert seq.drop_last(5).lengths.tolist() == [0, 0]


def test_history_windows_and_padding() -> None:
    rows = np.array([0, 0, 0, 2])
    assert last_window(rows, np.array([5, 6, 7, 8]), 3, 2, pad=-1).tolist() == [
        [6, 7], [-1, -1], [-1, 8]]
    known = np.array([True, True, False, True])
    assert pad_histories([[0, 1, 3], [-1, 99, 2], []], 2, known, pad=4).tolist() == [
        [1, 3], [4, 4], [4, 4]]
