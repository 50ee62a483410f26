"""Bandit policies: learning, Sherman-Morrison state, propensities, seeds, persistence, cold
start and argument checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.bandits.base import greedy_action_dist, load_policy, top_k_random_ties
from recforge.bandits.linear import HybridLinUCB, LinTS, LinUCB, sherman_morrison, waves
from recforge.bandits.policies import (
    UCB1,
    BetaThompson,
    EpsilonGreedy,
    GaussianThompson,
    ModelPolicy,
    RandomPolicy,
)
from recforge.errors import CorruptFileError, InputError, ParameterError

D, ARMS = 5, 8


def linear_world(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(ARMS, D)), rng


def play(policy, rounds: int = 2000, batch: int = 10, seed: int = 0,
         contextual: bool = True) -> float:
    """Mean Bernoulli reward of ``policy`` over ``rounds`` rounds of a logistic-linear world
    (per-arm parameters; the context's first column is 1)."""
    theta, rng = linear_world(seed)
    total = 0.0
    for _ in range(0, rounds, batch):
        x = np.hstack([np.ones((batch, 1)), rng.normal(size=(batch, D - 1))])
        chosen = policy.select(x if contextual else None,
                               None if contextual else np.tile(np.arange(ARMS), (batch, 1))
                               ).actions[:, 0]
        p = 1 / (1 + np.exp(-np.einsum("nd,nd->n", x, theta[chosen]) * 2))
        reward = (rng.random(batch) < p).astype(float)
        policy.update(x, chosen, reward)
        total += reward.sum()
    return total / rounds


def bernoulli_play(policy, means, rounds=3000, batch=10, seed=0) -> float:
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(0, rounds, batch):
        chosen = policy.select(None, np.tile(np.arange(len(means)), (batch, 1))).actions[:, 0]
        reward = (rng.random(batch) < means[chosen]).astype(float)
        policy.update(None, chosen, reward)
        total += reward.sum()
    return total / rounds


# ---------------------------------------------------------------------- learning
@pytest.mark.parametrize("make", [
    lambda: LinUCB(ARMS, D, seed=1),
    lambda: LinTS(ARMS, D, seed=1),
    lambda: HybridLinUCB(np.random.default_rng(3).normal(size=(ARMS, 2)), D, seed=1),
])
def test_linear_policies_learn_a_linear_reward_and_beat_random(make):
    learned = play(make())
    random = play(RandomPolicy(ARMS, seed=1))
    assert learned > random + 0.15, (learned, random)


@pytest.mark.parametrize("make", [
    lambda: EpsilonGreedy(6, epsilon=0.1, seed=2), lambda: UCB1(6, seed=2),
    lambda: BetaThompson(6, seed=2), lambda: GaussianThompson(6, noise_var=0.25, seed=2),
    lambda: EpsilonGreedy(6, epsilon=1.0, decay=6.0, seed=2),
])
def test_multi_armed_policies_find_the_best_arm(make):
    means = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.8])
    policy = make()
    got = bernoulli_play(policy, means)
    assert got > 0.6, got
    assert np.argmax(policy.pulls_) == 5


def test_decaying_epsilon_follows_min_epsilon_decay_over_t():
    policy = EpsilonGreedy(3, epsilon=0.5, decay=10.0)
    eps = policy.current_epsilon(30)
    t = np.arange(1, 31)
    np.testing.assert_allclose(eps, np.minimum(0.5, 10.0 / t))
    policy.update(None, np.zeros(100, dtype=int), np.ones(100))
    np.testing.assert_allclose(policy.current_epsilon(1), [10.0 / 101])


