"""Interaction logs larger than memory: partitioned Parquet read in bounded chunks with
PyArrow datasets (``pyarrow.dataset``).

`ParquetDataset` is a `recforge.data.streaming.ParquetInteractions` over a *dataset* instead
of one file: a folder of Parquet files (hive-style ``key=value`` sub-folders included, e.g.
one per day) or a list of files, read fragment by fragment (one file at a time) in record
batches of at most ``chunk_rows`` rows, the fragments in a seeded random order per epoch.
Everything `ParquetInteractions` offers holds: the id maps and the positives matrix are built
by streaming passes, and every model whose ``trains_on`` lists `ParquetInteractions` (BPR and
the neural models) streams its epochs from `ParquetDataset.chunks`, so the rows of the log
are never in memory together. Memory is one record batch of ``chunk_rows`` rows (Arrow's
buffers plus their int32 indices) and the row group Arrow decodes it from (the files' row
group size: `write_partitioned` ``row_group_rows``) beyond the positives matrix (``O(distinct pairs)`` int32
indices, which exact negative sampling and the exclusion of seen items need) and the id maps.

`ParquetDataset.user_blocks` serves full-ranking evaluation in user batches: the positives
of ``users_per_block`` users at a time as CSR rows, so scoring memory is ``users_per_block x
n_items`` whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import IdMap, external_ids
from recforge.data.readers import DataFormatError
from recforge.data.streaming import COUNT, Chunk, ParquetInteractions
from recforge.errors import UnknownNameError


class ParquetDataset(ParquetInteractions):
    """An interaction log in partitioned Parquet (module docstring): ``source`` is a folder
    or a list of files; ``user`` and ``item`` name the id columns; ``partitioning`` is
    passed to ``pyarrow.dataset.dataset`` (default ``"hive"``: ``key=value`` folders)."""

    def __init__(self, source: str | Path | Sequence[str | Path], user: str = "user",
                 item: str = "item", chunk_rows: int = 1 << 20,
                 partitioning: str | None = "hive"):
        import pyarrow as pa
        import pyarrow.dataset as ds

        self.path = Path(source) if isinstance(source, str | Path) else Path(str(source[0]))
        self.columns = (user, item)
        self.chunk_rows = COUNT.check("chunk_rows", chunk_rows)
        files = str(source) if isinstance(source, str | Path) else [str(s) for s in source]
        try:
            self._dataset = ds.dataset(files, format="parquet", partitioning=partitioning)
            self._fragments = list(self._dataset.get_fragments())
            names = self._dataset.schema.names
            for column in self.columns:
                if column not in names:
                    raise UnknownNameError(f"{self.path}: no column {column!r} (have {names})")
            self.n_interactions = int(sum(f.count_rows() for f in self._fragments))
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(self.path, None, f"not a readable Parquet dataset "
                                                   f"({exc})") from None
        self.user_map, self.item_map = (IdMap.from_values(v)[0] for v in self._distinct_ids())
        self.positives = self._positives()

    def __repr__(self) -> str:
        return (f"ParquetDataset({str(self.path)!r}, {len(self._fragments)} files, "
                f"{self.n_users} users x {self.n_items} items, {self.n_interactions} "
                "interactions)")

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[Chunk]:
        """``(users, items)`` int32 index arrays of at most ``chunk_rows`` rows each, the files
        in dataset order, or in a random order drawn from ``rng``."""
        order = np.arange(len(self._fragments))
        if rng is not None:
            order = rng.permutation(order)
        for users, items in self._raw_chunks(order.tolist()):
            yield (self.user_map.to_index(external_ids(users)).astype(np.int32),
                   self.item_map.to_index(external_ids(items)).astype(np.int32))

    def _raw_chunks(self, groups: list[int] | None = None) -> Iterator[Chunk]:
        """The id columns' raw values, record batch by record batch, of the fragments
        ``groups`` (all, in order, when None)."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        # no pre-buffering of the file's column chunks and no read-ahead (Arrow's defaults
        # fetch the whole file and decode 16 batches ahead): one row group, one batch at a time
        options = ds.ParquetFragmentScanOptions(pre_buffer=False)
        chosen = range(len(self._fragments)) if groups is None else groups
        try:
            for index in chosen:
                # a fresh fragment: a scanned one keeps its file's metadata cached
                known = self._fragments[index]
                fragment = known.format.make_fragment(known.path, known.filesystem,
                                                      known.partition_expression)
                for batch in fragment.to_batches(columns=list(self.columns),
                                                 batch_size=self.chunk_rows,
                                                 batch_readahead=0, fragment_readahead=0,
                                                 fragment_scan_options=options,
                                                 use_threads=False):
                    user, item = (batch.column(c) for c in self.columns)
                    if user.null_count or item.null_count:
                        raise DataFormatError(Path(fragment.path), None,
                                              "missing user or item id")
                    yield (user.to_numpy(zero_copy_only=False),
                           item.to_numpy(zero_copy_only=False))
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(self.path, None, f"cannot read ({exc})") from None

    def user_blocks(self, users_per_block: int) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """``(user indices, their positives rows)`` for consecutive blocks of at most
        ``users_per_block`` users that have positives (full-ranking evaluation in batches)."""
        users_per_block = COUNT.check("users_per_block", users_per_block)
        users = np.flatnonzero(np.diff(self.positives.indptr))
        for lo in range(0, len(users), users_per_block):
            block = users[lo:lo + users_per_block]
            yield block, self.positives[block]


def write_partitioned(frames: Any, folder: str | Path, rows_per_file: int = 1 << 22,
                      row_group_rows: int = 1 << 20) -> Path:
    """Write an iterable of data frames as Parquet files ``part-00000.parquet``, ... in
    ``folder`` (created; must be absent or empty), at most ``rows_per_file`` rows each in row
    groups of at most ``row_group_rows`` (Arrow decodes a row group at a time: with
    `ParquetDataset`'s ``chunk_rows`` it bounds reading memory). Memory is one frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.errors import OutputExistsError

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise OutputExistsError(f"{folder} is not empty; write the dataset to a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    rows_per_file = COUNT.check("rows_per_file", rows_per_file)
    row_group_rows = COUNT.check("row_group_rows", row_group_rows)
    writer, written, part = None, 0, 0
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            for lo in range(0, table.num_rows, rows_per_file):
                piece = table.slice(lo, rows_per_file)
                if writer is None or written + piece.num_rows > rows_per_file:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", piece.schema)
                    written, part = 0, part + 1
                writer.write_table(piece, row_group_size=row_group_rows)
                written += piece.num_rows
    finally:
        if writer is not None:
            writer.close()
    return folder
