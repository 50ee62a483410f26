"""Ranking protocols: how a model's ranked lists are produced and matched to the test data.

A protocol turns (model, train, test) into batches of `RankedCases`: ranked lists with their
hits against the relevant items. A *case* is a user in full ranking and a test interaction in
sampled ranking; the evaluator averages a user's cases.

``full`` (`FullRanking`)
    Every user is ranked against every item they did not interact with in training. Each
    batch of users is scored once (``model.score`` of their training histories, those items
    masked to -inf) and its top-``max K`` lists are taken from those scores as
    `Recommender.recommend` takes them (`recforge.models.base.top_items`: the lower item index
    wins ties). The relevant items are the user's test items. Metrics that need the complete
    ranking (MRR without a cutoff, AUC) read the same scores -- no second scoring pass -- and
    count, for each test item, the candidates scored above it, with the same tie rule for MRR
    and ties counted 1/2 for AUC. The negatives of AUC are the candidates that are not test
    items of the user.

``sampled-N`` (`SampledRanking`)
    Each test interaction is ranked against ``N`` distinct negatives drawn uniformly among the
    items the user never interacted with (neither in train nor in test), using
    ``model.score(queries, candidates)`` (the query: the user, their training history, the
    event's time as context ``timestamp``); the rank of the held-out item is computed directly from the
    scores. Tie rule (``ties``): ``"pessimistic"`` (default) -- the held-out item loses every
    tie, ``rank = 1 + #{negatives with score >= its score}``; ``"optimistic"`` -- it wins every
    tie, ``rank = 1 + #{negatives with score > its score}``. With a model that scores
    everything equally the held-out item is ranked last (``N + 1``) or first. The same seed
    draws the same negatives, so the metrics are reproducible.

``next-item`` (`NextItem`) and ``next-item-sampled-N`` (`NextItemSampled`)
    A case is a test event; its query is the user's history up to that event (their train and
    test events before it, in time order) with the event's time as context, so a sequential
    model sees the items before the held-out one and nothing after. ``next-item`` ranks every
    item as ``full`` does (the items of the query's history excluded by default, see
    ``exclude``); ``next-item-sampled-N`` ranks it against ``N`` negatives as ``sampled-N``
    does. Both need timestamps; with a leave-last-out split each user has one case.

Which items are left out of a full ranking is the caller's choice (``exclude`` of
`FullRanking` and `NextItem`, a `recforge.data.query.Exclusion`): ``"seen"`` (default: the
query's history), None (repeat consumption allowed) or a callable business filter. Each
protocol declares what its queries carry (`Protocol.query_capabilities`), so that the
evaluator can refuse a model that consumes what the protocol cannot give.

Warning: sampled metrics are not consistent with full-ranking metrics -- they can reorder
models relative to full ranking (Krichene & Rendle, "On Sampled Metrics for Item
Recommendation", KDD 2020). Use them to compare with published sampled results, and prefer
full ranking for conclusions.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.query import Exclusion, HistoryIndex, QueryBatch, exclusion_matrix, mask_excluded
from recforge.errors import InputError
from recforge.evaluation.metrics import (
    auc_from_counts,
    group_mean,
    hits_from_rank,
    ideal_binary_gains,
)
from recforge.models.base import Recommender, top_items
from recforge.params import MAX_COUNT, Integer

TieRule = Literal["pessimistic", "optimistic"]


@dataclass
class RankedCases:
    """A batch of ranked lists with their relevance, one row per case.

    ``user_pos`` indexes the evaluated users; ``hits``/``gains`` (``(n, K)``) mark and grade
    the relevant items in each list; ``ideal`` holds the best possible gains (sorted);
    ``n_relevant`` counts relevant items; ``items`` are the listed items (full ranking only);
    ``rank`` is the 1-based rank of the first relevant item in the complete ranking and
    ``auc`` the case's AUC (both None when not computed).
    """

    user_pos: np.ndarray
    hits: np.ndarray
    gains: np.ndarray
    ideal: np.ndarray
    n_relevant: np.ndarray
    items: np.ndarray | None = None
    rank: np.ndarray | None = None
    auc: np.ndarray | None = None


class Protocol(ABC):
    """How ranked lists are built; see the module docstring for the two protocols."""

    #: whether `cases` yields the recommended items (needed by beyond-accuracy metrics)
    lists_items: bool = False
    #: what the protocol's queries carry for a model to consume beyond the training data
    #: (`recforge.models.base.CAPABILITIES`): time-ordered histories, per-event context
    query_capabilities: frozenset[str] = frozenset({"sequences"})

    @property
    @abstractmethod
    def name(self) -> str:
        """The protocol's name, e.g. ``full`` or ``sampled-99``."""

    @abstractmethod
    def cases(self, model: Recommender, train: Interactions, test: Interactions,
              users: np.ndarray, k: int, complete: bool,
              batch_size: int) -> Iterator[RankedCases]:
        """Ranked lists of length ``k`` for the test data of ``users`` (sorted, unique).

        ``k`` may exceed `list_length`; the lists are then that long (the whole ranking).
        ``complete`` asks for `RankedCases.rank` and `RankedCases.auc`."""

    @abstractmethod
    def list_length(self, n_items: int) -> int:
        """The length of a complete ranked list over a catalogue of ``n_items``."""

    def check_catalogue(self, n_items: int) -> None:
        """Refuse a catalogue of ``n_items`` too small for the protocol (every one fits)."""

    def check_data(self, train: Interactions, test: Interactions) -> None:
        """Refuse a split the protocol cannot work with (every split fits)."""


