"""Recommendation queries: who is asking, what they did before, and the request's context.

A `QueryBatch` is a vectorised batch of queries (after LensKit's ``RecQuery``, one per row):

``users``
    Internal user indices, ``-1`` for an anonymous or new user.
``indptr``, ``items``, ``timestamps``
    The ragged history (CSR-like): query ``q``'s items are ``items[indptr[q]:indptr[q + 1]]``
    in the order they happened, with their ``timestamps`` (None when unknown). A history may
    be more recent than a model's training data (a new session, the events of a test split).
``context``
    Per-query columns (one value per query): ``"timestamp"`` is the request time; any other
    column (a device, a page) is passed through to models that consume context.

`Exclusion` says which items a caller leaves out of a ranking: ``"seen"`` (the query's
history items), None (nothing: repeat consumption allowed), or a callable
``exclude(queries) -> matrix`` giving a ``(len(queries), n_items)`` sparse or boolean matrix
of the items to leave out (a business filter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import IdMap, Interactions
from recforge.errors import InputError

Exclusion = Literal["seen"] | None | Callable[["QueryBatch"], Any]


@dataclass(frozen=True)
class QueryBatch:
    """A batch of queries; see the module docstring for the fields' meaning."""

    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    context: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.users)
        if self.indptr.shape != (n + 1,) or self.indptr[0] != 0 or self.indptr[-1] != len(
                self.items) or (np.diff(self.indptr) < 0).any():
            raise InputError(f"a query batch of {n} queries needs {n + 1} non-decreasing "
                             f"history offsets from 0 to {len(self.items)}")
        if self.timestamps is not None and len(self.timestamps) != len(self.items):
            raise InputError(f"{len(self.timestamps)} history timestamps for "
                             f"{len(self.items)} history items")
        for name, column in self.context.items():
            if len(column) != n:
                raise InputError(f"context column {name!r} has {len(column)} values for "
                                 f"{n} queries")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_users(cls, users: Any, history: sp.csr_matrix | None = None) -> QueryBatch:
        """Queries of ``users`` (internal indices) whose history is their row of the user x
        item matrix ``history`` (items in index order, no timestamps); users outside its rows
        (``-1``, unknown) and a None ``history`` give empty histories."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if history is None:
            return cls(users, np.zeros(len(users) + 1, dtype=np.int64), np.empty(0, np.int64))
        inside = (users >= 0) & (users < history.shape[0])
        starts = np.where(inside, history.indptr[np.where(inside, users, 0)], 0)
        lengths = np.where(inside, np.diff(history.indptr)[np.where(inside, users, 0)], 0)
        indptr, items = _gather(history.indices, starts, lengths)
        return cls(users, indptr, items.astype(np.int64))

    @classmethod
    def from_interactions(cls, data: Interactions, users: Any) -> QueryBatch:
        """Queries of ``users`` whose history is all of their events in ``data``, in time order
        (data order among equal times), with timestamps when ``data`` has them."""
        return HistoryIndex(data).user_queries(users)

    @classmethod
    def from_split(cls, train: Interactions, test: Interactions,
                   rows: Any = None) -> QueryBatch:
        """One query per test event (``rows`` of ``test``, default all): see
        `HistoryIndex.event_queries`."""
        return HistoryIndex(train, test).event_queries(
            np.arange(len(test)) if rows is None else rows)

    @classmethod
    def from_ids(cls, users: Sequence[Any], histories: Sequence[Sequence[Any]], *,
                 user_map: IdMap | None, item_map: IdMap | None,
                 timestamps: Sequence[Sequence[int]] | None = None,
                 context: Mapping[str, Any] | None = None) -> QueryBatch:
        """Queries from external ids: ``users[q]`` (None, or an id the map does not know, is an
        anonymous user) with the item ids ``histories[q]`` (items the map does not know are
        dropped) and optional per-item ``timestamps`` and per-query ``context`` columns.
        Without a map the ids are the internal indices."""
        if len(histories) != len(users):
            raise InputError(f"{len(histories)} histories for {len(users)} users")
        index = np.array([-1 if u is None else _one_index(user_map, u) for u in users],
                         dtype=np.int64)
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        items = _indices(item_map, _flat([np.asarray(h) for h in histories if len(h)]))
        times = None
        if timestamps is not None:
            times = _flat([np.asarray(t, np.int64) for t in timestamps if len(t)])
            if len(times) != len(items):
                raise InputError("timestamps must give one time per history item")
        columns = {name: np.asarray(col) for name, col in (context or {}).items()}
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(index, indptr, items, times, columns).with_items(items >= 0)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.users)

    def history(self, q: int) -> np.ndarray:
        """Query ``q``'s history items, oldest first."""
        return self.items[self.indptr[q]:self.indptr[q + 1]]

    @property
    def lengths(self) -> np.ndarray:
        """The number of history items of each query."""
        return np.diff(self.indptr)

    @property
    def time(self) -> np.ndarray | None:
        """The request time of each query (context ``timestamp``), or None."""
        return self.context.get("timestamp")

    def take(self, rows: Any) -> QueryBatch:
        """The queries ``rows`` (an index array or a slice), as a new batch."""
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        indptr, picked = _gather(np.arange(len(self.items)), self.indptr[rows],
                                 self.lengths[rows])
        return QueryBatch(self.users[rows], indptr, self.items[picked],
                          None if self.timestamps is None else self.timestamps[picked],
                          {name: col[rows] for name, col in self.context.items()})

    def history_matrix(self, n_items: int) -> sp.csr_matrix:
        """The histories as a ``(len(self), n_items)`` matrix counting each item's events
        (items outside the catalogue are left out)."""
        inside = (self.items >= 0) & (self.items < n_items)
        if inside.all():
            return sp.csr_matrix((np.ones(len(self.items), dtype=np.float32), self.items,
                                  self.indptr), shape=(len(self), n_items))
        return self.with_items(inside).history_matrix(n_items)

    def with_items(self, keep: np.ndarray) -> QueryBatch:
        """The batch with only the history entries where ``keep`` is True."""
        counts = np.bincount(np.repeat(np.arange(len(self)), self.lengths)[keep],
                             minlength=len(self))
        return QueryBatch(self.users, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                          self.items[keep],
                          None if self.timestamps is None else self.timestamps[keep],
                          self.context)


