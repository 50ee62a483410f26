"""A bandit environment built from a rating dataset, with ground truth for every policy.

`Simulator.from_interactions` (ML-100K in the benchmarks):

* **Reward model**: a `recforge.models.factorization.mf.BiasedMF` is fitted on every rating
  (``factors=20, reg=0.02`` by default: less regularised than the rating-prediction
  default, so that the world's users differ in taste; on ML-100K the best arm per user is
  then liked with probability 0.99 on average against 0.92 for the best single arm, where
  ``reg=0.1`` leaves 0.92 against 0.91), and its rating estimate ``r(u, i)`` is turned into the probability that the user likes
  the item (rates it ``>= threshold``) by a logistic calibration ``sigmoid(a r + c)`` fitted
  (Newton's method) on the observed ratings: ``truth[u, i]``.
* **Arms**: the ``n_arms`` most rated items.
* **Users** arrive uniformly (or in proportion to their ratings, ``arrival="activity"``) with
  a feature vector: an intercept, then the user's bias and factors from the model,
  standardised (what a feature store would serve for a known user).
* **Click model**: a slate of ``k`` items; slot ``j`` is examined with probability
  ``(j + 1) ** -position_bias`` (the position-based model, Richardson et al., WWW 2007) and
  an examined item is clicked with probability ``truth[u, i]``. The reward of a slot is its
  click; the expected reward of a slate is ``sum_j examine_j truth[u, a_j]``.
* **Ground truth**: the expected reward of any slate (so per-round regret against the best
  slate, the top ``k`` items by ``truth`` in slot order), and the exact value of any static
  policy given as its action probabilities per user (`value`), against which off-policy
  estimates are checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from recforge.bandits.base import SLATE, Policy, greedy_action_dist
from recforge.bandits.logged import LoggedFeedback
from recforge.data.interactions import Interactions
from recforge.errors import InputError
from recforge.params import SEED, WIDTH, Choice, Integer, Real, check_all

#: most points kept per reward/regret curve
CURVE_POINTS = 200


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(score: np.ndarray, label: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """``(a, c)`` maximising the likelihood of ``label ~ Bernoulli(sigmoid(a score + c))``
    (Newton's method on the two parameters)."""
    x = np.stack([score, np.ones_like(score)], axis=1).astype(np.float64)
    y = label.astype(np.float64)
    beta = np.zeros(2)
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        grad = x.T @ (y - p)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


@dataclasses.dataclass
class RunResult:
    """One policy run: per-round realised reward (clicks), expected reward and regret
    (against the best slate), as cumulative curves sampled at ``rounds``."""

    policy: str
    seed: int
    rounds: np.ndarray
    cumulative_reward: np.ndarray
    cumulative_expected: np.ndarray
    cumulative_regret: np.ndarray
    seconds: float


class Simulator:
    """The environment (module docstring): ``truth`` ``(n_users, n_arms)`` like
    probabilities, ``contexts`` ``(n_users, d)``, ``arrival`` probabilities of the users,
    ``examine`` the slot examination probabilities, ``items`` the arms' item indices."""

    def __init__(self, truth: np.ndarray, contexts: np.ndarray, arrival: np.ndarray,
                 examine: np.ndarray, items: np.ndarray | None = None):
        self.truth = np.asarray(truth, dtype=np.float64)
        self.contexts = np.asarray(contexts, dtype=np.float64)
        self.arrival = np.asarray(arrival, dtype=np.float64)
        self.examine = np.asarray(examine, dtype=np.float64)
        self.items = np.arange(self.truth.shape[1]) if items is None else np.asarray(items)
        if (self.truth.ndim != 2 or len(self.contexts) != len(self.truth)
                or len(self.arrival) != len(self.truth)):
            raise InputError("truth, contexts and arrival must have one row per user")
        if self.slate_size > self.n_arms:
            raise InputError(f"slate_size: {self.slate_size} slots need at least as many arms "
                             f"(n_arms is {self.n_arms})")
        top = -np.sort(-self.truth, axis=1)[:, :self.slate_size]
        self.best = top @ self.examine  # the best slate's expected reward per user

    @property
    def n_users(self) -> int:
        return self.truth.shape[0]

    @property
    def n_arms(self) -> int:
        return self.truth.shape[1]

    @property
    def dim(self) -> int:
        return self.contexts.shape[1]

    @property
    def slate_size(self) -> int:
        return len(self.examine)

    @classmethod
    def from_interactions(cls, data: Interactions, n_arms: int = 50, factors: int = 20,
                          reg: float = 0.02, threshold: float = 4.0, slate_size: int = 1,
                          position_bias: float = 1.0, arrival: str = "uniform",
                          seed: int = 0) -> Simulator:
        """The environment of the module docstring from rated interactions."""
        from recforge.models.factorization.mf import BiasedMF

        n_arms = Integer(1, data.n_items).check("n_arms", n_arms)
        factors = WIDTH.check("factors", factors)
        reg = Real(0).check("reg", reg)
        threshold = Real().check("threshold", threshold)
        slate_size = SLATE.check("slate_size", slate_size)
        position_bias = Real(0).check("position_bias", position_bias)
        arrival = Choice("uniform", "activity").check("arrival", arrival)
        if data.ratings is None:
            raise InputError(f"{data.name or 'the data'}: the simulator's reward model needs "
                             "ratings")
        model = BiasedMF(factors=factors, reg=reg, seed=SEED.check("seed", seed)).fit(data)
        a, c = fit_logistic(model.predict(data.users, data.items), data.ratings >= threshold)
        items = np.argsort(-data.item_counts, kind="stable")[:n_arms]
        estimate = model.score(np.arange(data.n_users))[:, items].astype(np.float64)
        features = np.hstack([model.user_bias_[:, None], model.user_factors_]).astype(
            np.float64)
        features = (features - features.mean(0)) / np.maximum(features.std(0), 1e-12)
        contexts = np.hstack([np.ones((data.n_users, 1)), features])
        weights = (np.ones(data.n_users) if arrival == "uniform"
                   else data.user_counts.astype(np.float64))
        examine = (np.arange(slate_size) + 1.0) ** -position_bias
        return cls(_sigmoid(a * estimate + c), contexts, weights / weights.sum(), examine,
                   items)

    # ------------------------------------------------------------------ ground truth
    def draw_users(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` arriving users."""
        return rng.choice(self.n_users, size=n, p=self.arrival)

    def expected_reward(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """Expected clicks of each round's slate (``(n, k)`` arms)."""
        return (self.truth[users[:, None], slates] * self.examine[:slates.shape[1]]).sum(1)

    def clicks(self, users: np.ndarray, slates: np.ndarray, rng: np.random.Generator
               ) -> np.ndarray:
        """Sampled clicks, ``(n, k)``, under the position-based click model."""
        p = self.truth[users[:, None], slates] * self.examine[:slates.shape[1]]
        return (rng.random(p.shape) < p).astype(np.float64)

    def value(self, action_dist: np.ndarray) -> float:
        """The exact expected reward per round of a static policy that shows arm ``a`` in slot
        ``j`` to user ``u`` with probability ``action_dist[u, a, j]`` (``(n_users, n_arms)``
        for one slot)."""
        dist = np.asarray(action_dist, dtype=np.float64)
        if dist.ndim == 2:
            dist = dist[:, :, None]
        if dist.shape[:2] != self.truth.shape:
            raise InputError(f"action_dist must be ({self.n_users}, {self.n_arms}[, k]), got "
                             f"{dist.shape}")
        per_user = np.einsum("uaj,ua,j->u", dist, self.truth, self.examine[:dist.shape[2]])
        return float(self.arrival @ per_user)

    # ------------------------------------------------------------------ running policies
    def run(self, policy: Policy, rounds: int, batch: int = 10, seed: int = 0,
            name: str = "") -> RunResult:
        """``rounds`` rounds of ``policy`` (updated every ``batch`` rounds) on users drawn
        with ``seed``; the curves keep `CURVE_POINTS` points."""
        import time

        rounds = Integer(1, 10**9).check("rounds", rounds)
        batch = Integer(1, 10**6).check("batch", batch)
        rng = np.random.default_rng(SEED.check("seed", seed))
        clicks_per_round = np.empty(rounds)
        expected = np.empty(rounds)
        regret = np.empty(rounds)
        start = time.perf_counter()
        for lo in range(0, rounds, batch):
            hi = min(lo + batch, rounds)
            users = self.draw_users(hi - lo, rng)
            x = self.contexts[users]
            chosen = policy.select(x, None, self.slate_size).actions
            clicks = self.clicks(users, chosen, rng)
            policy.update(x, chosen, clicks)
            clicks_per_round[lo:hi] = clicks.sum(1)
            expected[lo:hi] = self.expected_reward(users, chosen)
            regret[lo:hi] = self.best[users] - expected[lo:hi]
        seconds = time.perf_counter() - start
        keep = np.unique(np.linspace(1, rounds, min(CURVE_POINTS, rounds)).astype(int)) - 1
        return RunResult(name or policy.name, seed, keep + 1,
                         np.cumsum(clicks_per_round)[keep], np.cumsum(expected)[keep],
                         np.cumsum(regret)[keep], seconds)

    def log(self, action_dist: np.ndarray, n: int, rng: np.random.Generator) -> LoggedFeedback:
        """``n`` rounds logged by a static one-slot policy (``(n_users, n_arms)``
        probabilities): arrivals, sampled actions, clicks, propensities, contexts."""
        users = self.draw_users(n, rng)
        probs = action_dist[users]
        cum = np.cumsum(probs, axis=1)
        actions = (rng.random(n)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
        actions = np.minimum(actions, self.n_arms - 1)
        rewards = self.clicks(users, actions[:, None], rng)[:, 0]
        return LoggedFeedback(actions, rewards, probs[np.arange(n), actions], self.n_arms,
                              contexts=self.contexts[users], users=users)

    # ------------------------------------------------------------------ static policies
    def uniform(self) -> np.ndarray:
        """Uniformly random over every arm, per user."""
        return np.full(self.truth.shape, 1.0 / self.n_arms)

    def epsilon_greedy(self, scores: np.ndarray, epsilon: float) -> np.ndarray:
        """The greedy arm of ``scores`` (``(n_users, n_arms)``, ties shared) with probability
        ``1 - epsilon``, a uniform one otherwise."""
        greedy = greedy_action_dist(np.asarray(scores, dtype=np.float64), 1)[:, :, 0]
        return (1 - epsilon) * greedy + epsilon / self.n_arms

    @staticmethod
    def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
        """``exp(scores / temperature)`` normalised per user."""
        z = np.asarray(scores, dtype=np.float64) / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Mean, standard deviation, minimum and maximum over seeds of the final cumulative
    reward, expected reward and regret, and the mean / std regret and reward curves."""
    def stats(values: np.ndarray) -> dict[str, float]:
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(
            values) > 1 else 0.0, "min": float(values.min()), "max": float(values.max())}

    reward = np.stack([r.cumulative_reward for r in results])
    expected = np.stack([r.cumulative_expected for r in results])
    regret = np.stack([r.cumulative_regret for r in results])
    return {
        "seeds": [r.seed for r in results],
        "cumulative_reward": stats(reward[:, -1]),
        "cumulative_expected_reward": stats(expected[:, -1]),
        "cumulative_regret": stats(regret[:, -1]),
        "seconds": stats(np.array([r.seconds for r in results])),
        "curve": {"rounds": results[0].rounds.tolist(),
                  "regret_mean": regret.mean(0).tolist(), "regret_std": regret.std(0).tolist(),
                  "reward_mean": reward.mean(0).tolist(), "reward_std": reward.std(0).tolist()},
    }


def plot_curves(summaries: dict[str, dict[str, Any]], path: Path, what: str = "regret") -> Path:
    """Cumulative ``what`` (``regret`` or ``reward``) against rounds, one line per policy with
    a band of one standard deviation over seeds, written as a PNG."""
    from recforge.report.figures import DPI, new_figure, palette

    colours = palette(list(summaries))
    fig = new_figure(7, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for name, summary in summaries.items():
        curve = summary["curve"]
        x = np.asarray(curve["rounds"])
        mean, std = np.asarray(curve[f"{what}_mean"]), np.asarray(curve[f"{what}_std"])
        ax.plot(x, mean, color=colours[name], label=name)
        ax.fill_between(x, mean - std, mean + std, color=colours[name], alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative {what}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return Path(path)


#: the policies `make_policy` builds for a simulation, by name
SIMULATED_POLICIES = ("random", "epsilon-greedy", "decaying-epsilon-greedy", "ucb1", "thompson",
                      "gaussian-thompson", "linucb", "lin-ts")
CONTEXTUAL = ("linucb", "lin-ts")


def make_policy(name: str, n_arms: int, dim: int, seed: int,
                params: dict[str, Any] | None = None) -> Policy:
    """A fresh policy for a simulation: ``name`` in `SIMULATED_POLICIES`, its
    hyperparameters ``params`` (checked; the defaults otherwise). ``decaying-epsilon-greedy``
    is `EpsilonGreedy` with ``epsilon=1`` and ``decay=n_arms`` unless given."""
    from recforge.bandits import linear, policies
    from recforge.errors import UnknownNameError, did_you_mean

    params = dict(params or {})
    classes: dict[str, Any] = {
        "random": policies.RandomPolicy, "epsilon-greedy": policies.EpsilonGreedy,
        "decaying-epsilon-greedy": policies.EpsilonGreedy, "ucb1": policies.UCB1,
        "thompson": policies.BetaThompson, "gaussian-thompson": policies.GaussianThompson,
        "linucb": linear.LinUCB, "lin-ts": linear.LinTS}
    if name not in classes:
        raise UnknownNameError(f"unknown policy {name!r}{did_you_mean(name, classes)}; valid: "
                               f"{', '.join(SIMULATED_POLICIES)}")
    for key in params:
        if key in ("n_arms", "dim", "seed"):
            raise InputError(f"{name}.{key} is set by the simulation (arms, context width, "
                             "--seed), not by a parameter")
    check_all({k: r for k, r in classes[name].rules().items()
               if k not in ("n_arms", "dim", "seed")}, params, where=f"{name}.")
    if name == "decaying-epsilon-greedy":
        params = {"epsilon": 1.0, "decay": float(n_arms), **params}
    if "propensity_samples" in classes[name].rules():
        # regret needs no propensities: the sampling policies skip their Monte Carlo
        # estimate unless asked (and their draws stay those of the recorded runs)
        params.setdefault("propensity_samples", 0)
    if name in CONTEXTUAL:
        params["dim"] = dim
    return classes[name](n_arms=n_arms, seed=seed, **params)