class FullRanking(Protocol):
    """Rank every item except those ``exclude`` leaves out (`recforge.data.query.Exclusion`;
    default ``"seen"``: the user's training items) for each test user."""

    lists_items = True

    def __init__(self, exclude: Exclusion = "seen"):
        self.exclude = exclude

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exclude={self.exclude!r})"

    @property
    def name(self) -> str:
        return "full"

    def list_length(self, n_items: int) -> int:
        return n_items

    def cases(self, model: Recommender, train: Interactions, test: Interactions,
              users: np.ndarray, k: int, complete: bool,
              batch_size: int) -> Iterator[RankedCases]:
        k = min(k, self.list_length(train.n_items))
        relevance = _relevance_csr(test)
        history = HistoryIndex(train)
        for lo in range(0, len(users), batch_size):
            batch = users[lo:lo + batch_size]
            yield full_cases(model, history.user_queries(batch), relevance[batch],
                             np.arange(lo, lo + len(batch)), k, complete, self.exclude)


def full_cases(model: Recommender, queries: QueryBatch, rel: sp.csr_matrix,
               user_pos: np.ndarray, k: int, complete: bool,
               exclude: Exclusion) -> RankedCases:
    """The ranked cases of one batch of ``queries`` against every item ``exclude`` leaves in,
    with relevance ``rel`` (one row per query). The catalogue is scored once: the top-``k``
    lists are taken as `Recommender.recommend` takes them (`top_items`: the lower item index
    wins ties) and the complete ranks read the same scores."""
    scores = model.score(queries)
    mask_excluded(scores, exclusion_matrix(queries, exclude, rel.shape[1]))
    items, _ = top_items(scores, k)
    hits, gains = lookup_hits(rel, items)
    rank, auc = _complete_ranks(scores, rel) if complete else (None, None)
    return RankedCases(user_pos, hits, gains, _ideal_gains(rel, k), np.diff(rel.indptr), items,
                       rank, auc)


