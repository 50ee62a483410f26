"""Off-policy evaluation: the value of a target policy estimated from feedback logged by
another policy (`recforge.bandits.logged.LoggedFeedback`).

The target policy is given as ``action_dist``: its probability of each action in each
logged round, ``(n, n_actions)`` or, for slates, ``(n, n_actions, len_list)`` (the
probability of the action in each slot; the logged round's ``position`` picks the slot), as
in the Open Bandit Pipeline (Saito et al., NeurIPS 2021 datasets track), whose definitions the
estimators follow (and equal to 1e-6 in the tests). With ``w_i = pi(a_i | x_i) / p_i``:

* `ips`: inverse propensity scoring (Horvitz & Thompson 1952), ``mean(w r)``.
* `snips`: self-normalised IPS (Swaminathan & Joachims, NeurIPS 2015), ``sum(w r) / sum(w)``.
* `direct_method`: ``mean_i sum_a pi(a | x_i) q(x_i, a)`` with a reward model ``q``
  (`cross_fit_rewards` fits it by cross-fitting: each fold predicted by a model fitted on
  the other folds, Chernozhukov et al. 2018).
* `doubly_robust` (Dudik, Langford & Li, ICML 2011): DM plus ``mean(w (r - q(x_i, a_i)))``.
* `switch_dr` (Wang, Agarwal & Dudik, ICML 2017) as obp defines it: the DR correction only
  where ``w <= tau``.
* `replay` (Li, Chu, Langford & Wang, WSDM 2011) for uniformly logged data: the mean reward of
  the rounds where the target agrees with the log (``pi(a_i | x_i)`` weighted for a stochastic
  target); `replay_policy` replays a learning `recforge.bandits.base.Policy` through the log.

Each returns an `Estimate` with a percentile bootstrap confidence interval (rounds
resampled, the same resamples for every estimator that `evaluate` runs together; the reward
model is not refitted) and the effective sample size: Kish's
``(sum w)^2 / sum w^2`` for the weighted estimators, ``n`` for DM, the matches for replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from recforge.bandits.logged import LoggedFeedback
from recforge.errors import InputError
from recforge.params import SEED, Integer, Real

ESTIMATORS = ("replay", "ips", "snips", "dm", "dr", "switch-dr")
BOOTSTRAP = Integer(10, 100_000)
#: rows x replicates counted at once by the bootstrap
_BOOT_BLOCK = 1 << 22


@dataclasses.dataclass
class Estimate:
    """An estimate of a policy's value with its confidence interval and effective sample
    size."""

    name: str
    value: float
    low: float
    high: float
    ess: float
    n: int

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bootstrap_means(terms: np.ndarray, n_bootstrap: int = 200, seed: int = 0) -> np.ndarray:
    """Column means of ``terms`` (``(n, c)``) over ``n_bootstrap`` resamples of its rows,
    ``(n_bootstrap, c)``."""
    n_bootstrap = BOOTSTRAP.check("n_bootstrap", n_bootstrap)
    rng = np.random.default_rng(SEED.check("seed", seed))
    n = len(terms)
    step = max(1, _BOOT_BLOCK // max(n, 1))
    out = []
    for lo in range(0, n_bootstrap, step):
        size = min(step, n_bootstrap - lo)
        idx = rng.integers(0, n, (size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=size * n).reshape(size, n)
        out.append(counts @ terms / n)  # each resample's row counts times the terms
    return np.concatenate(out)


def bootstrap(terms: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray],
              n_bootstrap: int = 200, level: float = 0.95, seed: int = 0
              ) -> tuple[float, float]:
    """Percentile interval of ``reduce(column means)`` over ``n_bootstrap`` resamples of the
    rows of ``terms`` (``(n, c)``; ``reduce`` maps ``(B, c)`` means to ``(B,)`` values)."""
    return _interval(reduce(bootstrap_means(terms, n_bootstrap, seed)), level)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    level = Real(0, 1, low_open=True, high_open=True).check("level", level)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _weighted_ess(w: np.ndarray) -> float:
    total = float((w**2).sum())
    return float(w.sum() ** 2 / total) if total > 0 else 0.0


def target_at_logged(logged: LoggedFeedback, action_dist: np.ndarray) -> np.ndarray:
    """``pi(a_i | x_i)`` at each logged action and position."""
    dist = check_action_dist(logged, action_dist)
    return dist[np.arange(len(logged)), logged.actions, logged.positions]


def check_action_dist(logged: LoggedFeedback, action_dist: Any) -> np.ndarray:
    """``action_dist`` as a ``(n, n_actions, len_list)`` array, checked."""
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim == 2:
        dist = dist[:, :, None]
    if dist.ndim != 3 or dist.shape[:2] != (len(logged), logged.n_actions):
        raise InputError(f"action_dist must be ({len(logged)}, {logged.n_actions}) or "
                         f"({len(logged)}, {logged.n_actions}, len_list), got {dist.shape}")
    if dist.shape[2] < logged.slate_size:
        raise InputError(f"action_dist has {dist.shape[2]} slots, the log uses "
                         f"{logged.slate_size}")
    if not np.isfinite(dist).all() or dist.min() < 0 or dist.max() > 1 + 1e-9:
        raise InputError("action_dist must hold probabilities in [0, 1]")
    return dist


def _rewards_table(logged: LoggedFeedback, estimated_rewards: Any) -> np.ndarray:
    q = np.asarray(estimated_rewards, dtype=np.float64)
    if q.ndim == 2:
        q = q[:, :, None]
    if q.ndim != 3 or q.shape[:2] != (len(logged), logged.n_actions) or not np.isfinite(
            q).all():
        raise InputError(f"estimated_rewards must be a finite ({len(logged)}, "
                         f"{logged.n_actions}[, len_list]) array, got shape {q.shape}")
    return q


def _dm_terms(logged: LoggedFeedback, dist: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per round: the target's expected modelled reward at the logged position (the
    probabilities normalised over actions, as obp does)."""
    rows = np.arange(len(logged))
    pi = dist[rows, :, logged.positions]
    q_pos = q[rows, :, np.minimum(logged.positions, q.shape[2] - 1)]
    return (pi * q_pos).sum(axis=1) / pi.sum(axis=1)


