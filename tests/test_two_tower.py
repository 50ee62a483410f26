"""Two-tower model: the model contract (without and with side features), the embedding
contract, histories, the sampled-softmax loss, cold start and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_ials import planted_clusters

from recforge.data import Interactions
from recforge.data.codec import FeatureCodec
from recforge.data.features import SideTable
from recforge.data.synthetic import generate
from recforge.errors import InputError
from recforge.evaluation import Evaluator
from recforge.models import MostPopular, Recommender, create_model
from recforge.models.retrieval.two_tower import TwoTower, histories, pad_histories
from recforge.testing import ModelContract, contract_data

SMALL = {"epochs": 3, "train_batch_size": 128, "layers": (32, 16), "id_dim": 16, "cat_dim": 4,
         "history_length": 5, "text_method": "hashed"}


def featured_data(n_users: int = 300, n_items: int = 200, seed: int = 0) -> Interactions:
    """Synthetic implicit data with user demographics, genres, titles and years."""
    return generate(n_users=n_users, n_items=n_items, n_interactions=6000, feedback="implicit",
                    seed=seed)


class TestTwoTower(ModelContract):
    def make_model(self, seed: int = 0) -> TwoTower:
        return TwoTower(seed=seed, **SMALL)


class TestTwoTowerMixedHardNegatives(ModelContract):
    def make_model(self, seed: int = 0) -> TwoTower:
        return TwoTower(seed=seed, uniform_negatives=16, hard_negatives=4,
                        learn_temperature=True, **SMALL)


@pytest.fixture(scope="module")
def featured() -> Interactions:
    return featured_data()


@pytest.fixture(scope="module")
def fitted(featured: Interactions) -> TwoTower:
    return TwoTower(seed=0, **SMALL).fit(featured)


def test_score_is_the_dot_product_of_the_embeddings(fitted: TwoTower,
                                                    featured: Interactions) -> None:
    users = np.array([0, 5, 17, -1, featured.n_users + 3])
    emb = fitted.user_embeddings(users) @ fitted.item_embeddings().T
    assert np.allclose(fitted.score(users), emb, rtol=1e-5, atol=1e-4)
    assert fitted.item_embeddings().shape == (featured.n_items, SMALL["layers"][-1] + 1)


def test_known_user_vectors_have_unit_length(fitted: TwoTower) -> None:
    vectors = fitted.user_embeddings(np.arange(10))[:, :-1]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_features_reach_the_module(fitted: TwoTower, featured: Interactions) -> None:
    widths = fitted.item_widths_
    # year + genres multi-hot + hashed title
    n_genres = len(featured.item_features.multihot["genres"][0])
    assert widths["dense"] == 1 + n_genres + 256
    user_codec = FeatureCodec.from_dict(fitted.user_codec_)
    assert set(user_codec.names("categorical")) == {"age_bucket", "gender", "occupation"}
    assert fitted.module_.user_cats.max() > 0 and fitted.module_.item_dense.abs().sum() > 0


def test_histories_hold_the_items_before_each_interaction() -> None:
    data = Interactions.from_arrays([0, 0, 0, 1, 1], [3, 1, 2, 0, 4],
                                    timestamps=[30, 10, 20, 5, 1])
    users, items, before, final = histories(data, 2)
    pad = data.n_items
    assert users.tolist() == [0, 0, 0, 1, 1] and items.tolist() == [1, 2, 3, 4, 0]
    assert before.tolist() == [[pad, pad], [pad, 1], [1, 2], [pad, pad], [pad, 4]]
    assert final.tolist() == [[2, 3], [4, 0]]


def test_histories_order_equal_timestamps_by_the_tie_rule() -> None:
    # user 0 logged item 2 then item 1 in the same second, after item 0
    data = Interactions.from_arrays([0, 0, 0], [0, 2, 1], timestamps=[5, 9, 9])
    pad = data.n_items
    _, items, before, final = histories(data, 2, ties="file-order")
    assert items.tolist() == [0, 2, 1] and final.tolist() == [[2, 1]]
    assert before.tolist() == [[pad, pad], [pad, 0], [0, 2]]
    _, items, _, final = histories(data, 2, ties="item-id")
    assert items.tolist() == [0, 1, 2] and final.tolist() == [[1, 2]]
    orders = {tuple(histories(data, 2, ties="random", seed=s)[1]) for s in range(20)}
    assert orders == {(0, 2, 1), (0, 1, 2)}
    assert np.array_equal(histories(data, 2, "random", 7)[1], histories(data, 2, "random", 7)[1])


def test_the_model_follows_its_tie_rule_default_file_order() -> None:
    data = Interactions.from_arrays([0, 0, 0, 1, 1], [2, 3, 1, 0, 4],
                                    timestamps=[5, 9, 9, 1, 2])
    assert TwoTower().ties == "file-order"
    tiny = {**SMALL, "epochs": 1}
    by_file = TwoTower(**tiny).fit(data).module_.user_history[0].tolist()
    by_id = TwoTower(ties="item-id", **tiny).fit(data).module_.user_history[0].tolist()
    assert by_file[-2:] == [3, 1] and by_id[-2:] == [1, 3]
    with pytest.raises(ValueError, match="ties: must be one of 'file-order'"):
        TwoTower(ties="latest")


def test_refuses_a_parquet_file_and_a_streamed_epoch(tmp_path: Path) -> None:
    from recforge.data.streaming import ParquetInteractions

    data = contract_data()
    path = tmp_path / "log.parquet"
    data.to_parquet(str(path))
    with pytest.raises(InputError, match=r"^TwoTower trains on Interactions, not "
                                         r"ParquetInteractions$"):
        TwoTower(**SMALL).fit(ParquetInteractions(path))
    with pytest.raises(InputError, match="builds its epoch in memory; chunk_rows must be "
                                         "None, not 100"):
        TwoTower(chunk_rows=100, **SMALL).fit(data)


def test_pad_histories_keeps_the_last_items_and_drops_unknown_ones() -> None:
    known = np.array([True, True, False, True])
    rows = pad_histories([[0, 1, 3], [-1, 99, 2], []], 2, known, pad=4)
    assert rows.tolist() == [[1, 3], [4, 4], [4, 4]]


def test_accidental_hits_mask_other_positives_of_the_row_user(featured: Interactions) -> None:
    model = TwoTower(**SMALL)
    model.fit(featured)  # sets n_items_
    csr = featured.binary_csr
    model._positives = tuple(torch.from_numpy(a.astype(np.int64)) for a in (csr.indptr,
                                                                          csr.indices))
    user = int(np.argmax(featured.user_counts))
    pos = csr[user].indices[:3]
    other = np.setdiff1d(np.arange(featured.n_items), csr[user].indices)[:1]
    users = torch.tensor([user, user, user])
    candidates = torch.from_numpy(np.concatenate([pos, other, pos[:1]]))
    distinct, column = torch.unique(candidates, return_inverse=True)
    hits = model._accidental_hits(users, distinct, column).numpy()
    assert hits.tolist() == [[False, True, True, False, True],
                             [True, False, True, False, True],
                             [True, True, False, False, True]]


def test_training_lowers_the_loss_and_is_deterministic(featured: Interactions) -> None:
    a = TwoTower(seed=1, **{**SMALL, "epochs": 4}).fit(featured)
    losses = [h["loss"] for h in a.history_]
    assert losses[-1] < losses[0]
    b = TwoTower(seed=1, **{**SMALL, "epochs": 4}).fit(featured)
    assert np.array_equal(a.item_embeddings(), b.item_embeddings())


@pytest.mark.parametrize("options", [{"logq": False}, {"remove_accidental_hits": False},
                                     {"learn_temperature": True}])
def test_loss_options_change_training(featured: Interactions, fitted: TwoTower,
                                      options: dict) -> None:
    other = TwoTower(seed=0, **SMALL, **options).fit(featured)
    assert not np.allclose(other.item_embeddings(), fitted.item_embeddings())


def test_learned_temperature_moves(featured: Interactions) -> None:
    model = TwoTower(seed=0, learn_temperature=True, **SMALL).fit(featured)
    assert float(model.module_.temperature.detach()) != pytest.approx(SMALL.get("temperature", 0.05))


def test_encode_items_matches_the_catalogue_for_items_without_training_data(
        featured: Interactions) -> None:
    cold = np.arange(20)
    train = featured.subset(~np.isin(featured.items, cold))
    model = TwoTower(seed=0, **SMALL).fit(train)
    table = featured.item_features.take(cold, cold + 1)
    encoded = model.encode_items(table)
    catalogue = model.item_embeddings()[cold]
    assert np.allclose(encoded[:, :-1], catalogue[:, :-1], atol=1e-5)
    assert (encoded[:, -1] == 0).all()


def test_encode_users_from_features_history_or_both(fitted: TwoTower,
                                                    featured: Interactions) -> None:
    table = featured.user_features.take(np.arange(4), np.arange(4) + 1)
    by_features = fitted.encode_users(features=table)
    by_history = fitted.encode_users(history=[[1, 2, 3], [], [-5, 10_000], [7]])
    both = fitted.encode_users(features=table, history=[[1, 2, 3], [], [], [7]])
    for vectors in (by_features, by_history, both):
        assert vectors.shape == (4, SMALL["layers"][-1] + 1) and np.isfinite(vectors).all()
    assert not np.allclose(by_features, both)
    assert np.allclose(by_history[1], by_history[2])  # unknown items are ignored
    with pytest.raises(ValueError, match="needs features"):
        fitted.encode_users()
    with pytest.raises(ValueError, match="histories"):
        fitted.encode_users(features=table, history=[[1]])


def test_unknown_categories_and_missing_columns_do_not_crash(fitted: TwoTower,
                                                             featured: Interactions) -> None:
    table = SideTable([1, 2], categorical={"gender": ["X", None], "hobby": ["a", "b"]})
    assert np.isfinite(fitted.encode_users(features=table)).all()
    items = SideTable([1], text={"title": [None]})
    assert np.isfinite(fitted.encode_items(items)).all()


def planted_genres(n_groups: int = 4, items_per_group: int = 12, n_users: int = 240,
                   seed: int = 0) -> Interactions:
    """Users of group ``g`` interact with items whose genre (and title word) is ``g``."""
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    item_group = np.arange(n_items) // items_per_group
    user_group = np.arange(n_users) % n_groups
    picks = np.stack([rng.choice(items_per_group, 6, replace=False) for _ in range(n_users)])
    items = (user_group[:, None] * items_per_group + picks).ravel()
    labels = [f"g{g}" for g in range(n_groups)]
    table = SideTable(np.arange(n_items), multihot={"genres": (labels, np.eye(n_groups)[item_group])},
                      text={"title": [f"word{g} film {i}" for i, g in enumerate(item_group)]})
    return Interactions.from_arrays(np.repeat(np.arange(n_users), 6), items,
                                    timestamps=rng.permutation(n_users * 6),
                                    item_ids=np.arange(n_items), item_features=table)


def test_cold_items_are_retrievable_from_features() -> None:
    """Items held out of training are ranked by their features: each user's own-genre cold
    items come first among the cold items (chance: 1 in 4)."""
    data = planted_genres()
    cold = np.arange(data.n_items).reshape(4, -1)[:, :2].ravel()  # 2 per genre
    train = data.subset(~np.isin(data.items, cold))
    model = TwoTower(seed=0, **{**SMALL, "epochs": 10, "id_dropout": 0.3}).fit(train)
    mask = np.isin(np.arange(data.n_items), cold)
    users = np.arange(data.n_users)
    top, _ = model.recommend(users, k=2, candidates=mask)
    same_genre = top // 12 == (users % 4)[:, None]
    assert same_genre.mean() > 0.8
    popular, _ = MostPopular().fit(train).recommend(users, k=2, candidates=mask)
    assert (popular // 12 == (users % 4)[:, None]).mean() < 0.5


def test_save_load_keeps_codecs_and_cold_encoders(fitted: TwoTower, featured: Interactions,
                                                  tmp_path: Path) -> None:
    loaded = Recommender.load(fitted.save(tmp_path / "tt"))
    table = featured.item_features.take(np.arange(5), np.arange(5) + 1)
    assert np.array_equal(loaded.encode_items(table), fitted.encode_items(table))
    assert np.array_equal(loaded.user_embeddings([0, 1, -1]), fitted.user_embeddings([0, 1, -1]))
    assert loaded.user_codec_ == fitted.user_codec_


def test_a_model_saved_before_the_feature_codec_recommends_but_refuses_to_encode(
        fitted: TwoTower, featured: Interactions, tmp_path: Path) -> None:
    loaded = Recommender.load(fitted.save(tmp_path / "tt"))
    del loaded.item_texts_  # what a two-tower saved by recforge 0.1 lacks
    assert np.array_equal(loaded.recommend([0, 1], k=5)[0], fitted.recommend([0, 1], k=5)[0])
    table = featured.item_features.take(np.arange(5), np.arange(5) + 1)
    with pytest.raises(InputError, match="saved by an earlier recforge.*retrained"):
        loaded.encode_items(table)
    with pytest.raises(InputError, match="saved by an earlier recforge"):
        loaded.encode_users(history=[[1, 2]])


def test_learns_the_planted_structure() -> None:
    train, test = planted_clusters()
    evaluator = Evaluator(train, test, metrics=["hr@10"])
    hr = evaluator.evaluate(TwoTower(seed=0, **{**SMALL, "epochs": 15}).fit(train))
    popular = evaluator.evaluate(MostPopular().fit(train)).metrics["HR@10"]
    assert hr.metrics["HR@10"] > 0.9 and hr.metrics["HR@10"] > popular + 0.4


@pytest.mark.parametrize("params", [{"layers": ()}, {"history_length": 0},
                                    {"id_dropout": 1.0}, {"uniform_negatives": -1}])
def test_bad_parameters_raise(params: dict) -> None:
    with pytest.raises(ValueError):
        TwoTower(**{**SMALL, **params}).fit(contract_data())


def test_registered_and_created_by_name() -> None:
    model = create_model("two-tower", layers=[8, 4], text_columns=["title"])
    assert isinstance(model, TwoTower) and model.layers == (8, 4)
