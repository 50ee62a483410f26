"""Linear contextual bandits: LinUCB (disjoint and hybrid, Li, Chu, Langford & Schapire,
WWW 2010) and linear Thompson sampling (Agrawal & Goyal, ICML 2013).

Each arm ``a`` keeps the inverse of its ridge design matrix ``A_a = reg I + sum x x^T``
(``A_inv_``, ``(n_arms, d, d)``), ``b_a = sum r x`` and ``theta_a = A_a^{-1} b_a``. An
observation updates ``A_a^{-1}`` by the Sherman-Morrison rank-one formula (`sherman_morrison`,
``O(d^2)`` instead of an ``O(d^3)`` inversion). A batch of feedback is applied in *waves*:
wave ``j`` holds each arm's ``j``-th observation of the batch, so the arms of a wave are
distinct and their rank-one updates run as one vectorised step; the result equals the
sequential updates exactly.

Scores of a batch of rounds over every arm are two matrix products: ``X theta^T`` and
``x^T A_a^{-1} x = vec(x x^T) . vec(A_a^{-1})`` (one ``(n, d^2) x (d^2, K)`` product over
the arms' matrices in place); a round with a few candidates gathers their matrices instead.

A new arm starts at ``A = reg I, b = 0``: the widest confidence width a context can have,
so LinUCB tries it soon (its optimistic prior), and LinTS samples it widely.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np

from recforge.bandits.base import Policy, check_contexts, register_policy
from recforge.bandits.policies import POSITIVE, PROPENSITY_SAMPLES, SAMPLES
from recforge.errors import InputError
from recforge.params import MAX_SOLVE_WIDTH, Integer, Real, Rule

DIM = Integer(1, MAX_SOLVE_WIDTH)
#: candidates per round below which a round's arm matrices are gathered rather than all
#: arms scored (as a share of the arms)
_GATHER_SHARE = 0.25
#: largest number of (round, candidate) matrix entries gathered at once
_GATHER_BLOCK = 1 << 22


def sherman_morrison(a_inv: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(A + x x^T)^{-1}`` from ``A^{-1}`` (symmetric) for a stack: ``a_inv`` ``(..., d, d)``,
    ``x`` ``(..., d)`` (Sherman & Morrison 1950)."""
    u = np.einsum("...ij,...j->...i", a_inv, x)
    denom = 1.0 + np.einsum("...i,...i->...", x, u)
    return a_inv - u[..., :, None] * u[..., None, :] / denom[..., None, None]


def waves(arms: np.ndarray) -> list[np.ndarray]:
    """Positions of ``arms`` grouped so that no arm repeats in a group, each arm's
    occurrences in order across the groups (group ``j``: each arm's ``j``-th occurrence)."""
    if not len(arms):
        return []
    order = np.argsort(arms, kind="stable")
    sorted_arms = arms[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_arms)) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(arms)]))
    occurrence = np.arange(len(arms)) - first
    by_wave = np.argsort(occurrence, kind="stable")
    bounds = np.searchsorted(occurrence[by_wave], np.arange(occurrence.max() + 2))
    return [order[by_wave[lo:hi]] for lo, hi in itertools.pairwise(bounds)]


def every_arm(candidates: np.ndarray, n_arms: int) -> bool:
    """Whether each row of ``candidates`` is ``0, 1, ..., n_arms - 1`` (the broadcast of
    `Policy.check_candidates` for None is recognised without a comparison)."""
    if candidates.shape[1] != n_arms:
        return False
    if candidates.strides[0] == 0:
        return bool((candidates[0] == np.arange(n_arms)).all())
    return bool((candidates == np.arange(n_arms)).all())


