"""Multi-armed bandit policies without context, and a policy over any recforge model.

* `RandomPolicy`: a uniformly random slate (the floor every policy must beat).
* `EpsilonGreedy`: the greedy slate by empirical mean, or with probability epsilon a uniformly
  random one; epsilon fixed or decaying as ``min(epsilon, decay / t)`` after ``t`` rounds,
  the epsilon_n-greedy of Auer, Cesa-Bianchi & Fischer (Machine Learning 2002) with
  ``decay = cK/d^2``. Arms start from ``prior_count`` pseudo-rewards of ``prior_value``
  (optimistic initial values, Sutton & Barto 2018, 2.6).
* `UCB1` (Auer et al. 2002): mean plus ``alpha * sqrt(2 ln t / n_a)``; an arm never played
  scores infinity, so a new arm is tried first.
* `BetaThompson` (Thompson 1933; Chapelle & Li, NIPS 2011): a Beta posterior per arm for
  rewards in [0, 1] (a fractional reward updates both counts).
* `GaussianThompson`: a Normal posterior per arm with known noise variance (Normal-Normal
  conjugacy) for real-valued rewards.
* `ModelPolicy`: exploration over a fitted recforge model's top candidates.

Counts are accumulated with ``np.bincount`` over a whole batch of feedback.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recforge.bandits.base import Policy, register_policy
from recforge.errors import InputError
from recforge.params import CUTOFF, UNIT, Integer, Optional, Real, Rule

POSITIVE = Real(0, low_open=True)
#: Monte Carlo draws per selection that estimate a sampled policy's propensities
SAMPLES = Integer(0, 100_000)
#: the default of those draws, so every policy logs a propensity (0: none, NaN)
PROPENSITY_SAMPLES = 200


class CountingPolicy(Policy):
    """A policy whose state is each arm's pulls and reward sum (``pulls_``, ``reward_sum_``)
    and the number of rounds updated so far (``rounds_``)."""

    def _init_state(self, n_arms: int) -> None:
        self.pulls_ = np.zeros(n_arms)
        self.reward_sum_ = np.zeros(n_arms)
        self.rounds_ = 0

    def _grow_state(self, count: int, **features: Any) -> None:
        if features:
            raise InputError(f"{type(self).__name__} takes no arm features")
        self.pulls_ = np.concatenate([self.pulls_, np.zeros(count)])
        self.reward_sum_ = np.concatenate([self.reward_sum_, np.zeros(count)])

    def update(self, contexts: Any, actions: Any, rewards: Any) -> None:
        acts, rews = self.check_feedback(actions, rewards)
        self._check_rewards(rews)
        seen = ~np.isnan(rews)
        self.pulls_ += np.bincount(acts[seen], minlength=self.n_arms)
        self.reward_sum_ += np.bincount(acts[seen], rews[seen], minlength=self.n_arms)
        self.rounds_ += len(acts)

    def _check_rewards(self, rewards: np.ndarray) -> None:
        """Refuse rewards the policy's model does not cover (default: any finite value)."""


@register_policy("random")
class RandomPolicy(CountingPolicy):
    """A uniformly random ordered slate of the candidates (all scores equal: every arm has
    propensity ``1 / m`` in every slot)."""

    def __init__(self, n_arms: int, seed: int = 0):
        super().__init__(n_arms=n_arms, seed=seed)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        return np.zeros(candidates.shape)


@register_policy("epsilon-greedy")
class EpsilonGreedy(CountingPolicy):
    """Epsilon-greedy with optimistic initial values (module docstring)."""

    exploration = "epsilon"
    param_rules: ClassVar[dict[str, Rule]] = {
        "epsilon": UNIT, "decay": Optional(POSITIVE), "prior_value": Real(),
        "prior_count": Real(0)}

    def __init__(self, n_arms: int, epsilon: float = 0.1, decay: float | None = None,
                 prior_value: float = 1.0, prior_count: float = 1.0, seed: int = 0):
        super().__init__(n_arms=n_arms, epsilon=epsilon, decay=decay, prior_value=prior_value,
                         prior_count=prior_count, seed=seed)

    def current_epsilon(self, n: int) -> np.ndarray:
        if self.decay is None:
            return np.full(n, self.epsilon)
        t = self.rounds_ + 1 + np.arange(n)
        return np.minimum(self.epsilon, self.decay / t)

    def means(self) -> np.ndarray:
        """Each arm's mean reward shrunk towards ``prior_value`` (``prior_value`` for an arm
        never played when ``prior_count`` is 0)."""
        total = self.pulls_ + self.prior_count
        value = self.reward_sum_ + self.prior_value * self.prior_count
        return np.divide(value, total, out=np.full(self.n_arms, self.prior_value),
                         where=total > 0)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        return self.means()[candidates]


