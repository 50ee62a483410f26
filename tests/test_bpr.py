"""BPR-MF: the model contract, the SGD step against the BPR gradient, determinism, learning."""

from __future__ import annotations

import numpy as np
import pytest
from test_ials import planted_clusters

from recforge.evaluation import Evaluator
from recforge.models import BPR, MostPopular
from recforge.models.factorization.bpr import _epoch_sharded, _group_by_shard, _sgd_run
from recforge.testing import ModelContract, contract_data


class TestBPR(ModelContract):
    def make_model(self, seed: int = 0) -> BPR:
        return BPR(factors=8, epochs=5, seed=seed)


class TestBPRHogwild(ModelContract):
    deterministic_given_seed = False  # threads race on shared item rows by design

    def make_model(self, seed: int = 0) -> BPR:
        return BPR(factors=8, epochs=5, hogwild=True, sampling="popularity", seed=seed)


def _params(seed: int = 0, n_users: int = 5, n_items: int = 7, k: int = 4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_users, k)).astype(np.float32),
            rng.standard_normal((n_items, k)).astype(np.float32),
            rng.standard_normal(n_items).astype(np.float32))


def test_sgd_step_follows_the_bpr_gradient() -> None:
    user_f, item_f, bias = _params()
    w, hi, hj = (user_f[1].astype(np.float64), item_f[2].astype(np.float64),
                 item_f[5].astype(np.float64))
    x = bias[2] - bias[5] + w @ (hi - hj)
    g = 1.0 / (1.0 + np.exp(x))
    lr, reg, bias_reg = 0.1, 0.01, 0.02
    expected_w = w + lr * (g * (hi - hj) - reg * w)
    expected_hj = hj + lr * (-g * w - reg * hj)
    expected_bi = bias[2] + lr * (g - bias_reg * bias[2])
    one = np.array([0])
    loss = _sgd_run(np.array([1]), np.array([2]), np.array([5]), one, user_f, item_f, bias,
                    np.float32(lr), np.float32(reg), np.float32(bias_reg))
    assert loss == pytest.approx(np.log1p(np.exp(-x)), rel=1e-5)
    assert user_f[1] == pytest.approx(expected_w, rel=1e-5)
    assert item_f[5] == pytest.approx(expected_hj, rel=1e-5)
    assert bias[2] == pytest.approx(expected_bi, rel=1e-5)


def test_one_shard_is_plain_sequential_sgd() -> None:
    rng = np.random.default_rng(3)
    users, pos, neg = (rng.integers(0, n, 200) for n in (5, 7, 7))
    order = rng.permutation(200)
    a, b = _params(1), _params(1)
    args = (np.float32(0.05), np.float32(0.01), np.float32(0.01))
    _sgd_run(users, pos, neg, order, *a, *args)
    grouped, ptr = _group_by_shard(users, order, 1)
    _epoch_sharded(users, pos, neg, grouped, ptr, 4, *b, *args)
    for x, y in zip(a, b, strict=True):
        assert np.allclose(x, y, atol=1e-6)


def test_group_by_shard_is_a_stable_partition() -> None:
    users = np.array([3, 0, 1, 4, 2, 5, 0])
    order = np.array([6, 0, 2, 1, 5, 3, 4])
    grouped, ptr = _group_by_shard(users, order, 2)
    assert ptr.tolist() == [0, 4, 7]
    assert grouped.tolist() == [6, 1, 3, 4, 0, 2, 5]  # even users, then odd, each in order


def test_default_is_reproducible_across_thread_counts() -> None:
    data = contract_data()
    one = BPR(factors=6, epochs=3, threads=1, seed=4).fit(data)
    two = BPR(factors=6, epochs=3, threads=2, seed=4).fit(data)
    assert np.array_equal(one.item_factors_, two.item_factors_)
    assert np.array_equal(one.item_bias_, two.item_bias_)
    assert not hasattr(one, "_training")


def test_loss_decreases_and_structure_is_learned() -> None:
    train, test = planted_clusters()
    model = BPR(factors=8, epochs=30, learning_rate=0.05).fit(train)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < 0.5 * losses[0]
    evaluator = Evaluator(train, test, metrics=["hr@10"])
    hr = evaluator.evaluate(model).metrics["HR@10"]
    popular = evaluator.evaluate(MostPopular().fit(train)).metrics["HR@10"]
    assert hr > 0.9 and hr > popular + 0.4


def test_popularity_sampling_changes_the_model() -> None:
    data = contract_data()
    uniform = BPR(factors=6, epochs=3).fit(data)
    popular = BPR(factors=6, epochs=3, sampling="popularity").fit(data)
    assert not np.allclose(uniform.item_bias_, popular.item_bias_)


def test_bad_shard_count_raises() -> None:
    with pytest.raises(ValueError, match="n_shards"):
        BPR(n_shards=0).fit(contract_data())