def observed(contexts: np.ndarray, acts: np.ndarray, rews: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (context row, arm, reward) triples of the observed slots, round by round."""
    seen = ~np.isnan(rews)
    rows = np.nonzero(seen)[0]
    return rows, acts[seen], rews[seen]


def checked_feedback(policy: Policy, contexts: Any, actions: Any, rewards: Any
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``update``'s inputs checked against ``policy`` (``dim`` contexts, one row per action):
    the contexts and `observed`'s rows, arms and rewards."""
    acts, rews = policy.check_feedback(actions, rewards)
    x = check_contexts(contexts, policy.dim)
    if len(x) != len(acts):
        raise InputError(f"contexts have {len(x)} rows, actions {len(acts)}")
    return (x, *observed(x, acts, rews))


class LinearPolicy(Policy):
    """Per-arm ridge regression state and its vectorised updates (module docstring)."""

    param_rules: ClassVar[dict[str, Rule]] = {"dim": DIM, "reg": POSITIVE}

    def _init_state(self, n_arms: int) -> None:
        self.A_inv_ = np.broadcast_to(np.eye(self.dim) / self.reg,
                                      (n_arms, self.dim, self.dim)).copy()
        self.b_ = np.zeros((n_arms, self.dim))
        self.theta_ = np.zeros((n_arms, self.dim))

    def _grow_state(self, count: int, **features: Any) -> None:
        if features:
            raise InputError(f"{type(self).__name__} takes no arm features")
        fresh = np.broadcast_to(np.eye(self.dim) / self.reg, (count, self.dim, self.dim))
        self.A_inv_ = np.concatenate([self.A_inv_, fresh])
        self.b_ = np.concatenate([self.b_, np.zeros((count, self.dim))])
        self.theta_ = np.concatenate([self.theta_, np.zeros((count, self.dim))])

    def update(self, contexts: Any, actions: Any, rewards: Any) -> None:
        x, rows, arms, r = checked_feedback(self, contexts, actions, rewards)
        for wave in waves(arms):
            a, xs = arms[wave], x[rows[wave]]
            self.A_inv_[a] = sherman_morrison(self.A_inv_[a], xs)
            self.b_[a] += r[wave, None] * xs
        touched = np.unique(arms)
        self.theta_[touched] = np.einsum("aij,aj->ai", self.A_inv_[touched], self.b_[touched])

    def mean_and_width(self, contexts: Any, candidates: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``x^T theta_a`` and ``sqrt(x^T A_a^{-1} x)`` for every (round, candidate)."""
        x = check_contexts(contexts, self.dim)
        n, m = candidates.shape
        if m >= _GATHER_SHARE * self.n_arms:
            upper = np.triu_indices(self.dim)
            outer = x[:, upper[0]] * x[:, upper[1]]
            outer[:, upper[0] != upper[1]] *= 2  # A^{-1} is symmetric: the upper triangle
            mean = x @ self.theta_.T
            var = outer @ self.A_inv_[:, upper[0], upper[1]].T
            if not every_arm(candidates, self.n_arms):
                mean = np.take_along_axis(mean, candidates, axis=1)
                var = np.take_along_axis(var, candidates, axis=1)
        else:
            mean, var = np.empty((n, m)), np.empty((n, m))
            step = max(1, _GATHER_BLOCK // max(1, m * self.dim * self.dim))
            for lo in range(0, n, step):
                c, xs = candidates[lo:lo + step], x[lo:lo + step]
                mean[lo:lo + step] = np.einsum("nmd,nd->nm", self.theta_[c], xs)
                var[lo:lo + step] = np.einsum("nd,nmde,ne->nm", xs, self.A_inv_[c], xs)
        return mean, np.sqrt(np.maximum(var, 0.0))


@register_policy("linucb")
class LinUCB(LinearPolicy):
    """Disjoint LinUCB (Li et al. 2010, Algorithm 1): ``x^T theta_a + alpha sqrt(x^T
    A_a^{-1} x)``, the top ``k`` shown."""

    param_rules: ClassVar[dict[str, Rule]] = {"alpha": Real(0)}

    def __init__(self, n_arms: int, dim: int, alpha: float = 1.0, reg: float = 1.0,
                 seed: int = 0):
        super().__init__(n_arms=n_arms, dim=dim, alpha=alpha, reg=reg, seed=seed)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        mean, width = self.mean_and_width(contexts, candidates)
        return mean + self.alpha * width


@register_policy("lin-ts")
class LinTS(LinearPolicy):
    """Linear Thompson sampling (Agrawal & Goyal 2013) with a parameter per arm: ``theta_a``
    is drawn from ``N(theta_a, v^2 A_a^{-1})`` and the arm scores ``x^T theta_a``. For one
    context this is exactly a draw of ``N(x^T theta_a, v^2 x^T A_a^{-1} x)`` per arm (the
    arms' parameters are independent), which is how it is sampled: the cost of LinUCB's
    scores, no ``d x d`` Cholesky factor per arm. ``v`` (``scale``) is the paper's
    ``R sqrt(24 d ln(1/delta) / epsilon)``, in practice tuned. ``propensity_samples`` Monte
    Carlo draws (default 200) estimate each selection's propensities (0: none, NaN)."""

    exploration = "sampled"
    param_rules: ClassVar[dict[str, Rule]] = {"scale": Real(0), "propensity_samples": SAMPLES}

    def __init__(self, n_arms: int, dim: int, scale: float = 0.5, reg: float = 1.0,
                 propensity_samples: int = PROPENSITY_SAMPLES, seed: int = 0):
        super().__init__(n_arms=n_arms, dim=dim, scale=scale, reg=reg,
                         propensity_samples=propensity_samples, seed=seed)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        mean, width = self.mean_and_width(contexts, candidates)
        return mean + self.scale * width * self.rng_.standard_normal(mean.shape)


@register_policy("linucb-hybrid")
class HybridLinUCB(Policy):
    """Hybrid LinUCB (Li et al. 2010, Algorithm 2): the expected reward of arm ``a`` in
    context ``x`` is ``z^T beta + x^T theta_a``, with ``beta`` shared by every arm and ``z =
    x (x) y_a`` the outer product of the context and the arm's features ``y_a``
    (``arm_features``, ``(n_arms, p)``), flattened (``d p`` values).

    State: the shared ``A0``/``b0`` (``A0_``, ``b0_``), and per arm ``A_a^{-1}`` (kept by
    Sherman-Morrison), ``B_a`` (``d x d p``) and ``b_a``. New arms need their features:
    ``add_arms(count, arm_features=...)``."""

    param_rules: ClassVar[dict[str, Rule]] = {"dim": DIM, "alpha": Real(0), "reg": POSITIVE}

    def __init__(self, arm_features: Any, dim: int, alpha: float = 1.0, reg: float = 1.0,
                 seed: int = 0, n_arms: int | None = None):
        feats = np.asarray(arm_features, dtype=np.float64)
        if feats.ndim != 2 or not np.isfinite(feats).all() or not len(feats):
            raise InputError(f"arm_features must be a finite (n_arms, p) array, got shape "
                             f"{feats.shape}")
        if n_arms is not None and n_arms != len(feats):
            raise InputError(f"n_arms is {n_arms} but arm_features has {len(feats)} rows")
        self.arm_features_ = feats
        super().__init__(n_arms=len(feats), dim=dim, alpha=alpha, reg=reg, seed=seed)

    @classmethod
    def from_saved(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   **objects: Any) -> Policy:
        return cls(arrays["arm_features_"], **params)

    @property
    def shared_dim(self) -> int:
        return self.dim * self.arm_features_.shape[1]

    def _init_state(self, n_arms: int) -> None:
        d, k = self.dim, self.shared_dim
        self.A0_ = np.eye(k) * self.reg
        self.b0_ = np.zeros(k)
        self.A_inv_ = np.broadcast_to(np.eye(d) / self.reg, (n_arms, d, d)).copy()
        self.B_ = np.zeros((n_arms, d, k))
        self.b_ = np.zeros((n_arms, d))

    def _grow_state(self, count: int, **features: Any) -> None:
        feats = np.asarray(features.get("arm_features"), dtype=np.float64)
        if feats.shape != (count, self.arm_features_.shape[1]) or not np.isfinite(feats).all():
            raise InputError(f"arm_features: new arms need a finite ({count}, "
                             f"{self.arm_features_.shape[1]}) array")
        d, k = self.dim, self.shared_dim
        self.arm_features_ = np.concatenate([self.arm_features_, feats])
        self.A_inv_ = np.concatenate([self.A_inv_, np.broadcast_to(np.eye(d) / self.reg,
                                                                   (count, d, d))])
        self.B_ = np.concatenate([self.B_, np.zeros((count, d, k))])
        self.b_ = np.concatenate([self.b_, np.zeros((count, d))])

    def shared_features(self, x: np.ndarray, arms: np.ndarray) -> np.ndarray:
        """``z = x (x) y_a`` for each row of ``x`` and its arms (``arms``: ``(n,)`` or
        ``(n, m)``), flattened."""
        y = self.arm_features_[arms]
        xb = x if arms.ndim == 1 else x[:, None, :]
        return (xb[..., :, None] * y[..., None, :]).reshape(*arms.shape, self.shared_dim)

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        x = check_contexts(contexts, self.dim)
        z = self.shared_features(x, candidates)                       # (n, m, k)
        a0_inv = np.linalg.inv(self.A0_)
        beta = a0_inv @ self.b0_
        a_inv, big_b = self.A_inv_[candidates], self.B_[candidates]  # (n,m,d,d), (n,m,d,k)
        u = np.einsum("nmij,nj->nmi", a_inv, x)                       # A_a^{-1} x
        bt_u = np.einsum("nmik,nmi->nmk", big_b, u)                   # B_a^T A_a^{-1} x
        a0_z = z @ a0_inv
        width = (np.einsum("nmk,nmk->nm", a0_z, z)
                 - 2 * np.einsum("nmk,nmk->nm", a0_z, bt_u)
                 + np.einsum("nmi,ni->nm", u, x)
                 + np.einsum("nmk,nmk->nm", bt_u @ a0_inv, bt_u))
        rhs = self.b_[candidates] - np.einsum("nmik,k->nmi", big_b, beta)
        theta = np.einsum("nmij,nmj->nmi", a_inv, rhs)
        mean = z @ beta + np.einsum("nmi,ni->nm", theta, x)
        return mean + self.alpha * np.sqrt(np.maximum(width, 0.0))

    def _shared_term(self, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sum_a B_a^T A_a^{-1} B_a`` and ``sum_a B_a^T A_a^{-1} b_a`` over distinct arms."""
        a_inv, big_b = self.A_inv_[arms], self.B_[arms]
        a_inv_b = a_inv @ big_b
        return (np.einsum("aik,ail->kl", big_b, a_inv_b),
                np.einsum("aik,ai->k", a_inv_b, self.b_[arms]))

    def update(self, contexts: Any, actions: Any, rewards: Any) -> None:
        x, rows, arms, r = checked_feedback(self, contexts, actions, rewards)
        for wave in waves(arms):
            a, xs = arms[wave], x[rows[wave]]
            z = self.shared_features(xs, a)
            old_a0, old_b0 = self._shared_term(a)
            self.A_inv_[a] = sherman_morrison(self.A_inv_[a], xs)
            self.B_[a] += xs[:, :, None] * z[:, None, :]
            self.b_[a] += r[wave, None] * xs
            new_a0, new_b0 = self._shared_term(a)
            self.A0_ += old_a0 + z.T @ z - new_a0
            self.b0_ += old_b0 + z.T @ r[wave] - new_b0
