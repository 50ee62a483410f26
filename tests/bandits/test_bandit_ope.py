"""Off-policy evaluation: unbiasedness on a problem with known truth, the estimators' forms,
agreement with the Open Bandit Pipeline (obp) to 1e-6, and logged feedback from events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.bandits import ope
from recforge.bandits.logged import LoggedFeedback, read_event_log
from recforge.data.events import Events
from recforge.data.interactions import IdMap
from recforge.errors import InputError

N_ACTIONS, DIM = 4, 3


class World:
    """Contexts ``N(0, I)``, Bernoulli rewards with ``P(r=1 | x, a) = sigmoid(x . w_a)``;
    the value of a policy given by a function of the contexts is computed exactly by Monte
    Carlo over a large sample of contexts."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(N_ACTIONS, DIM))

    def mean(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x @ self.w.T))

    def log(self, n: int, logging, rng) -> tuple[LoggedFeedback, np.ndarray]:
        x = rng.normal(size=(n, DIM))
        probs = logging(x)
        actions = (rng.random(n)[:, None] > np.cumsum(probs, 1)).sum(1)
        rewards = (rng.random(n) < self.mean(x)[np.arange(n), actions]).astype(float)
        return LoggedFeedback(actions, rewards, probs[np.arange(n), actions], N_ACTIONS,
                              contexts=x), x

    def truth(self, target, rng) -> float:
        x = rng.normal(size=(400_000, DIM))
        return float((target(x) * self.mean(x)).sum(1).mean())


def uniform(x):
    return np.full((len(x), N_ACTIONS), 1 / N_ACTIONS)


def eps_greedy_logging(x):
    greedy = np.eye(N_ACTIONS)[(x[:, 0] > 0).astype(int)]
    return 0.6 * greedy + 0.4 / N_ACTIONS


def target(x):
    return np.eye(N_ACTIONS)[np.argmax(x @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1],
                                                      [-1, -1, 0]]).T, axis=1)]


@pytest.mark.parametrize("logging", [uniform, eps_greedy_logging])
def test_estimators_are_unbiased_with_known_truth(logging):
    world = World()
    rng = np.random.default_rng(1)
    truth = world.truth(target, rng)
    bad_model = np.full((2000, N_ACTIONS), 0.2)  # a wrong reward model: DR stays unbiased
    got = {"ips": [], "dr": [], "snips": []}
    for _ in range(200):
        logged, x = world.log(2000, logging, rng)
        pi = target(x)
        got["ips"].append(ope.ips(logged, pi, n_bootstrap=10).value)
        got["snips"].append(ope.snips(logged, pi, n_bootstrap=10).value)
        got["dr"].append(ope.doubly_robust(logged, pi, bad_model, n_bootstrap=10).value)
    for name, values in got.items():
        values = np.array(values)
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * se + 2e-3, (name, values.mean(), truth, se)


def test_dm_with_cross_fitting_and_dr_are_close_to_the_truth():
    world = World(2)
    rng = np.random.default_rng(3)
    truth = world.truth(target, rng)
    logged, x = world.log(20_000, uniform, rng)
    results = ope.evaluate(logged, target(x), n_bootstrap=100, seed=0)
    assert set(results) == set(ope.ESTIMATORS)
    for name, est in results.items():
        assert abs(est.value - truth) < 0.03, (name, est.value, truth)
        assert est.low <= est.value <= est.high
        assert est.high - est.low < 0.1
    assert results["replay"].value == pytest.approx(results["snips"].value)
    assert results["ips"].ess == pytest.approx(results["replay"].ess, rel=1e-9)
    assert results["dm"].ess == len(logged)


def test_cross_fitting_predicts_each_fold_from_the_others():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    actions = rng.integers(0, 2, 300)
    rewards = x[:, 0] * (actions == 0) + 5.0 * (np.arange(300) < 150)  # fold-dependent
    logged = LoggedFeedback(actions, rewards, np.full(300, 0.5), 2, contexts=x)
    q = ope.cross_fit_rewards(logged, folds=2, reg=1e-6, seed=4)
    in_sample = ope.RidgeRewards(2, 1e-6).fit(x, actions, rewards).predict(x)
    assert not np.allclose(q, in_sample)
    assert q.shape == (300, 2)


def test_ess_and_switch_dr_forms():
    logged = LoggedFeedback(np.array([0, 1, 0, 1]), np.array([1.0, 0.0, 1.0, 1.0]),
                            np.array([0.5, 0.5, 0.1, 0.5]), 2)
    pi = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=float)
    q = np.full((4, 2), 0.5)
    w = np.array([2, 0, 10, 2])
    assert ope.ips(logged, pi).ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert ope.ips(logged, pi).value == pytest.approx((w * logged.rewards).mean())
    switch = ope.switch_dr(logged, pi, q, tau=5.0)
    kept = np.where(w <= 5, w * (logged.rewards - 0.5), 0)
    assert switch.value == pytest.approx((0.5 + kept).mean())
    assert ope.switch_dr(logged, pi, q, tau=np.inf).value == pytest.approx(
        ope.doubly_robust(logged, pi, q).value)


