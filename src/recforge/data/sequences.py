"""`Sequences`: each user's items in time order, built from `Interactions` in one vectorised
pass, with padded and ragged batch views and the next-item split.

Order. A user's interactions are in the time order of `recforge.data.splits.order_by_time`
(the one place it is decided, shared with `leave_last_out`): by timestamp, equal timestamps
by the tie rule ``ties`` (``file-order``: as read; ``item-id``: the larger item index later;
``random``: seeded). Without timestamps the order is that of the data.

Storage is CSR-like: ``indptr`` (``n_users + 1``) over ``items`` (int32), ``timestamps``
(int64 or None) and ``positions`` (each entry's index in the source `Interactions`).
Padding is ``n_items`` unless given; windows hold the *last* items, oldest first,
left-padded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from recforge.data.interactions import IdMap, Interactions, PairData
from recforge.data.sampling import ranges
from recforge.data.splits import DEFAULT_TIES, TIES, order_by_time
from recforge.params import MAX_COUNT, Integer

LENGTH = Integer(1, MAX_COUNT)


def user_time_order(data: PairData, ties: str = DEFAULT_TIES, seed: int = 0) -> np.ndarray:
    """Positions of ``data`` grouped by user (ascending), each user's in the time order of
    `order_by_time` (data order without timestamps)."""
    ties = TIES.check("ties", ties)
    within = np.arange(len(data)) if data.timestamps is None else order_by_time(data, ties, seed)
    return within[np.argsort(data.users[within], kind="stable")]


def previous_items(data: PairData, length: int, ties: str = DEFAULT_TIES,
                   seed: int = 0) -> np.ndarray:
    """``(len(data), length)`` int64: for each event, the items of the same user's events
    before it in the time order of `order_by_time` (data order without timestamps), the last
    ``length`` of them oldest first, left-padded with ``-1``. One vectorised pass."""
    order = user_time_order(data, ties, seed)
    users = data.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    out = np.empty((len(data), length), dtype=np.int64)
    out[order] = windows(data.items[order].astype(np.int64), np.arange(len(users)), first,
                         length, -1)
    return out


def windows(values: np.ndarray, ends: np.ndarray, starts: np.ndarray, length: int,
            pad: int) -> np.ndarray:
    """``(len(ends), length)``: for each ``k`` the entries of ``values`` in
    ``[max(starts[k], ends[k] - length), ends[k])``, oldest first, left-padded with ``pad``."""
    idx = ends[:, None] - length + np.arange(length)
    if not len(values):
        return np.full(idx.shape, pad, dtype=np.int64)
    return np.where(idx >= starts[:, None], values[np.maximum(idx, 0)], pad)


def last_window(rows: np.ndarray, values: np.ndarray, n_rows: int, length: int,
                pad: int) -> np.ndarray:
    """``(n_rows, length)``: each row's last ``length`` ``values`` (``rows`` sorted ascending,
    ``values[j]`` belonging to row ``rows[j]``), oldest first, left-padded with ``pad``."""
    counts = np.bincount(rows, minlength=n_rows)
    ends = np.cumsum(counts)
    return windows(np.asarray(values), ends, ends - counts, length, pad)


def pad_histories(history: Any, length: int, known: np.ndarray, pad: int) -> np.ndarray:
    """``(len(history), length)`` of each item-index sequence's last ``length`` items (oldest
    first); indices outside ``known`` (its length is the catalogue) or not ``known`` are
    dropped, as `FeatureCodec` drops unknown sequence tokens."""
    sizes = np.array([len(h) for h in history], dtype=np.int64)
    flat = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in history]
                          + [np.zeros(0, np.int64)])
    rows = np.repeat(np.arange(len(sizes)), sizes)
    inside = (flat >= 0) & (flat < len(known))
    keep = np.zeros(len(flat), dtype=bool)
    keep[inside] = known[flat[inside]]
    return last_window(rows[keep], flat[keep], len(sizes), length, pad)


@dataclass(frozen=True)
class NextItemSplit:
    """Next-item split of `Sequences`: ``train`` holds every user's sequence without its
    last two items; ``valid`` and ``test`` (``n_users``, item index or -1) the second-to-last
    and last item of users with at least three items (-1 for the others, whose whole
    sequence stays in ``train``). A test prediction's history is ``train`` plus the
    validation item (`Sequences.drop_last` ``(1)`` of the full sequences)."""

    train: Sequences
    valid: np.ndarray
    test: np.ndarray


class Sequences:
    """Per-user ordered item sequences (module docstring); build with `from_interactions`."""

    def __init__(self, indptr: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None,
                 positions: np.ndarray, user_map: IdMap, item_map: IdMap):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int32)
        self.timestamps = timestamps
        self.positions = np.asarray(positions, dtype=np.int64)
        self.user_map = user_map
        self.item_map = item_map

    @classmethod
    def from_interactions(cls, data: Interactions, ties: str = DEFAULT_TIES,
                          seed: int = 0) -> Sequences:
        """Every user's interactions in time order with the tie rule ``ties`` (two sorts)."""
        order = user_time_order(data, ties, seed)
        indptr = np.concatenate([[0], np.cumsum(data.user_counts)])
        stamps = None if data.timestamps is None else data.timestamps[order]
        return cls(indptr, data.items[order], stamps, order, data.user_map, data.item_map)

    def __len__(self) -> int:
        return self.n_users

    def __repr__(self) -> str:
        return f"Sequences({self.n_users} users, {len(self.items)} items in all)"

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def lengths(self) -> np.ndarray:
        """Items per user."""
        return np.diff(self.indptr)

    @property
    def users(self) -> np.ndarray:
        """The user of each entry (int64, sorted)."""
        return np.repeat(np.arange(self.n_users), self.lengths)

    def sequence(self, user: int) -> np.ndarray:
        """User ``user``'s items in order."""
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    # ------------------------------------------------------------------ views
    def padded(self, length: int, users: Any = None, pad: int | None = None) -> np.ndarray:
        """``(len(users), length)`` int64: each user's last ``length`` items, oldest first,
        left-padded with ``pad`` (default ``n_items``); all users by default."""
        users = self._users(users)
        return windows(self.items.astype(np.int64), self.indptr[users + 1], self.indptr[users],
                       LENGTH.check("length", length), self.n_items if pad is None else pad)

    def ragged(self, users: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(items, offsets)`` of ``users``' sequences: user ``k``'s items are
        ``items[offsets[k]:offsets[k + 1]]``."""
        users = self._users(users)
        starts, lengths = self.indptr[users], self.lengths[users]
        return self.items[ranges(starts, lengths)], np.concatenate([[0], np.cumsum(lengths)])

    def prefix_windows(self, length: int, pad: int | None = None) -> np.ndarray:
        """``(len(items), length)``: for every entry the ``length`` items of its user before
        it, oldest first, left-padded (next-item training inputs; row ``j`` precedes
        ``items[j]``)."""
        starts = np.repeat(self.indptr[:-1], self.lengths)
        return windows(self.items.astype(np.int64), np.arange(len(self.items)), starts,
                       LENGTH.check("length", length), self.n_items if pad is None else pad)

    def batches(self, batch_size: int, length: int | None = None,
                rng: np.random.Generator | int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``batch_size`` users (in a random order drawn from ``rng`` when given,
        else in index order): ``users`` and, with ``length``, ``items`` padded to it (see
        `padded`), else ragged ``items`` and ``offsets``."""
        batch_size = LENGTH.check("batch_size", batch_size)
        order = np.arange(self.n_users) if rng is None else \
            np.random.default_rng(rng).permutation(self.n_users)
        for lo in range(0, self.n_users, batch_size):
            users = order[lo:lo + batch_size]
            if length is not None:
                yield {"users": users, "items": self.padded(length, users)}
            else:
                items, offsets = self.ragged(users)
                yield {"users": users, "items": items, "offsets": offsets}

    # ------------------------------------------------------------------ splits
    def drop_last(self, n: int) -> Sequences:
        """Every sequence without its last ``n`` items (shorter ones become empty)."""
        n = Integer(0, MAX_COUNT).check("n", n)
        return self._first(np.maximum(self.lengths - n, 0))

    def next_item_split(self) -> NextItemSplit:
        """Train prefix / validation item / test item (`NextItemSplit`)."""
        eligible = self.lengths >= 3
        ends = self.indptr[1:][eligible]
        valid = np.full(self.n_users, -1, dtype=np.int64)
        test = np.full(self.n_users, -1, dtype=np.int64)
        valid[eligible], test[eligible] = self.items[ends - 2], self.items[ends - 1]
        return NextItemSplit(self._first(self.lengths - 2 * eligible), valid, test)

    def _first(self, counts: np.ndarray) -> Sequences:
        """Each user's first ``counts[u]`` entries."""
        keep = ranges(self.indptr[:-1], counts)
        return Sequences(np.concatenate([[0], np.cumsum(counts)]), self.items[keep],
                         None if self.timestamps is None else self.timestamps[keep],
                         self.positions[keep], self.user_map, self.item_map)

    def _users(self, users: Any) -> np.ndarray:
        if users is None:
            return np.arange(self.n_users)
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(f"user index out of range for {self.n_users} users")
        return users
