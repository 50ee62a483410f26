"""NCF family (GMF, MLP, NeuMF, dot-MF): the model contract, the module's algebra, NeuMF
pre-training, persistence and learning a planted structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_ials import planted_clusters

from recforge.evaluation import Evaluator
from recforge.models import GMF, MLP, DotMF, MostPopular, NeuMF, Recommender, create_model
from recforge.models.neural.ncf import NCFModule
from recforge.testing import ModelContract, contract_data

SMALL = {"epochs": 3, "train_batch_size": 256}


class TestGMF(ModelContract):
    def make_model(self, seed: int = 0) -> GMF:
        return GMF(factors=6, seed=seed, **SMALL)


class TestGMFWithBPR(ModelContract):
    def make_model(self, seed: int = 0) -> GMF:
        return GMF(factors=6, loss="bpr", negatives=2, seed=seed, **SMALL)


class TestMLP(ModelContract):
    def make_model(self, seed: int = 0) -> MLP:
        return MLP(layers=(16, 8, 4), seed=seed, **SMALL)


class TestNeuMF(ModelContract):
    def make_model(self, seed: int = 0) -> NeuMF:
        return NeuMF(factors=4, layers=(16, 8, 4), seed=seed, gmf_params={"epochs": 2},
                     mlp_params={"epochs": 2}, **SMALL)


class TestNeuMFFromScratch(ModelContract):
    def make_model(self, seed: int = 0) -> NeuMF:
        return NeuMF(factors=4, layers=(16, 8, 4), pretrain=False, seed=seed, **SMALL)


class TestDotMF(ModelContract):
    def make_model(self, seed: int = 0) -> DotMF:
        return DotMF(factors=6, seed=seed, **SMALL)


@pytest.mark.parametrize("head", ["gmf", "mlp", "neumf", "dot"])
def test_score_all_equals_pairwise_forward(head: str) -> None:
    torch.manual_seed(0)
    module = NCFModule(7, 11, head, factors=4, layers=(8, 6, 3), init_std=0.5)
    for param in module.parameters():  # non-zero biases too
        torch.nn.init.normal_(param)
    users = torch.tensor([0, 3, 6])
    pairs_u = users.repeat_interleave(11)
    pairs_i = torch.arange(11).repeat(3)
    with torch.no_grad():
        expected = module(pairs_u, pairs_i).view(3, 11)
        assert torch.allclose(module.score_all(users), expected, atol=1e-5)


def test_mlp_scoring_chunks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge.models.neural import ncf

    module = NCFModule(30, 9, "mlp", layers=(8, 4))
    users = torch.arange(30)
    with torch.no_grad():
        whole = module.score_all(users)
        monkeypatch.setattr(ncf, "_MLP_SCORE_FLOATS", 9 * 4 * 7)  # 7 users per chunk
        assert torch.allclose(module.score_all(users), whole, atol=1e-6)


def test_neumf_starts_from_the_alpha_blend_of_pretrained_parts() -> None:
    torch.manual_seed(1)
    gmf = NCFModule(5, 6, "gmf", factors=3)
    mlp = NCFModule(5, 6, "mlp", layers=(8, 4))
    neumf = NCFModule(5, 6, "neumf", factors=3, layers=(8, 4))
    for param in [*gmf.parameters(), *mlp.parameters()]:
        torch.nn.init.normal_(param)
    neumf.load_pretrained(gmf, mlp, alpha=0.3)
    users, items = torch.arange(5).repeat_interleave(6), torch.arange(6).repeat(5)
    with torch.no_grad():
        blend = 0.3 * gmf(users, items) + 0.7 * mlp(users, items)
        assert torch.allclose(neumf(users, items), blend, atol=1e-5)
    assert torch.equal(neumf.item_gmf.weight, gmf.item_gmf.weight)
    assert torch.equal(neumf.tower[0].weight, mlp.tower[0].weight)


def test_neumf_pretraining_runs_gmf_then_mlp_with_their_overrides() -> None:
    data = contract_data()
    model = NeuMF(factors=4, layers=(8, 4), epochs=2, gmf_params={"epochs": 3},
                  mlp_params={"epochs": 1, "learning_rate": 0.01}).fit(data)
    assert [len(model.pretrain_history_[k]) for k in ("gmf", "mlp")] == [3, 1]
    assert len(model.history_) == 2
    scratch = NeuMF(factors=4, layers=(8, 4), epochs=2, pretrain=False).fit(data)
    assert scratch.pretrain_history_ == {}
    assert not np.allclose(model.score([0]), scratch.score([0]))


def test_neumf_rejects_alpha_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="alpha"):
        NeuMF(alpha=1.5, pretrain=False, epochs=1).fit(contract_data())


@pytest.mark.parametrize("layers", [(7, 4), (8,), (8, 0)])
def test_bad_layers_raise(layers: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="layers"):
        MLP(layers=layers, epochs=1).fit(contract_data())


def test_training_batch_size_leaves_the_scoring_block_alone() -> None:
    model = GMF(train_batch_size=64)
    assert model.batch_size == GMF.batch_size == 2048  # users scored at once by recommend


def test_registered_names_and_layers_as_list() -> None:
    model = create_model("mlp", layers=[16, 8], learning_rate=0.01)
    assert isinstance(model, MLP) and model.layers == (16, 8)
    assert isinstance(create_model("neumf"), NeuMF)
    assert isinstance(create_model("dot-mf", factors=4), DotMF)
    with pytest.raises(ValueError, match="no parameter"):
        create_model("gmf", layers=(8, 4))


def test_saved_weights_are_float32_arrays(tmp_path: Path) -> None:
    model = NeuMF(factors=4, layers=(8, 4), epochs=1, pretrain=False).fit(contract_data())
    path = model.save(tmp_path / "neumf")
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        weights = {k: arrays[k] for k in arrays.files if k.startswith("module.")}
    assert set(weights) == {f"module.{k}" for k in model.module_.state_dict()}
    assert all(w.dtype == np.float32 for w in weights.values())
    loaded = Recommender.load(path)
    users = np.arange(model.n_users_)
    assert np.array_equal(loaded.score(users), model.score(users))


@pytest.mark.parametrize("cls", [GMF, MLP, NeuMF, DotMF])
def test_item_vectors_have_one_row_per_item(cls: type) -> None:
    data = contract_data()
    model = cls(epochs=1, **({"pretrain": False} if cls is NeuMF else {})).fit(data)
    assert model.item_vectors().shape[0] == data.n_items


@pytest.mark.parametrize("make", [
    lambda: GMF(factors=4, epochs=10, learning_rate=0.02, train_batch_size=128),
    lambda: DotMF(factors=4, epochs=10, learning_rate=0.02, train_batch_size=128),
    lambda: NeuMF(factors=4, layers=(16, 8), epochs=5, train_batch_size=128,
                  gmf_params={"epochs": 10, "learning_rate": 0.02},
                  mlp_params={"epochs": 10, "learning_rate": 0.01}),
], ids=["gmf", "dot-mf", "neumf"])
def test_learns_the_planted_structure(make) -> None:
    train, test = planted_clusters()
    evaluator = Evaluator(train, test, metrics=["hr@10"])
    hr = evaluator.evaluate(make().fit(train)).metrics["HR@10"]
    popular = evaluator.evaluate(MostPopular().fit(train)).metrics["HR@10"]
    assert hr > 0.9 and hr > popular + 0.4


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_streamed_epochs_learn_as_well_as_the_in_memory_epoch(loss: str) -> None:
    train, test = planted_clusters(seed=1)
    evaluator = Evaluator(train, test, metrics=["hr@10", "ndcg@10"])
    params = {"factors": 4, "epochs": 10, "learning_rate": 0.02, "train_batch_size": 128,
              "loss": loss, "seed": 0}
    whole = evaluator.evaluate(GMF(**params).fit(train)).metrics
    streamed = evaluator.evaluate(GMF(chunk_rows=150, **params).fit(train)).metrics
    assert streamed["HR@10"] > 0.9 and whole["HR@10"] > 0.9
    assert abs(streamed["NDCG@10"] - whole["NDCG@10"]) < 0.05