def test_bad_inputs_are_refused_in_one_line():
    logged = LoggedFeedback(np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 0.25]), 2)
    with pytest.raises(InputError, match="uniformly logged"):
        ope.replay(logged, np.full((2, 2), 0.5))
    with pytest.raises(InputError, match="action_dist must be"):
        ope.ips(logged, np.full((3, 2), 0.5))
    with pytest.raises(InputError, match="propensities must be in"):
        LoggedFeedback(np.array([0]), np.array([1.0]), np.array([0.0]), 2)
    with pytest.raises(InputError, match="unknown estimator 'ipw'"):
        ope.evaluate(logged, np.full((2, 2), 0.5), ("ipw",))
    with pytest.raises(InputError, match="never takes"):
        ope.snips(logged, np.array([[0.0, 0.0], [1.0, 0.0]]))


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    terms = np.random.default_rng(0).normal(size=(500, 1))
    a = ope.bootstrap(terms, lambda m: m[:, 0], 200, seed=3)
    assert a == ope.bootstrap(terms, lambda m: m[:, 0], 200, seed=3)
    assert a[0] < terms.mean() < a[1]


def test_replay_of_a_learning_policy_matches_its_online_value():
    from recforge.bandits.policies import EpsilonGreedy

    rng = np.random.default_rng(5)
    means = np.array([0.2, 0.8, 0.4])
    n = 3000
    actions = rng.integers(0, 3, n)
    rewards = (rng.random(n) < means[actions]).astype(float)
    logged = LoggedFeedback(actions, rewards, np.full(n, 1 / 3), 3)
    est = ope.replay_policy(EpsilonGreedy(3, epsilon=0.1, seed=0), logged)
    assert 0.6 < est.value < 0.85 and 700 < est.ess < 1300


# ---------------------------------------------------------------------- obp agreement
def test_recforge_estimators_equal_obp_on_synthetic_feedback():
    obp_dataset = pytest.importorskip("obp.dataset")
    obp_ope = pytest.importorskip("obp.ope")
    data = obp_dataset.SyntheticBanditDataset(
        n_actions=10, dim_context=5, reward_type="binary",
        reward_function=obp_dataset.logistic_reward_function, random_state=12345)
    feedback = data.obtain_batch_bandit_feedback(n_rounds=5000)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5000, 10))
    action_dist = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[:, :, None]
    q_hat = rng.random((5000, 10, 1))
    logged = LoggedFeedback(feedback["action"], feedback["reward"], feedback["pscore"], 10,
                            positions=feedback["position"], contexts=feedback["context"])
    pairs = {
        "ips": (ope.ips(logged, action_dist), obp_ope.InverseProbabilityWeighting()),
        "snips": (ope.snips(logged, action_dist),
                  obp_ope.SelfNormalizedInverseProbabilityWeighting()),
        "dm": (ope.direct_method(logged, action_dist, q_hat), obp_ope.DirectMethod()),
        "dr": (ope.doubly_robust(logged, action_dist, q_hat), obp_ope.DoublyRobust()),
        "switch-dr": (ope.switch_dr(logged, action_dist, q_hat, tau=5.0),
                      obp_ope.SwitchDoublyRobust(lambda_=5.0)),
    }
    for name, (ours, estimator) in pairs.items():
        theirs = estimator.estimate_policy_value(
            reward=feedback["reward"], action=feedback["action"], pscore=feedback["pscore"],
            position=feedback["position"], action_dist=action_dist,
            estimated_rewards_by_reg_model=q_hat)
        assert abs(ours.value - theirs) < 1e-6, (name, ours.value, theirs)


# ---------------------------------------------------------------------- logged input
def test_feedback_from_events_and_an_event_log_file(tmp_path):
    frame = pd.DataFrame({"user": ["u1", "u2", "u1"], "item": [10, 11, 12],
                          "click": [1, 0, 1], "propensity": [0.5, 0.25, 0.5],
                          "position": [0, 1, 0], "age": [30.0, 40.0, 30.0]})
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    logged = read_event_log(path, reward="click", context=["age"])
    assert logged.actions.tolist() == [0, 1, 2] and logged.n_actions == 3
    assert logged.positions.tolist() == [0, 1, 0] and logged.slate_size == 2
    np.testing.assert_allclose(logged.contexts[:, 0], [30, 40, 30])
    np.testing.assert_allclose(logged.propensities, [0.5, 0.25, 0.5])
    events = Events(np.array([0, 1]), np.array([0, 0]), user_map=IdMap(np.array([1, 2])),
                    item_map=IdMap(np.array([5])), labels={"click": np.array([1, 0])})
    with pytest.raises(InputError, match="propensity"):
        LoggedFeedback.from_events(events, "click")
    frame.assign(propensity=[0.5, 0.0, 0.5]).to_csv(path, index=False)
    with pytest.raises(InputError):
        read_event_log(path, reward="click")