#: an estimator before its interval: name, per-round terms ``(n, c)``, the map from column
#: means to the estimate, the effective sample size
Parts = tuple[str, np.ndarray, Callable[[np.ndarray], np.ndarray], float]


def _finish(parts: list[Parts], n_bootstrap: int, level: float, seed: int) -> list[Estimate]:
    """The estimates with their bootstrap intervals; every estimator's terms are resampled
    with the same rows (one resampling for all of them)."""
    stacked = np.hstack([terms for _, terms, _, _ in parts])
    means = bootstrap_means(stacked, n_bootstrap, seed)
    full = stacked.mean(axis=0)[None, :]
    out, lo = [], 0
    for name, terms, reduce, ess in parts:
        hi = lo + terms.shape[1]
        low, high = _interval(reduce(means[:, lo:hi]), level)
        out.append(Estimate(name, float(reduce(full[:, lo:hi])[0]), low, high, ess,
                            len(terms)))
        lo = hi
    return out


def _mean(means: np.ndarray) -> np.ndarray:
    return means[:, 0]


def _ratio(means: np.ndarray) -> np.ndarray:
    return means[:, 0] / means[:, 1]


def _ips_parts(logged: LoggedFeedback, action_dist: Any) -> Parts:
    w = target_at_logged(logged, action_dist) / logged.propensities
    return "ips", (w * logged.rewards)[:, None], _mean, _weighted_ess(w)


def _snips_parts(logged: LoggedFeedback, action_dist: Any) -> Parts:
    w = target_at_logged(logged, action_dist) / logged.propensities
    if w.sum() <= 0:
        raise InputError("snips: the target policy never takes a logged action (all "
                         "importance weights are 0)")
    return "snips", np.stack([w * logged.rewards, w], axis=1), _ratio, _weighted_ess(w)


def _dm_parts(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any) -> Parts:
    dist = check_action_dist(logged, action_dist)
    terms = _dm_terms(logged, dist, _rewards_table(logged, estimated_rewards))
    return "dm", terms[:, None], _mean, float(len(logged))