class HistoryIndex:
    """The events of ``train`` (and ``test``) sorted once by user, then time, then position
    (train before test), to cut many query batches from: `user_queries` and, with ``test``,
    `event_queries`. Timestamps are kept when every part has them."""

    def __init__(self, train: Interactions, test: Interactions | None = None):
        parts = [train] if test is None else [train, test]
        self.n_train = len(train)
        self.users = np.concatenate([p.users for p in parts]).astype(np.int64)
        self.items = np.concatenate([p.items for p in parts]).astype(np.int64)
        self.times = (None if any(p.timestamps is None for p in parts)
                      else np.concatenate([p.timestamps for p in parts]))
        keys = (np.arange(len(self.users)),) + (() if self.times is None else (self.times,))
        self.order = np.lexsort((*keys, self.users))
        self.first = np.searchsorted(self.users[self.order], np.arange(train.n_users + 1))
        self.position = np.empty(len(self.order), dtype=np.int64)
        self.position[self.order] = np.arange(len(self.order))
        self.test = test

    def user_queries(self, users: Any,
                     context: Mapping[str, np.ndarray] | None = None) -> QueryBatch:
        """Queries of ``users`` (internal indices; unknown ones get an empty history) whose
        history is all of their indexed events, with per-query ``context`` columns."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        inside = (users >= 0) & (users < len(self.first) - 1)
        safe = np.where(inside, users, 0)
        starts = np.where(inside, self.first[safe], 0)
        lengths = np.where(inside, self.first[safe + 1] - self.first[safe], 0)
        return self._queries(users, starts, lengths, dict(context or {}))

    def event_queries(self, rows: Any) -> QueryBatch:
        """One query per test event ``rows``: the event's user, the history of the user's train
        and test events before it (in time order; an event at the same time comes before it
        when it is in train or earlier in test), and context ``timestamp`` = the event's
        time. Needs ``test`` and timestamps in both parts."""
        if self.test is None or self.times is None:
            raise InputError("next-item queries need timestamps in the train and test data")
        rows = np.asarray(rows, dtype=np.int64)
        users = self.test.users[rows].astype(np.int64)
        starts = self.first[users]
        lengths = self.position[self.n_train + rows] - starts
        return self._queries(users, starts, lengths, {"timestamp": self.test.timestamps[rows]})

    def _queries(self, users: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 context: dict[str, np.ndarray]) -> QueryBatch:
        indptr, picked = _gather(self.order, starts, lengths)
        times = None if self.times is None else self.times[picked]
        return QueryBatch(users, indptr, self.items[picked], times, context)


def exclusion_matrix(queries: QueryBatch, exclude: Exclusion,
                     n_items: int) -> sp.csr_matrix | np.ndarray | None:
    """The items ``exclude`` leaves out of each query's ranking, as a ``(len(queries),
    n_items)`` sparse or boolean matrix, or None for no exclusion."""
    if exclude is None:
        return None
    if exclude == "seen":
        return queries.history_matrix(n_items)
    if not callable(exclude):
        raise InputError(f"exclude must be 'seen', None or a callable, not {exclude!r}")
    matrix = exclude(queries)
    if np.shape(matrix) != (len(queries), n_items):
        raise InputError(f"the exclusion gave a matrix of shape {np.shape(matrix)}, expected "
                         f"{(len(queries), n_items)}")
    return sp.csr_matrix(matrix) if sp.issparse(matrix) else np.asarray(matrix, dtype=bool)


def mask_excluded(scores: np.ndarray, excluded: sp.csr_matrix | np.ndarray | None) -> None:
    """Set ``scores[q, i] = -inf`` for every item ``i`` excluded for query ``q``."""
    if excluded is None:
        return
    if isinstance(excluded, np.ndarray):
        scores[excluded] = -np.inf
        return
    scores[np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr)),
           excluded.indices] = -np.inf


def _gather(values: np.ndarray, starts: np.ndarray,
            lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR offsets of the runs ``values[starts[r]:starts[r] + lengths[r]]`` and their
    concatenation, without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    offsets = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1] - starts, lengths)
    return indptr, np.asarray(values)[offsets]


def _flat(parts: list[np.ndarray]) -> np.ndarray:
    """The non-empty ``parts`` concatenated (an empty int64 array when there are none)."""
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _indices(id_map: IdMap | None, external: Any) -> np.ndarray:
    """Internal indices of external ids (-1 where unknown); the ids themselves without a map."""
    values = np.asarray(external)
    if id_map is not None:
        return id_map.to_index(values).astype(np.int64) if len(values) else np.empty(0, np.int64)
    if len(values) and values.dtype.kind not in "iu":
        raise InputError(f"ids must be integers without an id map, got {values[:3].tolist()}")
    return values.astype(np.int64)


def _one_index(id_map: IdMap | None, external: Any) -> int:
    return int(_indices(id_map, np.array([external]))[0])
