"""Sequential models (SASRec, GRU4Rec, BERT4Rec): the model contract, learning a sequential
pattern, scoring histories never seen in training, the tie rule of query histories,
persistence, seeding, parameter checks and FAISS serving of the embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import require_module

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.errors import ParameterError
from recforge.models import Recommender, create_model
from recforge.retrieval import Retriever, make_index
from recforge.testing import ModelContract

#: small, fast settings of each model (the contract's data has 40 items)
SMALL: dict[str, dict[str, Any]] = {
    "sasrec": {"embedding_dim": 16, "history_length": 8, "epochs": 2, "train_batch_size": 32},
    "gru4rec": {"embedding_dim": 16, "history_length": 8, "epochs": 2, "train_batch_size": 8},
    "bert4rec": {"embedding_dim": 16, "history_length": 8, "epochs": 2, "train_batch_size": 32},
}
MODELS = list(SMALL)


class TestSASRec(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("sasrec", seed=seed, **SMALL["sasrec"])


class TestSASRecPaperLoss(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("sasrec", seed=seed, loss="bce", **SMALL["sasrec"])


class TestGRU4Rec(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("gru4rec", seed=seed, **SMALL["gru4rec"])


class TestGRU4RecBPRMax(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("gru4rec", seed=seed, loss="bpr-max", negatives=8,
                            **SMALL["gru4rec"])


class TestBERT4Rec(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("bert4rec", seed=seed, **SMALL["bert4rec"])


# ---------------------------------------------------------------------- a learnable pattern
N_CHAIN = 30


def chain_data(n_users: int = 200, n_items: int = N_CHAIN, seed: int = 0) -> Interactions:
    """Each user watches items ``s, s+1, s+2, ...`` (mod ``n_items``) from a random start, one
    per second: the next item is the last one plus one."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 16, size=n_users)
    users = np.repeat(np.arange(n_users), lengths)
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = (np.repeat(rng.integers(0, n_items, size=n_users), lengths) + step) % n_items
    frame = pd.DataFrame({"user": users, "item": items, "timestamp": 1_000 + step})
    return Interactions.from_pandas(frame, name="chain")


def chain_queries(starts: np.ndarray, length: int = 4) -> QueryBatch:
    """Anonymous queries with the histories ``start, ..., start + length - 1`` (mod)."""
    items = (starts[:, None] + np.arange(length)) % N_CHAIN
    indptr = np.arange(len(starts) + 1) * length
    return QueryBatch(np.full(len(starts), -1), indptr, items.ravel())


LEARN: dict[str, dict[str, Any]] = {
    "sasrec": {"embedding_dim": 32, "history_length": 10, "epochs": 30, "loss": "ce",
               "train_batch_size": 64, "learning_rate": 0.005},
    "gru4rec": {"embedding_dim": 32, "history_length": 10, "epochs": 10,
                "train_batch_size": 32, "learning_rate": 0.01, "dropout": 0.0},
    "gru4rec-top1-max": {"embedding_dim": 32, "history_length": 10, "epochs": 10,
                         "loss": "top1-max", "negatives": 16, "train_batch_size": 32,
                         "learning_rate": 0.01, "dropout": 0.0},
    "bert4rec": {"embedding_dim": 32, "history_length": 10, "epochs": 60,
                 "train_batch_size": 64, "learning_rate": 0.005, "dropout": 0.0},
}


@pytest.fixture(scope="module")
def chain() -> Interactions:
    return chain_data()


@pytest.fixture(scope="module")
def learned(chain: Interactions) -> dict[str, Recommender]:
    return {name: create_model(name.split("-")[0], **params).fit(chain)
            for name, params in LEARN.items()}


@pytest.mark.parametrize("name", list(LEARN))
def test_learns_that_the_next_item_follows_the_last(learned, name: str) -> None:
    model = learned[name]
    starts = np.arange(N_CHAIN)
    top, _ = model.recommend(chain_queries(starts), k=1)
    # internal index == external id here (items 0..29 all occur)
    expected = (starts + 4) % N_CHAIN
    assert (top[:, 0] == expected).mean() >= 0.9  # chance: 1 in 26


@pytest.mark.parametrize("name", list(LEARN))
def test_appending_an_item_changes_the_recommendations(learned, name: str) -> None:
    model = learned[name]
    before = chain_queries(np.array([3]), length=3)
    after = chain_queries(np.array([3]), length=4)
    top_before, _ = model.recommend(before, k=5)
    top_after, _ = model.recommend(after, k=5)
    assert top_before[0, 0] == 6 and top_after[0, 0] == 7
    # a known user's fresh history is scored from the history, not their training data
    known = QueryBatch(np.array([0, 0]), np.array([0, 3, 7]),
                       np.array([10, 11, 12, 20, 21, 22, 23]))
    top, _ = model.recommend(known, k=1)
    assert top[:, 0].tolist() == [13, 24]