def _dr_parts(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any,
              tau: float = np.inf, name: str = "dr") -> Parts:
    dist = check_action_dist(logged, action_dist)
    q = _rewards_table(logged, estimated_rewards)
    rows = np.arange(len(logged))
    w = dist[rows, logged.actions, logged.positions] / logged.propensities
    q_logged = q[rows, logged.actions, np.minimum(logged.positions, q.shape[2] - 1)]
    correction = np.where(w <= tau, w * (logged.rewards - q_logged), 0.0)
    terms = _dm_terms(logged, dist, q) + correction
    return name, terms[:, None], _mean, _weighted_ess(np.where(w <= tau, w, 0.0))


def _switch_parts(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any,
                  tau: float) -> Parts:
    tau = Real(0, low_open=True, allow_inf=True).check("tau", tau)
    return _dr_parts(logged, action_dist, estimated_rewards, tau, "switch-dr")


def _replay_parts(logged: LoggedFeedback, action_dist: Any) -> Parts:
    if np.ptp(logged.propensities) > 1e-9 * logged.propensities.max():
        raise InputError("replay needs uniformly logged data (one propensity for every "
                         "round); use ips, snips or dr")
    match = target_at_logged(logged, action_dist)
    if match.sum() <= 0:
        raise InputError("replay: the target policy never agrees with the log")
    return "replay", np.stack([match * logged.rewards, match], axis=1), _ratio, float(
        match.sum())


def ips(logged: LoggedFeedback, action_dist: Any, *, n_bootstrap: int = 200,
        level: float = 0.95, seed: int = 0) -> Estimate:
    """Inverse propensity scoring (module docstring)."""
    return _finish([_ips_parts(logged, action_dist)], n_bootstrap, level, seed)[0]


def snips(logged: LoggedFeedback, action_dist: Any, *, n_bootstrap: int = 200,
          level: float = 0.95, seed: int = 0) -> Estimate:
    """Self-normalised inverse propensity scoring (module docstring)."""
    return _finish([_snips_parts(logged, action_dist)], n_bootstrap, level, seed)[0]


def direct_method(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any, *,
                  n_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> Estimate:
    """The direct method with the reward model's predictions ``estimated_rewards`` (``(n,
    n_actions[, len_list])``; `cross_fit_rewards` makes them)."""
    return _finish([_dm_parts(logged, action_dist, estimated_rewards)], n_bootstrap, level,
                   seed)[0]


def doubly_robust(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any, *,
                  n_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> Estimate:
    """Doubly robust estimation (module docstring)."""
    return _finish([_dr_parts(logged, action_dist, estimated_rewards)], n_bootstrap, level,
                   seed)[0]


def switch_dr(logged: LoggedFeedback, action_dist: Any, estimated_rewards: Any, *,
              tau: float = 100.0, n_bootstrap: int = 200, level: float = 0.95,
              seed: int = 0) -> Estimate:
    """Switch-DR: the DR correction for rounds with importance weight ``<= tau`` only (the
    direct method alone where the weight is larger)."""
    return _finish([_switch_parts(logged, action_dist, estimated_rewards, tau)], n_bootstrap,
                   level, seed)[0]


def replay(logged: LoggedFeedback, action_dist: Any, *, n_bootstrap: int = 200,
           level: float = 0.95, seed: int = 0) -> Estimate:
    """The replay method on uniformly logged data: ``sum_i pi(a_i|x_i) r_i / sum_i
    pi(a_i|x_i)`` (for a deterministic target, the mean reward where it agrees with the
    log). Refuses non-uniform logs (propensities that differ)."""
    return _finish([_replay_parts(logged, action_dist)], n_bootstrap, level, seed)[0]


def replay_policy(policy: Any, logged: LoggedFeedback, batch: int = 1) -> Estimate:
    """Replay a learning policy through uniformly logged data (Li et al. 2011, Algorithm 3):
    in each batch of ``batch`` rounds the policy selects one arm per round (every arm a
    candidate), and the rounds where it picks the logged arm count and are fed back
    (``batch=1``: the paper's sequential replay). The interval is the normal one of the mean
    of the matched rewards."""
    batch = Integer(1, 1_000_000).check("batch", batch)
    rewards = []
    for lo in range(0, len(logged), batch):
        part = logged.subset(np.arange(lo, min(lo + batch, len(logged))))
        chosen = policy.select(part.contexts, None if part.contexts is not None else
                               np.broadcast_to(np.arange(policy.n_arms),
                                               (len(part), policy.n_arms))).actions[:, 0]
        match = chosen == part.actions
        if match.any():
            ctx = None if part.contexts is None else part.contexts[match]
            policy.update(ctx, part.actions[match], part.rewards[match])
            rewards.append(part.rewards[match])
    got = np.concatenate(rewards) if rewards else np.zeros(0)
    if not len(got):
        raise InputError("replay_policy: the policy never agreed with the log")
    half = 1.96 * got.std(ddof=1) / np.sqrt(len(got)) if len(got) > 1 else np.inf
    return Estimate("replay", float(got.mean()), float(got.mean() - half),
                    float(got.mean() + half), float(len(got)), len(logged))


# ---------------------------------------------------------------------- reward models
class RidgeRewards:
    """A reward model with a ridge regression per action on the contexts (plus an
    intercept): ``fit(contexts, actions, rewards)``, ``predict(contexts) -> (n,
    n_actions)``."""

    def __init__(self, n_actions: int, reg: float = 1.0):
        self.n_actions = Integer(1).check("n_actions", n_actions)
        self.reg = Real(0, low_open=True).check("reg", reg)

    @staticmethod
    def _design(contexts: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(contexts), 1)), contexts])

    def fit(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray
            ) -> RidgeRewards:
        x = self._design(contexts)
        d = x.shape[1]
        gram = np.broadcast_to(self.reg * np.eye(d), (self.n_actions, d, d)).copy()
        moment = np.zeros((self.n_actions, d))
        order = np.argsort(actions, kind="stable")
        bounds = np.searchsorted(actions[order], np.arange(self.n_actions + 1))
        for a in np.flatnonzero(np.diff(bounds)):
            rows = x[order[bounds[a]:bounds[a + 1]]]
            gram[a] += rows.T @ rows
            moment[a] = rows.T @ rewards[order[bounds[a]:bounds[a + 1]]]
        self.coef_ = np.linalg.solve(gram, moment[:, :, None])[:, :, 0]
        return self

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        return self._design(contexts) @ self.coef_.T