@register_policy("ucb1")
class UCB1(CountingPolicy):
    """UCB1 for rewards in [0, 1] (Auer, Cesa-Bianchi & Fischer 2002); ``alpha`` scales the
    confidence width (1: the paper's)."""

    param_rules: ClassVar[dict[str, Rule]] = {"alpha": Real(0)}

    def __init__(self, n_arms: int, alpha: float = 1.0, seed: int = 0):
        super().__init__(n_arms=n_arms, alpha=alpha, seed=seed)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        pulls = self.pulls_[candidates]
        t = max(self.pulls_.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.alpha * np.sqrt(2 * np.log(t) / pulls)
            return np.where(pulls > 0, self.reward_sum_[candidates] / pulls + bonus, np.inf)


@register_policy("thompson")
class BetaThompson(CountingPolicy):
    """Beta-Bernoulli Thompson sampling: arm ``a`` draws from ``Beta(prior_alpha + s_a,
    prior_beta + f_a)`` (``s``/``f`` the summed rewards and their complements). A new arm
    starts at the prior: pick ``prior_alpha > prior_beta`` for an optimistic one.
    ``propensity_samples`` Monte Carlo draws (default 200) estimate each selection's
    propensities (0: not estimated, NaN)."""

    exploration = "sampled"
    param_rules: ClassVar[dict[str, Rule]] = {
        "prior_alpha": POSITIVE, "prior_beta": POSITIVE,
        "propensity_samples": SAMPLES}

    def __init__(self, n_arms: int, prior_alpha: float = 1.0, prior_beta: float = 1.0,
                 propensity_samples: int = PROPENSITY_SAMPLES, seed: int = 0):
        super().__init__(n_arms=n_arms, prior_alpha=prior_alpha, prior_beta=prior_beta,
                         propensity_samples=propensity_samples, seed=seed)

    def _check_rewards(self, rewards: np.ndarray) -> None:
        seen = rewards[~np.isnan(rewards)]
        if seen.size and (seen.min() < 0 or seen.max() > 1):
            raise InputError("rewards: Beta-Bernoulli Thompson sampling needs rewards in "
                             "[0, 1]; use GaussianThompson for real-valued rewards")

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        alpha = self.prior_alpha + self.reward_sum_[candidates]
        beta = self.prior_beta + self.pulls_[candidates] - self.reward_sum_[candidates]
        return self.rng_.beta(alpha, beta)


@register_policy("gaussian-thompson")
class GaussianThompson(CountingPolicy):
    """Gaussian Thompson sampling: arm ``a``'s mean has the prior ``N(prior_mean,
    1 / prior_precision)`` and rewards have variance ``noise_var``; the posterior is
    ``N(m_a, 1 / p_a)`` with ``p_a = prior_precision + n_a / noise_var`` and ``m_a =
    (prior_precision * prior_mean + sum_a / noise_var) / p_a``."""

    exploration = "sampled"
    param_rules: ClassVar[dict[str, Rule]] = {
        "prior_mean": Real(), "prior_precision": POSITIVE, "noise_var": POSITIVE,
        "propensity_samples": SAMPLES}

    def __init__(self, n_arms: int, prior_mean: float = 0.0, prior_precision: float = 1.0,
                 noise_var: float = 1.0, propensity_samples: int = PROPENSITY_SAMPLES,
                 seed: int = 0):
        super().__init__(n_arms=n_arms, prior_mean=prior_mean, prior_precision=prior_precision,
                         noise_var=noise_var, propensity_samples=propensity_samples, seed=seed)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Each arm's posterior mean and precision."""
        precision = self.prior_precision + self.pulls_ / self.noise_var
        mean = (self.prior_precision * self.prior_mean + self.reward_sum_ / self.noise_var)
        return mean / precision, precision

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        mean, precision = self.posterior()
        noise = self.rng_.standard_normal(candidates.shape)
        return mean[candidates] + noise / np.sqrt(precision[candidates])


@register_policy("model")
class ModelPolicy(Policy):
    """Epsilon-greedy exploration over a fitted recforge model's top ``pool`` items.

    The contexts are user indices of the model (or a `recforge.data.query.QueryBatch`); with
    no candidates given, each round's candidates are the model's top ``pool`` items for the
    user (seen items left out). The predicted reward of an item is ``a + b * score + o_i``:
    the model's score calibrated by an online ridge regression of the rewards on the scores
    (``a``, ``b``) plus the item's mean residual shrunk by ``prior_count`` pseudo-rounds
    (``o_i``), so feedback corrects the model without a refit. The model is not saved with
    the policy: `load_policy` takes it as ``model=``."""

    exploration = "epsilon"
    param_rules: ClassVar[dict[str, Rule]] = {
        "epsilon": UNIT, "pool": CUTOFF, "prior_count": POSITIVE}

    def __init__(self, model: Any, epsilon: float = 0.1, pool: int = 100,
                 prior_count: float = 10.0, seed: int = 0):
        model.check_fitted()
        self.model = model
        super().__init__(n_arms=int(model.n_items_), epsilon=epsilon, pool=pool,
                         prior_count=prior_count, seed=seed)

    @classmethod
    def from_saved(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   **objects: Any) -> Policy:
        if "model" not in objects:
            raise ValueError("a model policy loads with its model: load_policy(path, model=...)")
        n_arms = params.pop("n_arms")
        policy = cls(objects["model"], **params)
        if policy.n_arms != n_arms:
            raise ValueError(f"the model has {policy.n_arms} items, the policy was saved "
                             f"with {n_arms}")
        return policy

    def _init_state(self, n_arms: int) -> None:
        self.gram_ = np.eye(2) * 1e-3  # ridge normal equations of reward ~ a + b * score
        self.moment_ = np.zeros(2)
        self.pulls_ = np.zeros(n_arms)
        self.residual_sum_ = np.zeros(n_arms)

    def _grow_state(self, count: int, **features: Any) -> None:
        raise InputError("a model policy's arms are the model's items; refit the model to add "
                         "items")

    def current_epsilon(self, n: int) -> np.ndarray:
        return np.full(n, self.epsilon)

    def _rounds(self, contexts: Any, candidates: Any) -> int:
        return len(self.model.as_queries(contexts))

    def check_candidates(self, candidates: Any, n: int, k: int) -> np.ndarray:
        if candidates is None:
            raise InputError("internal: model candidates are computed in select")
        return super().check_candidates(candidates, n, k)

    def select(self, contexts: Any, candidates: Any = None, k: int = 1):
        if candidates is None:
            pool = max(self.pool, k)
            candidates, _ = self.model.recommend(contexts, k=pool)
            if (candidates < 0).any():
                raise InputError(f"the model has fewer than {pool} unseen items for some user; "
                                 "lower pool or pass candidates")
        return super().select(contexts, candidates, k)

    def calibrated(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        """``a + b * score`` of each candidate (the model's score on the reward scale)."""
        scores = self.model.score(contexts, candidates).astype(np.float64)
        a, b = np.linalg.solve(self.gram_, self.moment_)
        return a + b * scores

    def predicted(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        """The calibrated reward plus each item's shrunk mean residual."""
        offset = self.residual_sum_ / (self.pulls_ + self.prior_count)
        return self.calibrated(contexts, candidates) + offset[candidates]

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        return self.predicted(contexts, candidates)

    def update(self, contexts: Any, actions: Any, rewards: Any) -> None:
        acts, rews = self.check_feedback(actions, rewards)
        before = self.calibrated(contexts, acts)
        scores = self.model.score(contexts, acts).astype(np.float64)
        seen = ~np.isnan(rews)
        design = np.stack([np.ones(seen.sum()), scores[seen]], axis=1)
        self.gram_ += design.T @ design
        self.moment_ += design.T @ rews[seen]
        self.pulls_ += np.bincount(acts[seen], minlength=self.n_arms)
        self.residual_sum_ += np.bincount(acts[seen], rews[seen] - before[seen],
                                          minlength=self.n_arms)