@pytest.mark.parametrize("name", list(LEARN))
def test_equal_timestamps_in_a_query_follow_the_tie_rule(learned, name: str) -> None:
    model = learned[name]
    stamped = QueryBatch(np.array([-1, -1]), np.array([0, 3, 6]),
                         np.array([5, 6, 7, 7, 5, 6]),
                         timestamps=np.array([10, 11, 12, 12, 10, 11]))
    plain = QueryBatch(np.array([-1]), np.array([0, 3]), np.array([5, 6, 7]))
    scores = model.score(stamped)
    assert np.array_equal(scores[0], scores[1])  # reordered by time
    assert np.allclose(scores[0], model.score(plain)[0], atol=1e-5)  # another batch size
    tie = QueryBatch(np.array([-1, -1]), np.array([0, 3, 6]), np.array([5, 7, 6, 5, 6, 7]),
                     timestamps=np.array([10, 12, 12, 10, 12, 12]))
    file_order = model.score(tie)
    assert not np.allclose(file_order[0], file_order[1], atol=1e-3)  # file-order: as given
    by_item = model.set_params(ties="item-id").score(tie)
    model.set_params(ties="file-order")
    assert np.array_equal(by_item[0], by_item[1])  # item-id: the larger item later
    assert np.array_equal(by_item[0], file_order[1])


def test_user_indices_are_their_time_ordered_sequences(chain: Interactions, learned) -> None:
    model = learned["sasrec"]
    history = model.training_history([0, -1])
    mine = chain.users == 0
    order = np.argsort(chain.timestamps[mine], kind="stable")
    assert history.history(0).tolist() == chain.items[mine][order].tolist()
    assert history.lengths[1] == 0


# ---------------------------------------------------------------------- persistence, seeds
@pytest.mark.parametrize("name", MODELS)
def test_save_load_and_seeds_give_bit_identical_scores(tmp_path: Path, chain, name: str) -> None:
    queries = chain_queries(np.arange(N_CHAIN))
    a = create_model(name, seed=5, **SMALL[name]).fit(chain)
    b = create_model(name, seed=5, **SMALL[name]).fit(chain)
    c = create_model(name, seed=6, **SMALL[name]).fit(chain)
    loaded = Recommender.load(a.save(tmp_path / name))
    assert np.array_equal(a.score(queries), b.score(queries))
    assert np.array_equal(a.score(queries), loaded.score(queries))
    assert np.array_equal(a.score(np.arange(20)), loaded.score(np.arange(20)))
    assert not np.array_equal(a.score(queries), c.score(queries))


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize(("name", "params", "named"), [
    ("sasrec", {"heads": 3}, "heads"),
    ("sasrec", {"history_length": 1}, "history_length"),
    ("sasrec", {"loss": "bpr"}, "loss"),
    ("sasrec", {"dropout": 1.0}, "dropout"),
    ("sasrec", {"blocks": 0}, "blocks"),
    ("gru4rec", {"loss": "bce"}, "loss"),
    ("gru4rec", {"reg": -1.0}, "reg"),
    ("gru4rec", {"negatives": 0}, "negatives"),
    ("bert4rec", {"mask_probability": 1.0}, "mask_probability"),
    ("bert4rec", {"heads": 5}, "heads"),
    ("bert4rec", {"ties": "alphabetical"}, "ties"),
])
def test_bad_values_are_refused_in_one_line_naming_the_parameter(name: str, params: dict,
                                                                 named: str) -> None:
    with pytest.raises(ParameterError) as err:
        create_model(name, **params)
    assert str(err.value).startswith(named) and "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "params", "named"), [
    ("sasrec", {"heads": 3}, "heads"),
    ("bert4rec", {"embedding_dim": 63}, "embedding_dim"),
    ("bert4rec", {"embedding_dim": 48, "heads": 5}, "heads"),
])
def test_heads_and_width_are_checked_together_by_set_params(name: str, params: dict,
                                                            named: str) -> None:
    """A width the heads cannot split is refused by `set_params` as by the constructor,
    naming the parameter that left its default, and nothing changes."""
    model = create_model(name)
    before = model.get_params()
    with pytest.raises(ParameterError) as err:
        model.set_params(**params)
    assert str(err.value).startswith(named)
    assert model.get_params() == before
    assert model.set_params(embedding_dim=96, heads=3).get_params()["heads"] == 3


# ---------------------------------------------------------------------- retrieval
def test_sasrec_embeddings_serve_faiss_with_high_recall() -> None:
    require_module("faiss")
    import faiss

    chain = chain_data(n_users=600, n_items=1000)
    model = create_model("sasrec", embedding_dim=16, history_length=8, epochs=3,
                         loss="ce").fit(chain)
    users = np.arange(chain.n_users)
    queries = model.user_embeddings(users)
    items = model.item_embeddings()
    assert np.allclose(queries @ items.T, model.score(users), atol=1e-5)
    exact, _ = model.recommend(users, k=10, exclude_seen=False)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index = make_index("hnsw", m=8, ef_search=32).build(items)
        found, _ = index.search(queries, 10)
    finally:
        faiss.omp_set_num_threads(previous)
    recall = np.mean([len(np.intersect1d(f, e)) / 10 for f, e in zip(found, exact)])
    assert recall >= 0.95
    retriever = Retriever.from_data(model, chain)
    answer = retriever.recommend(chain.user_map.ids[3], k=5)
    assert answer.source == "index"
    assert answer.items.tolist() == model.recommend([3], k=5)[0][0].tolist()
    history = chain.item_map.ids[[4, 5, 6]]
    fresh = retriever.recommend_for(history=history, k=3)
    queries = QueryBatch(np.array([-1]), np.array([0, 3]), chain.item_map.to_index(history))
    assert fresh.source == "encoder"
    assert fresh.items.tolist() == model.recommend(queries, k=3)[0][0].tolist()