def cross_fit_rewards(logged: LoggedFeedback, folds: int = 2, reg: float = 1.0,
                      model: Callable[[], Any] | None = None, seed: int = 0) -> np.ndarray:
    """``(n, n_actions)`` reward predictions by cross-fitting: the rounds are cut into
    ``folds`` random parts and each part is predicted by a reward model fitted on the others
    (``model()`` builds one with ``fit``/``predict``; default `RidgeRewards`)."""
    folds = Integer(2, 100).check("folds", folds)
    if logged.contexts is None:
        raise InputError("cross_fit_rewards needs logged contexts")
    part = np.random.default_rng(SEED.check("seed", seed)).permutation(len(logged)) % folds
    build = model or (lambda: RidgeRewards(logged.n_actions, reg))
    out = np.empty((len(logged), logged.n_actions))
    for k in range(folds):
        train = part != k
        fitted = build().fit(logged.contexts[train], logged.actions[train],
                             logged.rewards[train])
        out[~train] = fitted.predict(logged.contexts[~train])
    return out


def evaluate(logged: LoggedFeedback, action_dist: Any, estimators: tuple[str, ...] = ESTIMATORS,
             estimated_rewards: Any | None = None, *, tau: float = 100.0,
             n_bootstrap: int = 200, level: float = 0.95, seed: int = 0
             ) -> dict[str, Estimate]:
    """Every estimator in ``estimators`` on the same log (the reward model by
    `cross_fit_rewards` unless ``estimated_rewards`` is given; replay only on a uniform
    log)."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise InputError(f"unknown estimator {unknown[0]!r}; valid: {', '.join(ESTIMATORS)}")
    needs_model = {"dm", "dr", "switch-dr"} & set(estimators)
    q = estimated_rewards
    if needs_model and q is None:
        q = cross_fit_rewards(logged, seed=seed)
    build = {"replay": lambda: _replay_parts(logged, action_dist),
             "ips": lambda: _ips_parts(logged, action_dist),
             "snips": lambda: _snips_parts(logged, action_dist),
             "dm": lambda: _dm_parts(logged, action_dist, q),
             "dr": lambda: _dr_parts(logged, action_dist, q),
             "switch-dr": lambda: _switch_parts(logged, action_dist, q, tau)}
    parts = [build[name]() for name in estimators]
    return {e.name: e for e in _finish(parts, n_bootstrap, level, seed)}
