"""Streaming: Parquet chunk sources agree with the in-memory data, BPR mini-batches cover
every interaction with valid negatives, the trainer learns from a stream, and a model's own
`fit` streams its epochs from a Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_ials import planted_clusters

from recforge.data import Interactions
from recforge.data.events import Events
from recforge.data.readers import DataFormatError
from recforge.data.sampling import NegativeSampler
from recforge.data.streaming import (
    ParquetInteractions,
    interaction_chunks,
    pair_batches,
    pointwise_arrays,
    shuffled_chunks,
)
from recforge.data.synthetic import generate, write_parquet
from recforge.errors import UnknownNameError
from recforge.evaluation import Evaluator, early_stopping
from recforge.models import GMF, MLP, NeuMF, Recommender
from recforge.models.neural.ncf import NCFModule
from recforge.nn.batching import as_batch, chunked_batches, tensor_batches
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


def test_parquet_offers_what_fit_reads_without_its_rows(parquet: Path, tmp_path: Path) -> None:
    source = ParquetInteractions(parquet, chunk_rows=500)
    data = Interactions.from_parquet(parquet)
    positives = data.binary_csr
    assert (source.binary_csr != positives).nnz == 0 and source.ratings is None
    assert np.array_equal(source.user_counts, np.diff(positives.indptr))
    assert np.array_equal(source.item_counts,
                          np.bincount(positives.indices, minlength=data.n_items))
    assert len(source) == len(data) and not hasattr(source, "users")
    repeated = tmp_path / "repeated.parquet"
    pd.DataFrame({"user": [1, 1, 1, 2], "item": [5, 5, 6, 6]}).to_parquet(repeated)
    counts = ParquetInteractions(repeated)  # a pair logged twice counts once
    assert counts.user_counts.tolist() == [2, 1] and counts.item_counts.tolist() == [1, 2]
    assert len(counts) == 4
    with pytest.raises(AttributeError, match="read them with chunks"):
        source.items  # noqa: B018


def test_chunked_batches_cover_every_positive_one_chunk_at_a_time() -> None:
    data = generate(seed=1, **DATA)
    sampler = NegativeSampler(data.binary_csr)
    rng = np.random.default_rng(0)
    built: list[int] = []

    def build(users: np.ndarray, items: np.ndarray) -> dict[str, torch.Tensor]:
        built.append(len(users))
        return as_batch(pointwise_arrays(users, items, sampler, rng, 2))

    chunks = shuffled_chunks(sampler.users, sampler.items, 700, rng)
    stream = chunked_batches(chunks, build, 256, torch.Generator().manual_seed(0),
                             torch.device("cpu"))
    first = next(stream)
    assert built == [700] and len(first["user"]) == 256
    batches = [first, *stream]
    n_pos = len(sampler.users)
    assert built == [700] * (n_pos // 700) + [n_pos % 700] and n_pos % 700
    users, items, labels = (torch.cat([b[k] for b in batches]).numpy()
                            for k in ("user", "item", "label"))
    assert len(users) == 3 * n_pos and labels.sum() == n_pos
    assert np.array_equal(sampler.is_positive(users, items), labels == 1)
    pairs = np.sort(users[labels == 1] * data.n_items + items[labels == 1])
    assert np.array_equal(pairs, np.sort(sampler.users * data.n_items + sampler.items))


@pytest.fixture(scope="module")
def planted_parquet(tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[ParquetInteractions, Interactions, Interactions]:
    train, test = planted_clusters()
    path = tmp_path_factory.mktemp("planted") / "train.parquet"
    train.to_pandas().to_parquet(path, index=False, row_group_size=100)
    return ParquetInteractions(path, chunk_rows=64), train, test


PLANTED = {"factors": 4, "epochs": 10, "learning_rate": 0.02, "train_batch_size": 128}


def test_gmf_fitted_on_a_parquet_file_works(planted_parquet, tmp_path: Path) -> None:
    source, train, test = planted_parquet
    assert source.user_map == train.user_map and source.item_map == train.item_map
    model = GMF(seed=0, **PLANTED).fit(source)
    assert [h["samples"] for h in model.history_] == [5 * len(train)] * 10
    evaluator = Evaluator(train, test, metrics=["hr@10"])
    assert evaluator.evaluate(model).metrics["HR@10"] > 0.9
    top, _ = model.recommend([0, 50], k=5)
    assert not train.binary_csr[[0, 50]].toarray()[np.arange(2)[:, None], top].any()
    model.save(tmp_path / "gmf")
    loaded = Recommender.load(tmp_path / "gmf")
    assert np.array_equal(loaded.recommend([0, 50], k=5)[0], top)
    again = GMF(seed=0, **PLANTED).fit(source)
    assert np.array_equal(again.score([0, 50]), model.score([0, 50]))
    other = GMF(seed=1, **PLANTED).fit(source)
    assert not np.array_equal(other.score([0, 50]), model.score([0, 50]))


def test_early_stopping_on_a_parquet_fit(planted_parquet) -> None:
    source, train, test = planted_parquet
    model = GMF(seed=0, **{**PLANTED, "epochs": 30, "patience": 2})
    model.fit(source, early_stopping(train, test))
    scores = [h["ndcg@10"] for h in model.history_]
    assert len(scores) < 30 and model.best_epoch_ == 1 + int(np.argmax(scores))
    assert Evaluator(train, test, metrics=["ndcg@10"]).evaluate(model).metrics[
        "NDCG@10"] == pytest.approx(max(scores))


@pytest.mark.parametrize("make", [
    lambda: MLP(layers=(8, 4), epochs=2, train_batch_size=128),
    lambda: NeuMF(factors=4, layers=(8, 4), epochs=1, train_batch_size=128,
                  gmf_params={"epochs": 1}, mlp_params={"epochs": 1}),
], ids=["mlp", "neumf"])
def test_other_ncf_models_stream_from_a_parquet_file(planted_parquet, make) -> None:
    source, train, _ = planted_parquet
    model = make().fit(source)
    assert model.history_[0]["samples"] == 5 * len(train)
    assert model.recommend([3], k=4)[0].shape == (1, 4)