# ---------------------------------------------------------------------- Sherman-Morrison
def test_sherman_morrison_equals_the_inverse():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 6, 6))
    a = m @ m.transpose(0, 2, 1) + np.eye(6)
    x = rng.normal(size=(4, 6))
    got = sherman_morrison(np.linalg.inv(a), x)
    want = np.linalg.inv(a + x[:, :, None] * x[:, None, :])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_waves_put_each_arm_once_per_wave_in_order():
    arms = np.array([3, 1, 3, 3, 2, 1, 0])
    groups = waves(arms)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(arms)))
    for group in groups:
        assert len(set(arms[group].tolist())) == len(group)
    positions_of_3 = [int(p) for g in groups for p in g if arms[p] == 3]
    assert positions_of_3 == [0, 2, 3]


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_batched_updates_keep_the_exact_ridge_inverse(cls):
    rng = np.random.default_rng(1)
    policy = cls(n_arms=4, dim=3, reg=2.0)
    xs, arms, rewards = [], [], []
    for _ in range(5):  # batches with repeated arms (several waves each)
        x = rng.normal(size=(20, 3))
        a = rng.integers(0, 4, 20)
        r = rng.random(20)
        r[::7] = np.nan  # unobserved slots are skipped
        policy.update(x, a, r)
        xs.append(x), arms.append(a), rewards.append(r)
    x, a, r = np.concatenate(xs), np.concatenate(arms), np.concatenate(rewards)
    for arm in range(4):
        keep = (a == arm) & ~np.isnan(r)
        design = np.linalg.inv(2.0 * np.eye(3) + x[keep].T @ x[keep])
        np.testing.assert_allclose(policy.A_inv_[arm], design, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(policy.theta_[arm], design @ (x[keep].T @ r[keep]),
                                   rtol=1e-9, atol=1e-12)


def test_hybrid_state_matches_li_et_al_from_scratch():
    """A0 and b0 after batched updates equal the closed form of Algorithm 2:
    A0 = I + sum z z^T - sum_a B_a^T A_a^{-1} B_a, b0 = sum r z - sum_a B_a^T A_a^{-1} b_a."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(3, 2))
    policy = HybridLinUCB(feats, dim=3)
    x = rng.normal(size=(40, 3))
    a = rng.integers(0, 3, 40)
    r = rng.random(40)
    policy.update(x[:25], a[:25], r[:25])
    policy.update(x[25:], a[25:], r[25:])
    z = policy.shared_features(x, a)
    a0, b0 = np.eye(6) + z.T @ z, z.T @ r
    for arm in range(3):
        keep = a == arm
        a_arm = np.eye(3) + x[keep].T @ x[keep]
        b_big = x[keep].T @ z[keep]
        np.testing.assert_allclose(np.linalg.inv(a_arm), policy.A_inv_[arm], atol=1e-10)
        np.testing.assert_allclose(b_big, policy.B_[arm], atol=1e-10)
        a0 -= b_big.T @ np.linalg.solve(a_arm, b_big)
        b0 -= b_big.T @ np.linalg.solve(a_arm, x[keep].T @ r[keep])
    np.testing.assert_allclose(policy.A0_, a0, atol=1e-9)
    np.testing.assert_allclose(policy.b0_, b0, atol=1e-9)


def test_gathered_candidate_scores_equal_the_all_arm_scores():
    rng = np.random.default_rng(3)
    policy = LinUCB(40, 4)
    policy.update(rng.normal(size=(200, 4)), rng.integers(0, 40, 200), rng.random(200))
    x = rng.normal(size=(6, 4))
    cands = np.stack([rng.permutation(40)[:5] for _ in range(6)])  # few: gathered path
    mean, width = policy.mean_and_width(x, cands)
    all_mean, all_width = policy.mean_and_width(x, np.tile(np.arange(40), (6, 1)))
    np.testing.assert_allclose(mean, np.take_along_axis(all_mean, cands, 1), atol=1e-12)
    np.testing.assert_allclose(width, np.take_along_axis(all_width, cands, 1), atol=1e-12)


# ---------------------------------------------------------------------- propensities
def empirical_slot_frequency(policy, n, cands, k):
    sel = policy.select(None, np.tile(cands, (n, 1)), k)
    freq = np.zeros((len(cands), k))
    for j in range(k):
        freq[:, j] = np.bincount(sel.actions[:, j], minlength=len(cands)) / n
    return sel, freq


def test_epsilon_greedy_slate_propensities_are_the_slot_marginals():
    policy = EpsilonGreedy(5, epsilon=0.3, prior_count=0, seed=4)
    policy.update(None, np.array([0, 1, 2, 3, 4, 4]), np.array([.1, .9, .5, .5, .2, .2]))
    sel, freq = empirical_slot_frequency(policy, 40_000, np.arange(5), 3)
    # arms 2 and 3 tie for the second slot: each 1/2 there and in the third
    dist = 0.7 * greedy_action_dist(policy.means()[None, :], 3)[0] + 0.3 / 5
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    np.testing.assert_allclose(freq, dist, atol=0.01)
    np.testing.assert_allclose(sel.propensities, dist[sel.actions, np.arange(3)])


def test_random_policy_propensities_and_distinct_slate_items():
    sel = RandomPolicy(7, seed=0).select(None, np.tile(np.arange(7), (500, 1)), 4)
    np.testing.assert_allclose(sel.propensities, 1 / 7)
    assert all(len(set(row)) == 4 for row in sel.actions.tolist())


def test_thompson_propensity_estimates_match_selection_frequencies():
    policy = BetaThompson(3, propensity_samples=2000, seed=5)
    policy.update(None, np.array([0] * 10 + [1] * 10), np.r_[np.ones(6), np.zeros(4),
                                                              np.ones(4), np.zeros(6)])
    sel = policy.select(None, np.tile(np.arange(3), (1, 1)), 1)
    frozen = BetaThompson(3, seed=6)
    frozen.pulls_, frozen.reward_sum_ = policy.pulls_.copy(), policy.reward_sum_.copy()
    _, freq = empirical_slot_frequency(frozen, 20_000, np.arange(3), 1)
    assert abs(sel.propensities[0, 0] - freq[sel.actions[0, 0], 0]) < 0.03


def test_greedy_propensity_shares_ties():
    scores = np.array([[1.0, 3.0, 3.0, 0.0]])
    rng = np.random.default_rng(0)
    firsts = [int(top_k_random_ties(scores, 1, rng)[0, 0]) for _ in range(400)]
    assert set(firsts) == {1, 2} and 120 < firsts.count(1) < 280
    dist = greedy_action_dist(scores, 2)[0]
    np.testing.assert_allclose(dist, [[0, 0], [.5, .5], [.5, .5], [0, 0]])


# ---------------------------------------------------------------------- seeds and saving
@pytest.mark.parametrize("make", [
    lambda s: LinTS(ARMS, D, seed=s), lambda s: EpsilonGreedy(ARMS, seed=s),
    lambda s: BetaThompson(ARMS, seed=s)])
def test_same_seed_same_run(make):
    assert play(make(7), 300, contextual=True) == play(make(7), 300, contextual=True)
    runs = {play(make(s), 300) for s in range(4)}
    assert len(runs) > 1


@pytest.mark.parametrize("make", [
    lambda: LinUCB(ARMS, D, alpha=0.5, seed=3), lambda: LinTS(ARMS, D, seed=3),
    lambda: EpsilonGreedy(ARMS, epsilon=0.2, decay=50.0, seed=3), lambda: UCB1(ARMS),
    lambda: BetaThompson(ARMS, seed=3), lambda: GaussianThompson(ARMS, seed=3),
    lambda: HybridLinUCB(np.eye(ARMS)[:, :3], D, seed=3)])
def test_save_load_round_trip_continues_identically(make, tmp_path):
    policy = make()
    play(policy, 200)
    policy.save(tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert type(loaded) is type(policy) and loaded.get_params() == policy.get_params()
    x = np.hstack([np.ones((20, 1)), np.random.default_rng(9).normal(size=(20, D - 1))])
    a, b = policy.select(x, k=2), loaded.select(x, k=2)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.propensities, b.propensities)
    policy.save(tmp_path / "p")  # replacing its own folder is allowed


def test_damaged_or_foreign_policy_folders_are_refused(tmp_path):
    policy = LinUCB(ARMS, D)
    folder = policy.save(tmp_path / "p")
    meta = json.loads((folder / "policy.json").read_text())
    meta["params"]["dim"] = 4
    (folder / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="policy.json"):
        load_policy(folder)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="did not write"):
        policy.save(tmp_path / "mine")


# ---------------------------------------------------------------------- cold start
@pytest.mark.parametrize("make", [
    lambda: EpsilonGreedy(4, epsilon=0.0, prior_value=1.0), lambda: UCB1(4),
    lambda: LinUCB(4, D, alpha=1.0)])
def test_a_new_arm_is_tried_soon(make):
    policy = make()
    _, rng = linear_world()
    x = np.hstack([np.ones((300, 1)), rng.normal(size=(300, D - 1))])
    policy.update(x, rng.integers(0, 4, 300), rng.random(300) * 0.5)
    new = policy.add_arms(1)
    assert new.tolist() == [4] and policy.n_arms == 5
    chosen = policy.select(x[:5]).actions[:, 0]
    assert 4 in chosen.tolist()


def test_hybrid_new_arms_need_their_features():
    policy = HybridLinUCB(np.ones((2, 2)), dim=2)
    with pytest.raises(InputError, match="arm_features"):
        policy.add_arms(1)
    policy.add_arms(1, arm_features=np.ones((1, 2)))
    assert policy.select(np.ones((1, 2))).actions.shape == (1, 1)


# ---------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("make, name", [
    (lambda: EpsilonGreedy(3, epsilon=1.5), "epsilon"), (lambda: LinUCB(3, 0), "dim"),
    (lambda: UCB1(0), "n_arms"), (lambda: LinTS(3, 2, scale=float("nan")), "scale"),
    (lambda: BetaThompson(3, prior_alpha=0), "prior_alpha"),
    (lambda: EpsilonGreedy(3, seed=-1), "seed")])
def test_bad_hyperparameters_name_the_parameter(make, name):
    with pytest.raises(ParameterError, match=f"^{name}:"):
        make()


def test_bad_selection_and_feedback_inputs():
    policy = LinUCB(3, 2)
    with pytest.raises(InputError, match="contexts"):
        policy.select(np.ones((2, 3)))
    with pytest.raises(InputError, match="arms must be in"):
        policy.select(np.ones((1, 2)), np.array([[0, 3]]))
    with pytest.raises(ParameterError, match="^k:"):
        policy.select(np.ones((1, 2)), k=0)
    with pytest.raises(InputError, match="k: a slate of 4"):
        policy.select(np.ones((1, 2)), k=4)
    with pytest.raises(InputError, match="same shape"):
        policy.update(np.ones((2, 2)), np.array([0, 1]), np.array([1.0]))
    with pytest.raises(InputError, match="rewards in"):
        BetaThompson(2).update(None, np.array([0]), np.array([2.0]))


# ---------------------------------------------------------------------- model policy
def test_model_policy_explores_the_models_top_items_and_learns_offsets(tmp_path):
    from recforge.data.synthetic import generate
    from recforge.models import create_model

    data = generate(n_users=60, n_items=80, n_interactions=900, seed=1)
    model = create_model("most-popular").fit(data)
    policy = ModelPolicy(model, epsilon=0.2, pool=10, seed=0)
    users = np.arange(30)
    sel = policy.select(users, k=3)
    top, _ = model.recommend(users, k=10)
    assert all(set(row) <= set(t) for row, t in zip(sel.actions.tolist(), top.tolist()))
    assert ((sel.propensities > 0) & (sel.propensities <= 1)).all()
    before = policy.predicted(users[:1], sel.actions[:1, :1])[0, 0]
    policy.update(np.zeros(30, dtype=int), np.full(30, sel.actions[0, 0]), np.full(30, 5.0))
    assert policy.predicted(users[:1], sel.actions[:1, :1])[0, 0] > before + 1
    policy.save(tmp_path / "mp")
    with pytest.raises(CorruptFileError, match="model="):
        load_policy(tmp_path / "mp")
    loaded = load_policy(tmp_path / "mp", model=model)
    np.testing.assert_array_equal(loaded.select(users, k=3).actions,
                                  policy.select(users, k=3).actions)


@pytest.mark.parametrize("make", [
    lambda: RandomPolicy(5), lambda: EpsilonGreedy(5), lambda: UCB1(5),
    lambda: BetaThompson(5), lambda: GaussianThompson(5),
    lambda: LinUCB(5, 3), lambda: LinTS(5, 3),
], ids=["random", "epsilon-greedy", "ucb1", "thompson", "gaussian-thompson", "linucb",
        "lin-ts"])
def test_every_policy_logs_a_propensity_by_default(make) -> None:
    policy = make()
    contexts = np.random.default_rng(0).standard_normal((4, 3)) if hasattr(policy, "dim") \
        else None
    candidates = np.tile(np.arange(5), (4, 1))
    selection = policy.select(contexts, candidates, 2)
    assert np.isfinite(selection.propensities).all()
    assert ((selection.propensities > 0) & (selection.propensities <= 1)).all()
