"""Streaming an epoch in mini-batches from chunks of an interaction log, so that the epoch's
examples (and the log itself) never have to be in memory at once.

A *chunk source* yields ``(users, items)`` index arrays of at most ``chunk_rows`` rows:
`ParquetInteractions.chunks` reads a Parquet file's row groups (in a random order when given
a generator) in record batches; `interaction_chunks` cuts in-memory `Interactions` or
`Events`.
`pair_batches` turns chunks into BPR-style mini-batches: each chunk is shuffled, each of its
interactions gets ``negatives`` items drawn by the shared `NegativeSampler`, and the triples
are cut into batches of ``batch_size`` (the last batch of a chunk may be shorter). Memory is
one chunk of examples plus the sampler's positives (``O(interactions)`` int32/int64 indices,
which exact negative sampling needs), independent of the number of negatives per positive.

`ParquetInteractions` scans the file twice when built (record batch by record batch): first
the distinct user and item ids, which give the `IdMap` s by the id rule of `Interactions`
(int64 when every id is a canonical integer, else strings), then the index pairs, which give
the positives matrix for the sampler and for excluding seen items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.events import Events
from recforge.data.interactions import IdMap, IdSpace, Interactions, external_ids
from recforge.data.readers import DataFormatError
from recforge.data.sampling import NegativeSampler
from recforge.errors import UnknownNameError
from recforge.params import MAX_COUNT, Integer

Chunk = tuple[np.ndarray, np.ndarray]
COUNT = Integer(1, MAX_COUNT)


class ParquetInteractions(IdSpace):
    """An interaction log in a Parquet file, read ``chunk_rows`` rows at a time (module
    docstring). ``user`` and ``item`` name its id columns."""

    def __init__(self, path: str | Path, user: str = "user", item: str = "item",
                 chunk_rows: int = 1 << 20):
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.columns = (user, item)
        self.chunk_rows = COUNT.check("chunk_rows", chunk_rows)
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise DataFormatError(self.path, None, f"not a readable Parquet file ({exc})") from None
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


def pair_batches(chunks: Iterable[Chunk], sampler: NegativeSampler, batch_size: int,
                 rng: np.random.Generator, negatives: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """BPR mini-batches from ``chunks`` (module docstring): ``user``, ``positive`` and
    ``negative`` int64 arrays, each interaction repeated once per sampled negative."""
    batch_size = COUNT.check("batch_size", batch_size)
    negatives = COUNT.check("negatives", negatives)
    for users, items in chunks:
        order = rng.permutation(len(users))
        users, items = users[order].astype(np.int64), items[order].astype(np.int64)
        drawn = sampler.sample(users, negatives, rng).ravel()
        users, items = np.repeat(users, negatives), np.repeat(items, negatives)
        for lo in range(0, len(users), batch_size):
            part = slice(lo, lo + batch_size)
            yield {"user": users[part], "positive": items[part], "negative": drawn[part]}
