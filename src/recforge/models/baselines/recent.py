"""Popularity over the most recent window of time: a next-item baseline that reads the
query's time."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.errors import InputError
from recforge.models.base import Recommender
from recforge.models.registry import register
from recforge.params import Real, Rule

SECONDS_PER_DAY = 86_400


@register("recent-popular")
class RecentPopular(Recommender):
    """Scores items by their training events in the ``window_days`` before the query's time.

    A query's time is its context ``timestamp`` (the request time), else the time of the
    latest event of its history, else the end of the training data (user indices without
    a query: their training history carries no times). Item ``i`` scores the number of its
    training events at times ``[t - window, t)`` plus ``r / n_items``, where ``r`` is the dense
    rank (0 = fewest) of its count of all training events before ``t``: that count orders items
    equally popular in the window and never outweighs one recent event. No training event at
    or after ``t`` is read, so a query in the past sees no later data. Timestamps are epoch
    seconds.

    Paper: none (a reference point for next-item protocols).
    Hyperparameters (defaults): ``window_days=30.0``.
    Defaults: ``window_days=30``, a conventional month, not tuned.
    Consumes: interactions, timestamps.
    """

    consumes = frozenset({"interactions", "timestamps"})
    param_rules: ClassVar[dict[str, Rule]] = {"window_days": Real(0, low_open=True)}

    def __init__(self, window_days: float = 30.0):
        self.window_days = window_days

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.timestamps is None:
            raise InputError(f"{self.name} needs timestamps; the training data have none")
        order = np.argsort(train.timestamps, kind="stable")
        self.event_times_ = train.timestamps[order].astype(np.int64)
        self.event_items_ = train.items[order].astype(np.int64)

    def query_times(self, queries: QueryBatch) -> np.ndarray:
        """Each query's time (see the class docstring)."""
        end = self.event_times_[-1] + 1  # the training data's events are all before it
        times = np.full(len(queries), end, dtype=np.int64)
        if queries.timestamps is not None:
            has = queries.lengths > 0
            times[has] = queries.timestamps[queries.indptr[1:][has] - 1]
        if queries.time is not None:
            times = np.asarray(queries.time, dtype=np.int64)
        return times

    def _score_batch(self, queries: QueryBatch) -> np.ndarray:
        unique, inverse = np.unique(self.query_times(queries), return_inverse=True)
        return self._scores_at(unique)[inverse]

    def _scores_at(self, times: np.ndarray) -> np.ndarray:
        """Item scores at each of the increasing ``times``: one pass over the events, adding
        those that enter the window's end and start as the time advances."""
        window = round(self.window_days * SECONDS_PER_DAY)
        ends = np.searchsorted(self.event_times_, times)
        starts = np.searchsorted(self.event_times_, times - window)
        before = np.zeros(self.n_items_, dtype=np.int64)
        expired = np.zeros(self.n_items_, dtype=np.int64)
        out = np.empty((len(times), self.n_items_), dtype=np.float32)
        for row, (start, end) in enumerate(zip(starts, ends)):
            before += self._counts(ends[row - 1] if row else 0, end)
            expired += self._counts(starts[row - 1] if row else 0, start)
            rank = np.unique(before, return_inverse=True)[1]
            out[row] = (before - expired) + rank / self.n_items_
        return out

    def _counts(self, lo: int, hi: int) -> np.ndarray:
        """Training events per item among the time-sorted events ``lo:hi``."""
        return np.bincount(self.event_items_[lo:hi], minlength=self.n_items_)
