"""Partitioned Parquet read in bounded chunks (`recforge.data.parquet_stream`): the same
positives as the log in memory, chunks of at most ``chunk_rows`` rows, memory that follows
the chunk size and not the data size, streamed training, user blocks for evaluation."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recforge.data.interactions import IdMap, Interactions
from recforge.data.parquet_stream import ParquetDataset, write_partitioned
from recforge.data.readers import DataFormatError
from recforge.errors import OutputExistsError, UnknownNameError
from recforge.models import create_model


def frames(n_rows: int, seed: int = 0, per_frame: int = 7000) -> list[pd.DataFrame]:
    """Random (user, item) rows over 3,000 users x 800 items as several frames."""
    rng = np.random.default_rng(seed)
    out = []
    for lo in range(0, n_rows, per_frame):
        n = min(per_frame, n_rows - lo)
        out.append(pd.DataFrame({"user": rng.integers(1, 3001, n), "item": rng.integers(1, 801, n),
                                 "timestamp": rng.integers(0, 10**9, n)}))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[pd.DataFrame]]:
    parts = frames(30_000)
    folder = write_partitioned(parts, tmp_path_factory.mktemp("pq") / "log", rows_per_file=8000)
    return folder, parts


def test_same_positives_and_ids_as_the_log_in_memory(small: tuple[Path, list]) -> None:
    folder, parts = small
    data = ParquetDataset(folder, chunk_rows=3000)
    log = pd.concat(parts, ignore_index=True)
    user_map, users = IdMap.from_values(log["user"].to_numpy())
    item_map, items = IdMap.from_values(log["item"].to_numpy())
    memory = Interactions(users, items, user_map=user_map, item_map=item_map)
    assert len(data) == len(log) == 30_000
    # a frame (7,000 rows) that does not fit in the current file (8,000) starts the next one
    assert sorted(p.name for p in folder.iterdir()) == [f"part-0000{k}.parquet" for k in range(5)]
    assert data.user_map == memory.user_map and data.item_map == memory.item_map
    assert (data.binary_csr != memory.binary_csr).nnz == 0
    chunks = list(data.chunks(np.random.default_rng(1)))
    assert max(len(u) for u, _ in chunks) <= 3000
    assert sum(len(u) for u, _ in chunks) == len(log)
    again = list(data.chunks(np.random.default_rng(1)))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(chunks, again))
    in_order = np.concatenate([u for u, _ in data.chunks()])
    assert np.array_equal(in_order, data.user_map.to_index(log["user"].to_numpy()))


def pass_peak(data: ParquetDataset) -> int:
    """Peak bytes of one pass over the chunks: numpy's (tracemalloc) plus Arrow's (its
    allocation sampled at every chunk)."""
    gc.collect()  # earlier objects freed now, not during the pass
    arrow_peak = 0
    tracemalloc.start()
    try:
        base = pa.total_allocated_bytes()
        for _ in data.chunks(np.random.default_rng(0)):
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - base)
        return tracemalloc.get_traced_memory()[1] + arrow_peak
    finally:
        tracemalloc.stop()


def test_memory_follows_the_chunk_size_not_the_data_size(tmp_path: Path) -> None:
    """Arrow decodes a row group at a time, so the configured bound is the chunk and the row
    group the dataset was written with (`write_partitioned`'s ``row_group_rows``)."""
    peaks = {}
    for size, n_rows in (("small", 32_000), ("large", 256_000)):
        for rows in (1000, 16_000):
            folder = write_partitioned(frames(n_rows, 1), tmp_path / f"{size}{rows}",
                                       rows_per_file=32_000, row_group_rows=rows)
            peaks[size, rows] = pass_peak(ParquetDataset(folder, chunk_rows=rows))
    # the large log's (user, item) indices alone are 2 MB (8 bytes a row): a pass over it
    # holds far less, about what it holds over a log eight times smaller
    for rows in (1000, 16_000):
        assert peaks["large", rows] < 256_000 * 8 / 2, peaks
        assert peaks["large", rows] < peaks["small", rows] + 512_000, peaks
    # a 15,000-row larger chunk: at least its int32 indices more (8 bytes a row), and in all
    # ~100 bytes per chunk row at most
    assert peaks["large", 16_000] - peaks["large", 1000] >= 15_000 * 8 or \
        peaks["small", 16_000] - peaks["small", 1000] >= 15_000 * 8, peaks
    assert peaks["large", 16_000] < 16_000 * 100, peaks


def test_streaming_models_train_on_the_dataset(small: tuple[Path, list]) -> None:
    data = ParquetDataset(small[0], chunk_rows=4000)
    model = create_model("gmf", epochs=2, negatives=2, threads=1).fit(data)
    assert [h["samples"] for h in model.history_] == [3 * 30_000] * 2
    assert model.history_[1]["loss"] < model.history_[0]["loss"]
    items, _ = model.recommend(np.arange(5), k=10)
    seen = data.binary_csr[np.arange(5)].toarray()
    assert not seen[np.arange(5)[:, None], items].any()  # training items are excluded


def test_user_blocks_cover_every_user_once(small: tuple[Path, list]) -> None:
    data = ParquetDataset(small[0])
    blocks = list(data.user_blocks(700))
    users = np.concatenate([b for b, _ in blocks])
    assert max(len(b) for b, _ in blocks) <= 700
    assert np.array_equal(users, np.flatnonzero(data.user_counts))
    for block, rows in blocks:
        assert (rows != data.binary_csr[block]).nnz == 0


def test_bad_datasets_are_one_line_errors(small: tuple[Path, list], tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="no column 'uid'"):
        ParquetDataset(small[0], user="uid")
    with pytest.raises(OutputExistsError, match="is not empty"):
        write_partitioned(frames(10), small[0])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.parquet").write_text("not parquet")
    with pytest.raises(DataFormatError, match="not a readable Parquet dataset"):
        ParquetDataset(bad)
    with pytest.raises(ValueError, match="chunk_rows"):
        ParquetDataset(small[0], chunk_rows=0)
