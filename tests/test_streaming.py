"""Streaming: Parquet chunk sources agree with the in-memory data, BPR mini-batches cover
every interaction with valid negatives, and the trainer learns from a stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data import Interactions
from recforge.data.events import Events
from recforge.data.readers import DataFormatError
from recforge.data.sampling import NegativeSampler
from recforge.data.streaming import ParquetInteractions, interaction_chunks, pair_batches
from recforge.data.synthetic import generate, write_parquet
from recforge.errors import UnknownNameError
from recforge.models.neural.ncf import NCFModule
from recforge.nn.batching import tensor_batches
from recforge.nn.trainer import Trainer, TrainingConfig, bpr_loss

DATA = {"n_users": 300, "n_items": 150, "n_interactions": 6000, "feedback": "implicit"}


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("stream") / "log.parquet", chunk_users=64,
                         **DATA)


def test_scan_matches_the_in_memory_interactions(parquet: Path) -> None:
    source = ParquetInteractions(parquet, chunk_rows=500)
    data = Interactions.from_parquet(parquet)
    assert source.user_map == data.user_map and source.item_map == data.item_map
    assert (source.positives != data.binary_csr).nnz == 0 and len(source) == len(data)
    chunks = list(source.chunks())
    assert max(len(users) for users, _ in chunks) == 500
    assert np.array_equal(np.concatenate([u for u, _ in chunks]), data.users)
    shuffled = list(source.chunks(np.random.default_rng(0)))
    assert sorted(len(u) for u, _ in shuffled) == sorted(len(u) for u, _ in chunks)
    assert not np.array_equal(np.concatenate([u for u, _ in shuffled]), data.users)


def test_string_ids_follow_the_id_rule(tmp_path: Path) -> None:
    path = tmp_path / "ids.parquet"
    pd.DataFrame({"user": ["7", "007", "8"], "item": ["1", "2", "1"]}).to_parquet(path)
    source = ParquetInteractions(path, chunk_rows=1)
    assert source.user_map.ids.tolist() == ["007", "7", "8"]
    assert source.item_map.ids.dtype.kind == "i"
    assert source.positives.toarray().tolist() == [[0, 1], [1, 0], [1, 0]]


def test_unreadable_files_and_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="bad.parquet"):
        ParquetInteractions(bad)
    path = tmp_path / "cols.parquet"
    pd.DataFrame({"u": [1], "item": [2]}).to_parquet(path)
    with pytest.raises(UnknownNameError, match="'user'"):
        ParquetInteractions(path)


def test_pair_batches_cover_each_interaction_with_true_negatives() -> None:
    data = generate(seed=1, **DATA)
    sampler = NegativeSampler(data.binary_csr)
    rng = np.random.default_rng(0)
    batches = list(pair_batches(interaction_chunks(data, 1000, rng), sampler, 256, rng,
                                negatives=3))
    assert max(len(b["user"]) for b in batches) == 256
    users, pos, neg = (np.concatenate([b[k] for b in batches])
                       for k in ("user", "positive", "negative"))
    assert len(users) == 3 * len(data)
    pairs = pd.Series(users * data.n_items + pos).value_counts()
    expected = pd.Series(data.users.astype(np.int64) * data.n_items + data.items).value_counts()
    assert pairs.sort_index().equals(expected.sort_index() * 3)
    assert not sampler.is_positive(users, neg).any()


def test_events_are_chunked_like_interactions() -> None:
    data = generate(seed=3, **DATA)
    events = Events(data.users, data.items, user_map=data.user_map, item_map=data.item_map,
                    labels={"click": np.ones(len(data))})
    chunks = list(interaction_chunks(events, 1000))
    assert [len(u) for u, _ in chunks] == [1000] * 6
    assert np.array_equal(np.concatenate([i for _, i in chunks]), data.items)


def test_trainer_learns_from_a_streamed_epoch() -> None:
    data = generate(seed=2, **DATA)
    sampler = NegativeSampler(data.binary_csr)
    torch.manual_seed(0)
    module = NCFModule(data.n_users, data.n_items, "dot", factors=8, init_std=0.1)
    trainer = Trainer(module, TrainingConfig(train_batch_size=128, learning_rate=0.02,
                                             device="cpu"), torch.device("cpu"))
    rng = np.random.default_rng(0)
    losses = []
    for epoch in range(4):
        batches = pair_batches(interaction_chunks(data, 2000, rng), sampler, 128, rng)
        record = trainer.run_batches(epoch, tensor_batches(batches, torch.device("cpu")),
                                     len(data), bpr_loss)
        assert record["samples"] == len(data)
        losses.append(record["loss"])
    assert losses[-1] < 0.8 * losses[0]
