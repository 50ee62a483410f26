"""Streaming an epoch in mini-batches from chunks of an interaction log, so that the epoch's
examples (and the log itself) never have to be in memory at once.

A *chunk source* yields ``(users, items)`` index arrays of at most ``chunk_rows`` rows:
`ParquetInteractions.chunks` reads a Parquet file's row groups (in a random order when given
a generator) in record batches; `interaction_chunks` cuts in-memory `Interactions` or
`Events`; `shuffled_chunks` cuts positives taken in one random order.

The examples of a chunk are built by `pointwise_arrays` (each positive with label 1 and
``negatives`` sampled items with label 0) or `pairwise_arrays` (BPR triples), with negatives
drawn by the shared `NegativeSampler`; the in-memory epoch of
`recforge.models.neural.torch_base.TorchRecommender` is the same functions applied to every
positive at once. `pair_batches` turns chunks into BPR-style mini-batches: each chunk is
shuffled, its triples built by `pairwise_arrays`, and cut into batches of ``batch_size``
(the last batch of a chunk may be shorter). Memory is one chunk of examples plus the
sampler's positives (``O(interactions)`` int32/int64 indices, which exact negative sampling
needs), independent of the number of negatives per positive.

`ParquetInteractions` scans the file twice when built (record batch by record batch): first
the distinct user and item ids, which give the `IdMap` s by the id rule of `Interactions`
(int64 when every id is a canonical integer, else strings), then the index pairs, which give
the positives matrix for the sampler and for excluding seen items. It is a `PairData` that
offers what `Recommender.fit` reads without holding the log's rows: ``binary_csr`` is the
positives matrix, ``user_counts``/``item_counts`` count *distinct* (user, item) pairs (a pair
logged twice counts once, unlike `Interactions`), ``ratings`` is None and ``len`` is the
number of rows in the file. Models that list it in their ``trains_on`` stream each epoch from
`ParquetInteractions.chunks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.events import Events
from recforge.data.interactions import IdMap, Interactions, PairData, external_ids
from recforge.data.readers import DataFormatError, open_parquet
from recforge.data.sampling import NegativeSampler
from recforge.errors import UnknownNameError
from recforge.params import MAX_COUNT, Integer

Chunk = tuple[np.ndarray, np.ndarray]
Arrays = dict[str, np.ndarray]
COUNT = Integer(1, MAX_COUNT)


class ParquetInteractions(PairData):
    """An interaction log in a Parquet file, read ``chunk_rows`` rows at a time (module
    docstring). ``user`` and ``item`` name its id columns."""

    ratings = None

    def __init__(self, path: str | Path, user: str = "user", item: str = "item",
                 chunk_rows: int = 1 << 20):
        self.path = Path(path)
        self.columns = (user, item)
        self.chunk_rows = COUNT.check("chunk_rows", chunk_rows)
        self._file = open_parquet(self.path)
        names = self._file.schema_arrow.names
        for column in self.columns:
            if column not in names:
                raise UnknownNameError(f"{self.path}: no column {column!r} (have {names})")
        self.n_interactions = self._file.metadata.num_rows
        self.user_map, self.item_map = (IdMap.from_values(v)[0] for v in self._distinct_ids())
        self.positives = self._positives()

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (f"ParquetInteractions({str(self.path)!r}, {self.n_users} users x "
                f"{self.n_items} items, {self.n_interactions} interactions)")

    @property
    def users(self) -> np.ndarray:
        """Not held (AttributeError): the rows are read chunk by chunk with `chunks`."""
        raise AttributeError(f"{self!r} does not hold its rows; read them with chunks()")

    items = users

    @property
    def binary_csr(self) -> sp.csr_matrix:
        """The positives (every distinct observed pair, 1.0; sorted rows)."""
        return self.positives

    @cached_property
    def user_counts(self) -> np.ndarray:
        """Distinct items per user (a pair logged several times counts once)."""
        return np.diff(self.positives.indptr).astype(np.int64)

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Distinct users per item (a pair logged several times counts once)."""
        return np.bincount(self.positives.indices, minlength=self.n_items).astype(np.int64)

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[Chunk]:
        """``(users, items)`` int32 index arrays of at most ``chunk_rows`` rows each, the row
        groups in file order, or in a random order drawn from ``rng``."""
        groups = np.arange(self._file.num_row_groups)
        if rng is not None:
            groups = rng.permutation(groups)
        for users, items in self._raw_chunks(groups.tolist()):
            yield (self.user_map.to_index(external_ids(users)).astype(np.int32),
                   self.item_map.to_index(external_ids(items)).astype(np.int32))

    def _raw_chunks(self, groups: list[int] | None = None) -> Iterator[Chunk]:
        """The id columns' raw values, record batch by record batch."""
        import pyarrow as pa

        try:
            for batch in self._file.iter_batches(self.chunk_rows, row_groups=groups,
                                                 columns=list(self.columns)):
                user, item = (batch.column(c) for c in self.columns)
                if user.null_count or item.null_count:
                    raise DataFormatError(self.path, None, "missing user or item id")
                yield user.to_numpy(zero_copy_only=False), item.to_numpy(zero_copy_only=False)
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(self.path, None, f"cannot read ({exc})") from None

    def _distinct_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct raw user and item ids of the whole file (one pass)."""
        users: list[np.ndarray] = []
        items: list[np.ndarray] = []
        for chunk_users, chunk_items in self._raw_chunks():
            users.append(pd.unique(chunk_users))
            items.append(pd.unique(chunk_items))
        if not users:
            raise DataFormatError(self.path, None, "no interactions (the file is empty)")
        return pd.unique(np.concatenate(users)), pd.unique(np.concatenate(items))

    def _positives(self) -> sp.csr_matrix:
        """The user x item 0/1 matrix of the observed pairs (one pass)."""
        users = np.empty(self.n_interactions, dtype=np.int32)
        items = np.empty(self.n_interactions, dtype=np.int32)
        at = 0
        for chunk_users, chunk_items in self.chunks():
            users[at:at + len(chunk_users)], items[at:at + len(chunk_items)] = chunk_users, chunk_items
            at += len(chunk_users)
        matrix = sp.csr_matrix((np.ones(at, np.float32), (users[:at], items[:at])),
                               shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        matrix.sort_indices()
        matrix.data[:] = 1.0
        return matrix


def interaction_chunks(data: Interactions | Events, chunk_rows: int,
                       rng: np.random.Generator | None = None) -> Iterator[Chunk]:
    """``(users, items)`` of in-memory interactions or events in consecutive chunks of
    ``chunk_rows`` rows (in a random order of chunks drawn from ``rng`` when given)."""
    chunk_rows = COUNT.check("chunk_rows", chunk_rows)
    starts = np.arange(0, len(data), chunk_rows)
    if rng is not None:
        starts = rng.permutation(starts)
    for lo in starts.tolist():
        yield data.users[lo:lo + chunk_rows], data.items[lo:lo + chunk_rows]


def shuffled_chunks(users: np.ndarray, items: np.ndarray, chunk_rows: int,
                    rng: np.random.Generator) -> Iterator[Chunk]:
    """``(users, items)`` in one random order drawn from ``rng``, cut into chunks of
    ``chunk_rows`` rows (the order is drawn when the first chunk is asked for)."""
    chunk_rows = COUNT.check("chunk_rows", chunk_rows)
    order = rng.permutation(len(users))
    for lo in range(0, len(order), chunk_rows):
        part = order[lo:lo + chunk_rows]
        yield users[part], items[part]


def pointwise_arrays(users: np.ndarray, items: np.ndarray, sampler: NegativeSampler,
                     rng: np.random.Generator, negatives: int) -> Arrays:
    """Every positive ``(users[n], items[n])`` with label 1, then ``negatives`` sampled items
    of each user with label 0 (He et al. 2017, section 3.1.1): ``user``, ``item`` (int64),
    ``label`` (float32)."""
    users, items = users.astype(np.int64, copy=False), items.astype(np.int64, copy=False)
    drawn = sampler.sample(users, negatives, rng).ravel()
    n_pos = len(users)
    return {"user": np.concatenate([users, np.repeat(users, negatives)]),
            "item": np.concatenate([items, drawn]),
            "label": np.concatenate([np.ones(n_pos, np.float32),
                                     np.zeros(n_pos * negatives, np.float32)])}


def pairwise_arrays(users: np.ndarray, items: np.ndarray, sampler: NegativeSampler,
                    rng: np.random.Generator, negatives: int) -> Arrays:
    """Every positive ``(users[n], items[n])`` paired with ``negatives`` sampled items of its
    user, one triple each, a positive's triples adjacent (BPR): ``user``, ``positive``,
    ``negative`` (int64)."""
    users, items = users.astype(np.int64, copy=False), items.astype(np.int64, copy=False)
    drawn = sampler.sample(users, negatives, rng).ravel()
    return {"user": np.repeat(users, negatives), "positive": np.repeat(items, negatives),
            "negative": drawn}


def pair_batches(chunks: Iterable[Chunk], sampler: NegativeSampler, batch_size: int,
                 rng: np.random.Generator, negatives: int = 1) -> Iterator[Arrays]:
    """BPR mini-batches from ``chunks`` (module docstring): ``user``, ``positive`` and
    ``negative`` int64 arrays, each interaction repeated once per sampled negative."""
    batch_size = COUNT.check("batch_size", batch_size)
    negatives = COUNT.check("negatives", negatives)
    for users, items in chunks:
        order = rng.permutation(len(users))
        triples = pairwise_arrays(users[order], items[order], sampler, rng, negatives)
        for lo in range(0, len(order) * negatives, batch_size):
            yield {k: v[lo:lo + batch_size] for k, v in triples.items()}
