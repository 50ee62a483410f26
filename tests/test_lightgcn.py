"""LightGCN: the model contract, the normalised adjacency and its propagation against dense
computations, learning a planted pattern, histories folded in without refitting, FAISS
serving of the embeddings, persistence, seeding and parameter checks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import require_module

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.data.synthetic import generate
from recforge.errors import ParameterError
from recforge.models import Recommender, create_model
from recforge.models.graph.adjacency import Graph, layer_sums, normalized_adjacency, propagate
from recforge.models.graph.lightgcn import MAX_LAYERS, LightGCN, user_uniform_positives
from recforge.retrieval import Retriever, make_index
from recforge.testing import ModelContract, contract_data

#: small, fast settings (the contract's data has 60 users and 40 items)
SMALL = {"embedding_dim": 16, "epochs": 3, "train_batch_size": 64, "learning_rate": 0.01}


class TestLightGCN(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("lightgcn", seed=seed, **SMALL)


class TestLightGCNOneLayerLogLoss(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("lightgcn", seed=seed, layers=1, loss="bce", negatives=2,
                            uniform_users=False, **SMALL)


class TestLightGCNStreamed(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return create_model("lightgcn", seed=seed, chunk_rows=100, **SMALL)


# ---------------------------------------------------------------------- the graph
def dense_adjacency(matrix: sp.spmatrix) -> np.ndarray:
    """``D^-1/2 [[0, B], [B^T, 0]] D^-1/2`` in float64, ``B`` the matrix's stored non-zeros."""
    coo = sp.coo_matrix(matrix)
    binary = np.zeros(matrix.shape)
    binary[coo.row, coo.col] += coo.data  # duplicates add up (to a non-zero here)
    binary = (binary != 0).astype(float)
    n_users, n_items = binary.shape
    full = np.zeros((n_users + n_items,) * 2)
    full[:n_users, n_users:] = binary
    full[n_users:, :n_users] = binary.T
    degree = full.sum(1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
    return scale[:, None] * full * scale[None, :]


def graph_matrix() -> sp.coo_matrix:
    """7 users x 6 items with ratings, a duplicated pair, an explicit zero (no edge), a user
    and an item without edges."""
    rows = [0, 0, 1, 1, 2, 3, 3, 3, 4, 5, 5, 0, 6]
    cols = [0, 2, 1, 2, 3, 0, 1, 4, 4, 2, 3, 0, 1]
    data = [5, 3, 4, 1, 2, 5, 5, 4, 3, 2, 1, 4, 0]  # (0, 0) twice; (6, 1) stored as 0
    return sp.coo_matrix((np.array(data, dtype=np.float32), (rows, cols)), shape=(7, 6))


def test_normalized_adjacency_matches_the_dense_definition() -> None:
    matrix = graph_matrix()
    adjacency = normalized_adjacency(matrix)
    expected = dense_adjacency(matrix)
    assert adjacency.dtype == np.float32 and adjacency.has_sorted_indices
    assert np.allclose(adjacency.toarray(), expected, atol=1e-7)
    assert np.array_equal(adjacency.toarray(), adjacency.toarray().T)
    assert not adjacency[6].nnz and not adjacency[:, 7 + 5].nnz  # no edges: empty row/column


def test_propagation_and_its_gradient_match_dense_products() -> None:
    matrix = graph_matrix()
    dense = torch.from_numpy(dense_adjacency(matrix).astype(np.float32))
    graph = Graph(normalized_adjacency(matrix))
    ego = torch.randn(13, 5, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(13, 5, generator=torch.Generator().manual_seed(1))
    for layers in (1, 2, 3):
        ours, theirs = ego.clone().requires_grad_(), ego.clone().requires_grad_()
        out = propagate(graph, ours, layers)
        powers = [theirs]
        for _ in range(layers):
            powers.append(dense @ powers[-1])
        expected = torch.stack(powers).mean(0)
        assert torch.allclose(out, expected, atol=1e-6)
        (out * weights).sum().backward()
        (expected * weights).sum().backward()
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)
        before_last, total = layer_sums(graph, ego, layers)
        assert torch.allclose(before_last, torch.stack(powers[:-1]).sum(0).detach(), atol=1e-6)
        assert torch.allclose(total / (layers + 1), expected.detach(), atol=1e-6)


def test_sparse_product_does_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(0)
    matrix = sp.random(300, 200, density=0.05, random_state=1, format="csr")
    graph = Graph(normalized_adjacency(matrix))
    dense = torch.from_numpy(rng.normal(size=(500, 16)).astype(np.float32))
    previous = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(graph.mm(dense).numpy())
            assert torch.get_num_threads() == threads  # the kernel leaves PyTorch's setting
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(outs[0], outs[1])


def test_user_uniform_positives_draw_users_uniformly() -> None:
    data = contract_data()
    csr = data.binary_csr
    users, items = user_uniform_positives(csr.indptr.astype(np.int64),
                                          csr.indices.astype(np.int64), 60_000,
                                          np.random.default_rng(0))
    assert (np.asarray(csr[users, items]).ravel() == 1).all()
    counts = np.bincount(users, minlength=data.n_users)
    active = data.user_counts > 0
    assert not counts[~active].any()
    assert np.abs(counts[active] / (60_000 / active.sum()) - 1).max() < 0.15


# ---------------------------------------------------------------------- a planted pattern
GROUPS, GROUP_ITEMS, GROUP_USERS = 4, 10, 20


def group_data(seed: int = 0) -> Interactions:
    """Users of group ``g`` interact with 6 of the 10 items of block ``g`` and one random
    item."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(GROUPS * GROUP_USERS):
        group = user // GROUP_USERS
        chosen = group * GROUP_ITEMS + rng.choice(GROUP_ITEMS, 6, replace=False)
        noise = rng.integers(GROUPS * GROUP_ITEMS, size=1)
        picked = np.unique(np.concatenate([chosen, noise]))
        users += [user] * len(picked)
        items += picked.tolist()
    return Interactions.from_pandas(pd.DataFrame({"user": users, "item": items}),
                                    name="groups")


@functools.cache
def group_model() -> LightGCN:
    return create_model("lightgcn", embedding_dim=16, layers=2, epochs=40,
                        train_batch_size=128, learning_rate=0.01).fit(group_data())


def group_of(items: np.ndarray) -> np.ndarray:
    return items // GROUP_ITEMS


def test_learns_the_planted_groups() -> None:
    data = group_data()
    model = group_model()
    users = np.arange(data.n_users)
    items, _ = model.recommend(users, k=3)
    own = group_of(data.item_map.ids[items]) == (data.user_map.ids[users] // GROUP_USERS)[:, None]
    assert own.mean() >= 0.9
    popular, _ = create_model("most-popular").fit(data).recommend(users, k=3)
    assert own.mean() > (group_of(data.item_map.ids[popular]) ==
                         (data.user_map.ids[users] // GROUP_USERS)[:, None]).mean() + 0.5


def anonymous(histories: list[list[int]], data: Interactions) -> QueryBatch:
    return QueryBatch.from_ids([None] * len(histories), histories, user_map=data.user_map,
                               item_map=data.item_map)


def test_a_fresh_history_changes_the_recommendations_without_refitting() -> None:
    data = group_data()
    model = group_model()
    state = {k: np.copy(v) for k, v in model._state().items() if isinstance(v, np.ndarray)}
    block = {g: list(range(g * GROUP_ITEMS, g * GROUP_ITEMS + 4)) for g in range(GROUPS)}
    queries = anonymous([block[0], block[0] + block[2] + [24, 25]], data)
    items, _ = model.recommend(queries, k=3)
    ids = data.item_map.ids[items]
    assert (group_of(ids[0]) == 0).all()  # an anonymous history is folded in
    assert (group_of(ids[1]) == 2).all() and set(ids[1]) != set(ids[0])
    user = 5  # of group 0, with more recent events from block 3: their own (ego) embedding
    # keeps block 0 first, the new neighbours bring block 3 up
    fresh = QueryBatch.from_ids([data.user_map.ids[user]],
                                [data.item_map.ids[model.training_history([user]).history(0)]
                                 .tolist() + block[3] + [34, 35]],
                                user_map=data.user_map, item_map=data.item_map)
    before, _ = model.recommend([user], k=8)
    after, _ = model.recommend(fresh, k=8)
    in_block_3 = [int((group_of(data.item_map.ids[top[0]]) == 3).sum()) for top in (before, after)]
    assert in_block_3[1] >= 3 and in_block_3[1] >= in_block_3[0] + 2, in_block_3
    for key, value in model._state().items():  # nothing was refitted
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, state[key])


def test_a_users_training_history_folds_in_to_their_propagated_embedding() -> None:
    """The fold-in rule reproduces the user rows of a dense propagation of the whole graph."""
    data = group_data()
    model = group_model()
    adjacency = torch.from_numpy(dense_adjacency(data.binary_csr)).double()
    layer = model.module_.embeddings.weight.detach().double()
    total = layer.clone()
    for _ in range(model.layers):
        layer = adjacency @ layer
        total = total + layer
    final = (total / (model.layers + 1)).numpy()
    users = np.arange(data.n_users)
    assert np.allclose(model.user_embeddings(users), final[:data.n_users], atol=1e-5)
    assert np.allclose(model.item_embeddings(), final[data.n_users:], atol=1e-5)
    assert np.allclose(model.score(users), final[users] @ final[data.n_users:].T, atol=1e-5)


def test_a_history_without_training_items_falls_back_to_popularity() -> None:
    data = group_data()
    model = group_model()
    empty = QueryBatch(np.array([-1, 3]), np.array([0, 0, 0]), np.zeros(0, np.int64))
    scores = model.score(empty)
    assert np.array_equal(scores, np.vstack([model.popularity_] * 2))
    assert not model.query_embeddings(empty).any()
    assert np.array_equal(model.encode_users(history=[[0, 1]]),
                          model.query_embeddings(anonymous([data.item_map.ids[[0, 1]]
                                                            .tolist()], data)))


# ---------------------------------------------------------------------- serving
def assert_index_serves(model: Recommender, data: Interactions, min_recall: float = 0.95) -> None:
    """The model's embeddings reproduce its scores, an HNSW index over the item embeddings
    finds ``min_recall`` of its exact top 10 (one FAISS thread), and the `Retriever` serves a
    known user from the index and a new history through the model's encoder."""
    import faiss

    users = np.flatnonzero(model.user_activity_ > 0)
    queries, items = model.user_embeddings(users), model.item_embeddings()
    assert np.allclose(queries @ items.T, model.score(users), atol=1e-5)
    exact, _ = model.recommend(users, k=10, exclude_seen=False)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        found, _ = make_index("hnsw", m=8, ef_search=32).build(items).search(queries, 10)
    finally:
        faiss.omp_set_num_threads(previous)
    recall = np.mean([len(np.intersect1d(f, e)) / 10 for f, e in zip(found, exact)])
    assert recall >= min_recall, recall
    retriever = Retriever.from_data(model, data)
    answer = retriever.recommend(data.user_map.ids[users[3]], k=5)
    assert answer.source == "index"
    assert answer.items.tolist() == model.recommend([users[3]], k=5)[0][0].tolist()
    history = data.item_map.ids[[4, 5, 6]]
    fresh = retriever.recommend_for(history=history, k=3)
    query = QueryBatch(np.array([-1]), np.array([0, 3]), data.item_map.to_index(history))
    assert fresh.source == "encoder"
    assert fresh.items.tolist() == model.recommend(query, k=3)[0][0].tolist()


def test_embeddings_serve_faiss_with_high_recall() -> None:
    require_module("faiss")
    data = generate(n_users=600, n_items=1000, n_interactions=20_000, feedback="implicit",
                    seed=0)
    model = create_model("lightgcn", embedding_dim=16, epochs=3, train_batch_size=1024,
                         learning_rate=0.01).fit(data)
    assert_index_serves(model, data)


# ---------------------------------------------------------------------- persistence, seeds
def arrays_of(model: Recommender) -> dict[str, np.ndarray]:
    return {k: v for k, v in model._state().items() if isinstance(v, np.ndarray)}


def test_save_load_is_bit_identical(tmp_path: Path) -> None:
    data = contract_data()
    model = create_model("lightgcn", **SMALL).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "model"))
    ours, theirs = arrays_of(model), arrays_of(loaded)
    assert ours.keys() == theirs.keys() >= {"propagated_items_", "item_layer_sum_",
                                            "item_scale_", "module.embeddings.weight"}
    for key, value in ours.items():
        assert value.dtype == theirs[key].dtype and np.array_equal(value, theirs[key]), key
    users = np.arange(-1, data.n_users)
    assert np.array_equal(model.score(users), loaded.score(users))
    assert np.array_equal(model.user_embeddings(users[1:]), loaded.user_embeddings(users[1:]))