class SampledRanking(Protocol):
    """Rank each held-out item against ``n_negatives`` sampled non-interacted items."""

    query_capabilities = frozenset({"sequences", "context"})

    def __init__(self, n_negatives: int = 99, ties: TieRule = "pessimistic", seed: int = 0):
        if n_negatives < 1:
            raise ValueError("n_negatives must be at least 1")
        if ties not in ("pessimistic", "optimistic"):
            raise ValueError(f"ties must be 'pessimistic' or 'optimistic', not {ties!r}")
        self.n_negatives = n_negatives
        self.ties = ties
        self.seed = seed

    @property
    def name(self) -> str:
        return f"sampled-{self.n_negatives}"

    def __repr__(self) -> str:
        return f"SampledRanking(n_negatives={self.n_negatives}, ties={self.ties!r}, seed={self.seed})"

    def list_length(self, n_items: int) -> int:
        return self.n_negatives + 1

    def check_catalogue(self, n_items: int) -> None:
        """Refuse more negatives than a catalogue of ``n_items`` can supply to any user."""
        if self.n_negatives >= n_items:
            raise InputError(f"protocol {self.name}: {self.n_negatives} negatives per test item "
                             f"need more than {self.n_negatives} items; the data has {n_items}")

    def negatives(self, train: Interactions, test: Interactions) -> np.ndarray:
        """``(len(test), n_negatives)`` distinct items each test user never interacted with."""
        from recforge.data.sampling import sample_negatives

        self.check_catalogue(train.n_items)
        both = np.concatenate([train.users, test.users]), np.concatenate([train.items, test.items])
        positives = sp.csr_matrix((np.ones(len(both[0]), dtype=np.float32), both),
                                  shape=(train.n_users, train.n_items))
        return sample_negatives(positives, test.users, self.n_negatives, method="uniform",
                                seed=self.seed, distinct=True)

    def cases(self, model: Recommender, train: Interactions, test: Interactions,
              users: np.ndarray, k: int, complete: bool,
              batch_size: int) -> Iterator[RankedCases]:
        negatives = self.negatives(train, test)
        k = min(k, self.list_length(train.n_items))
        user_pos = np.searchsorted(users, test.users)
        queries = self.event_queries(train, test)
        for lo in range(0, len(test), batch_size):
            sl = slice(lo, lo + batch_size)
            candidates = np.column_stack([test.items[sl], negatives[sl]])
            scores = model.score(queries(np.arange(len(test))[sl]), candidates)
            n_greater = (scores[:, 1:] > scores[:, :1]).sum(axis=1)
            n_equal = (scores[:, 1:] == scores[:, :1]).sum(axis=1)
            rank = 1 + n_greater + (n_equal if self.ties == "pessimistic" else 0)
            hits = hits_from_rank(rank, k)
            ones = np.ones(len(rank), dtype=np.int64)
            yield RankedCases(user_pos[sl], hits, hits.astype(np.float64),
                              ideal_binary_gains(ones, k), ones, rank=rank,
                              auc=auc_from_counts(n_greater, n_equal, self.n_negatives))


    def event_queries(self, train: Interactions,
                      test: Interactions) -> Callable[[np.ndarray], QueryBatch]:
        """The queries of test events (a function of test rows): each event's user with all of
        their training events as history and the event's time as context ``timestamp``."""
        history = HistoryIndex(train)
        times = test.timestamps
        return lambda rows: history.user_queries(
            test.users[rows], None if times is None else {"timestamp": times[rows]})


class NextItem(FullRanking):
    """Rank every item ``exclude`` leaves in for each test event, queried by the user's train
    and test events before it (`recforge.data.query.HistoryIndex.event_queries`); the default
    ``exclude="seen"`` leaves out the items of those earlier events."""

    query_capabilities = frozenset({"sequences", "context"})

    @property
    def name(self) -> str:
        return "next-item"

    def check_data(self, train: Interactions, test: Interactions) -> None:
        """Refuse data without timestamps (the order of events makes the history)."""
        _need_timestamps(self.name, train, test)

    def cases(self, model: Recommender, train: Interactions, test: Interactions,
              users: np.ndarray, k: int, complete: bool,
              batch_size: int) -> Iterator[RankedCases]:
        k = min(k, self.list_length(train.n_items))
        history = HistoryIndex(train, test)
        gains = test.ratings if test.ratings is not None else np.ones(len(test), np.float32)
        for lo in range(0, len(test), batch_size):
            rows = np.arange(lo, min(lo + batch_size, len(test)))
            rel = sp.csr_matrix((gains[rows], test.items[rows], np.arange(len(rows) + 1)),
                                shape=(len(rows), train.n_items))
            yield full_cases(model, history.event_queries(rows), rel,
                             np.searchsorted(users, test.users[rows]), k, complete, self.exclude)


class NextItemSampled(SampledRanking):
    """`SampledRanking` of each test event, queried as in `NextItem` (the user's events before
    it)."""

    @property
    def name(self) -> str:
        return f"next-item-sampled-{self.n_negatives}"

    def __repr__(self) -> str:
        return "NextItem" + super().__repr__()

    def check_data(self, train: Interactions, test: Interactions) -> None:
        """Refuse data without timestamps (the order of events makes the history)."""
        _need_timestamps(self.name, train, test)

    def event_queries(self, train: Interactions,
                      test: Interactions) -> Callable[[np.ndarray], QueryBatch]:
        return HistoryIndex(train, test).event_queries