def test_same_seed_same_model_other_seed_another() -> None:
    data = contract_data()
    first, second, other = (create_model("lightgcn", seed=seed, **SMALL).fit(data)
                            for seed in (3, 3, 4))
    for key, value in arrays_of(first).items():
        assert np.array_equal(value, arrays_of(second)[key]), key
    assert [h["loss"] for h in first.history_] == [h["loss"] for h in second.history_]
    assert not np.array_equal(first.propagated_items_, other.propagated_items_)


def test_resuming_a_finished_checkpoint_gives_the_same_model(tmp_path: Path) -> None:
    """Resumed with every epoch done, no epoch runs: the item side is propagated from the
    checkpoint's weights."""
    data = contract_data()
    params = {**SMALL, "checkpoint_dir": str(tmp_path / "ckpt")}
    straight = create_model("lightgcn", **params).fit(data)
    resumed = create_model("lightgcn", resume=True, **params).fit(data)
    for key, value in arrays_of(straight).items():
        assert np.array_equal(value, arrays_of(resumed)[key]), key
    assert np.array_equal(straight.score(np.arange(5)), resumed.score(np.arange(5)))


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize(("name", "value"), [
    ("layers", 0), ("layers", MAX_LAYERS + 1), ("layers", 2.0), ("embedding_dim", 0),
    ("reg", -1e-4), ("reg", float("nan")), ("init_std", 0.0), ("learning_rate", 0.0),
    ("train_batch_size", 0), ("loss", "ce"),
])
def test_bad_parameters_are_refused_naming_them(name: str, value: object) -> None:
    with pytest.raises(ParameterError, match=f"^{name}: "):
        create_model("lightgcn", **{name: value})


def test_old_parameter_names_say_the_new_ones() -> None:
    with pytest.raises(ParameterError, match="renamed to 'reg'"):
        create_model("lightgcn", regularization=1e-4)
    with pytest.raises(ParameterError, match="renamed to 'learning_rate'"):
        create_model("lightgcn", lr=0.01)