def _need_timestamps(name: str, train: Interactions, test: Interactions) -> None:
    missing = [label for label, data in (("train", train), ("test", test))
               if data.timestamps is None]
    if missing:
        raise InputError(f"protocol {name} orders each user's events by time; the "
                         f"{' and '.join(missing)} data have no timestamps")


def make_protocol(protocol: str | Protocol, seed: int = 0,
                  ties: TieRule = "pessimistic") -> Protocol:
    """``"full"``, ``"sampled-N"`` (with ``seed`` and ``ties``) or a `Protocol` as is."""
    if isinstance(protocol, Protocol):
        return protocol
    name = str(protocol).strip().lower()
    if name in ("full", "next-item"):
        return FullRanking() if name == "full" else NextItem()
    match = re.fullmatch(r"(next-item-)?sampled-(\d+)", name)
    if match:
        count = Integer(1, MAX_COUNT).check(f"protocol {protocol!r}: N", int(match.group(2)))
        kind = NextItemSampled if match.group(1) else SampledRanking
        return kind(count, ties=ties, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; valid: 'full', 'sampled-N' (e.g. "
                     "sampled-99), 'next-item', 'next-item-sampled-N'")


# ---------------------------------------------------------------------- full-ranking helpers


def _relevance_csr(test: Interactions) -> sp.csr_matrix:
    """User x item CSR of the test gains: the ratings when present, else ones."""
    kind = "rating" if test.ratings is not None else "binary"
    return test.matrix(kind)


def _row_ids(mat: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr))


def lookup_hits(rel: sp.csr_matrix, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hits and gains of each listed item: a search of (row, item) keys in ``rel``'s keys."""
    n_cols = rel.shape[1]
    keys = _row_ids(rel).astype(np.int64) * n_cols + rel.indices
    wanted = np.arange(len(items), dtype=np.int64)[:, None] * n_cols + items
    wanted[items < 0] = -1
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    hits = keys[pos] == wanted
    return hits, np.where(hits, rel.data[pos], 0.0)


def _ideal_gains(rel: sp.csr_matrix, k: int) -> np.ndarray:
    """Each row's gains sorted descending, cut (or zero-padded) to ``k`` columns."""
    rows = _row_ids(rel)
    order = np.lexsort((-rel.data, rows))
    position = np.arange(rel.nnz) - rel.indptr[rows]
    keep = position < k
    ideal = np.zeros((rel.shape[0], k))
    ideal[rows[keep], position[keep]] = rel.data[order][keep]
    return ideal


def _complete_ranks(scores: np.ndarray,
                    rel: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each user's first relevant item among all candidates, and the user's AUC.

    ``scores`` (masked seen items at -inf) is overwritten: the relevant items become NaN."""
    rows = _row_ids(rel)
    rel_scores = scores[rows, rel.indices]
    scores[rows, rel.indices] = np.nan  # relevant items are not negatives
    counts = np.zeros((4, len(rows)), dtype=np.int64)
    _count_negatives(scores, rows, rel.indices.astype(np.int64), rel_scores, counts)
    n_greater, n_equal, n_equal_before, n_negatives = counts
    rank = np.minimum.reduceat(1 + n_greater + n_equal_before, rel.indptr[:-1])
    auc = group_mean(auc_from_counts(n_greater, n_equal, n_negatives), rows, rel.shape[0])
    return rank, auc


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_negatives(scores: np.ndarray, rows: np.ndarray, items: np.ndarray,
                     rel_scores: np.ndarray, out: np.ndarray) -> None:
    """For relevant pair ``j`` (row ``rows[j]``, item ``items[j]``, score ``rel_scores[j]``)
    count the candidates (score > -inf; NaN marks non-candidates) scored above it, tied with
    it, tied with a lower item index, and in all: ``out[0..3, j]``."""
    n_cols = scores.shape[1]
    for j in numba.prange(len(rows)):
        r = rows[j]
        s = rel_scores[j]
        greater = equal = before = total = 0
        for c in range(n_cols):
            x = scores[r, c]
            if x > -np.inf:
                total += 1
                if x > s:
                    greater += 1
                elif x == s:
                    equal += 1
                    if c < items[j]:
                        before += 1
        out[0, j] = greater
        out[1, j] = equal
        out[2, j] = before
        out[3, j] = total
