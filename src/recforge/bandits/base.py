"""The policy interface shared by every bandit, slate selection with position-aware
propensities, and saving without pickle.

A policy chooses, for each of ``n`` rounds, a slate of ``k`` arms among the round's
candidates: ``select(contexts, candidates, k)`` returns a `Selection` (the arms, ``(n, k)``,
and their propensities), ``update(contexts, actions, rewards)`` learns from what was shown.

* ``contexts``: an ``(n, d)`` float array (ignored by the non-contextual policies, which take
  None); `recforge.bandits.policies.ModelPolicy` takes user indices instead.
* ``candidates``: an ``(n, m)`` array of arm indices in ``[0, n_arms)`` (no repeats in a
  row), or None for every arm in every round.
* propensities are *position-aware marginal* probabilities: ``propensities[t, j]`` is the
  probability that the policy puts ``actions[t, j]`` in slot ``j`` of round ``t`` (given the
  policy's state when it selected). With ``k = 1`` it is the usual logging propensity; for
  slates it is what position-based estimators (obp's ``pscore_item_position``) take.
  `action_dist` gives the whole ``(n, m, k)`` table where it has a closed form.
* A batch of rounds is selected with one state and then updated at once: updating every
  ``b`` rounds is the batched (delayed-feedback) bandit; ``b = 1`` is the online one.

Ties between equal scores are broken uniformly at random (the propensity of an arm tied
with ``t - 1`` others for the slots it can take is ``1 / t``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recforge.errors import CorruptFileError, InputError
from recforge.io import atomic_dir, first_line, json_default, read_metadata
from recforge.params import MAX_COUNT, SEED, Integer, Rule, check_all

#: the largest number of arms a policy keeps state for
MAX_ARMS = 10_000_000
ARMS = Integer(1, MAX_ARMS)
SLATE = Integer(1, 1000)
POLICY_FILE, ARRAYS_FILE, FORMAT_VERSION = "policy.json", "arrays.npz", 1
#: registry name -> policy class (filled by `register_policy`)
POLICIES: dict[str, type[Policy]] = {}


@dataclasses.dataclass
class Selection:
    """The arms chosen for each round, ``(n, k)`` (slot 0 first), and the probability that
    the policy put each of them in its slot, ``(n, k)`` (NaN where not estimated)."""

    actions: np.ndarray
    propensities: np.ndarray


def register_policy(name: str):
    """Class decorator: register a policy under ``name`` (for `load_policy` and the CLI)."""

    def wrap(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return wrap


class Policy:
    """Base class. Subclasses declare ``param_rules`` (hyperparameter -> `Rule`), keep their
    learned state in attributes ending in ``_`` (numpy arrays or JSON scalars), and implement
    `_scores` (and `update`); the base turns scores into slates and propensities."""

    name: ClassVar[str] = ""
    param_rules: ClassVar[dict[str, Rule]] = {"n_arms": ARMS, "seed": SEED}
    #: how scores become a slate: "greedy" (top-k, random tie-break, propensity 1/ties),
    #: "epsilon" (greedy, or with probability epsilon a uniformly random ordered slate) or
    #: "sampled" (the scores are a posterior draw: Thompson sampling, propensity estimated)
    exploration: ClassVar[str] = "greedy"
    #: Monte Carlo draws that estimate a sampled policy's propensities (0: not estimated)
    propensity_samples: int = 0

    def __init__(self, **params: Any):
        for name, value in check_all(self.rules(), params).items():
            setattr(self, name, value)
        self.rng_ = np.random.default_rng(self.seed)
        self._init_state(self.n_arms)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Every hyperparameter's rule, merged along the class hierarchy."""
        merged: dict[str, Rule] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "param_rules", {}))
        return merged

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as given to the constructor."""
        return {name: getattr(self, name) for name in self.rules()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_params()})"

    # ------------------------------------------------------------------ subclass hooks
    def _init_state(self, n_arms: int) -> None:
        """Create the learned state of ``n_arms`` fresh arms."""

    def _grow_state(self, count: int, **features: Any) -> None:
        """Append the state of ``count`` new arms (each with the family's optimistic prior)."""
        raise NotImplementedError

    def _scores(self, contexts: Any, candidates: np.ndarray) -> np.ndarray:
        """``(n, m)`` scores of the candidates (a draw for a sampled policy)."""
        raise NotImplementedError

    def update(self, contexts: Any, actions: Any, rewards: Any) -> None:
        """Learn from the rewards of the arms shown (``(n,)`` or ``(n, k)``; NaN rewards are
        skipped, e.g. slots the user did not examine)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ selection
    def select(self, contexts: Any, candidates: Any = None, k: int = 1) -> Selection:
        """A slate of ``k`` arms per round with their position-aware propensities."""
        k = SLATE.check("k", k)
        cands = self.check_candidates(candidates, self._rounds(contexts, candidates), k)
        scores = self._scores(contexts, cands)
        slots, props = self._choose(scores, k)
        if self.exploration == "sampled":
            props = self._sampled_propensities(contexts, cands, slots)
        return Selection(np.take_along_axis(cands, slots, axis=1), props)

    def _choose(self, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Column indices of the slate and their propensities, by `exploration`."""
        slots = top_k_random_ties(scores, k, self.rng_)
        props = greedy_propensity(scores, slots)
        if self.exploration == "epsilon":
            eps = self.current_epsilon(len(scores))[:, None]
            explore = self.rng_.random(len(scores)) < eps[:, 0]
            if explore.any():
                noise = self.rng_.random((int(explore.sum()), scores.shape[1]))
                slots[explore] = top_k_random_ties(noise, k, self.rng_)
            props = (1 - eps) * greedy_propensity(scores, slots) + eps / scores.shape[1]
        return slots, props

    def current_epsilon(self, n: int) -> np.ndarray:
        """The exploration probability of each of the next ``n`` rounds (epsilon policies)."""
        raise NotImplementedError

    def _sampled_propensities(self, contexts: Any, cands: np.ndarray,
                              slots: np.ndarray) -> np.ndarray:
        """The share of draws that put each chosen arm in its slot: the draw that chose it
        and `propensity_samples` fresh ones (so an estimate is never 0 for an arm the policy
        did choose); NaN when no draws are asked for."""
        n, k = slots.shape
        if not self.propensity_samples:
            return np.full((n, k), np.nan)
        hits = np.ones((n, k))
        for _ in range(self.propensity_samples):
            draw = self._scores(contexts, cands)
            chosen = np.take_along_axis(draw, slots, axis=1)
            rank = (draw[:, None, :] > chosen[:, :, None]).sum(axis=2)
            hits += rank == np.arange(k)
        return hits / (self.propensity_samples + 1)

    # ------------------------------------------------------------------ arms
    def add_arms(self, count: int, **features: Any) -> np.ndarray:
        """Add ``count`` new arms (cold start: each starts with the family's optimistic
        prior; ``features``: what a policy with arm features needs); returns their indices."""
        count = Integer(1, MAX_ARMS - self.n_arms).check("count", count)
        self._grow_state(count, **features)
        first, self.n_arms = self.n_arms, self.n_arms + count
        return np.arange(first, self.n_arms)

    def _rounds(self, contexts: Any, candidates: Any) -> int:
        if contexts is not None:
            return len(contexts)
        if candidates is None:
            raise InputError("select needs contexts or candidates to know the number of rounds")
        return len(candidates)

    def check_candidates(self, candidates: Any, n: int, k: int) -> np.ndarray:
        """``candidates`` as an ``(n, m)`` int64 array of arms (None: every arm), checked."""
        if candidates is None:
            cands = np.broadcast_to(np.arange(self.n_arms, dtype=np.int64), (n, self.n_arms))
        else:
            cands = np.asarray(candidates)
            if cands.ndim != 2 or len(cands) != n or cands.dtype.kind not in "iu":
                raise InputError(f"candidates must be an ({n}, m) integer array of arms, got "
                                 f"shape {cands.shape} and dtype {cands.dtype}")
            if cands.size and (cands.min() < 0 or cands.max() >= self.n_arms):
                raise InputError(f"candidates: arms must be in [0, {self.n_arms}), got "
                                 f"[{cands.min()}, {cands.max()}]")
            cands = cands.astype(np.int64, copy=False)
        if cands.shape[1] < k:
            raise InputError(f"k: a slate of {k} needs at least {k} candidates per round, got "
                             f"{cands.shape[1]}")
        return cands

    def check_feedback(self, actions: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
        """``actions`` and ``rewards`` as matching ``(n, k)`` arrays (a ``(n,)`` array is one
        slot), arms checked; rewards finite or NaN (not observed)."""
        acts = np.asarray(actions)
        rews = np.asarray(rewards, dtype=np.float64)
        if acts.ndim == 1:
            acts = acts[:, None]
        if rews.ndim == 1:
            rews = rews[:, None]
        if acts.ndim != 2 or acts.shape != rews.shape or acts.dtype.kind not in "iu":
            raise InputError(f"actions (integers) and rewards must have the same shape (n,) or "
                             f"(n, k), got {np.shape(actions)} and {np.shape(rewards)}")
        if acts.size and (acts.min() < 0 or acts.max() >= self.n_arms):
            raise InputError(f"actions: arms must be in [0, {self.n_arms})")
        if np.isinf(rews).any():
            raise InputError("rewards must be finite (NaN marks an unobserved slot)")
        return acts.astype(np.int64, copy=False), rews

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and k != "rng_"}

    def save(self, path: str | Path) -> Path:
        """Write ``path/`` (``policy.json``: class, hyperparameters, scalar state and the
        random generator's state; ``arrays.npz``), atomically, as a recforge ``policy``
        folder (never over a folder recforge did not write)."""
        scalars, arrays = {}, {}
        for key, value in self._state().items():
            if isinstance(value, np.ndarray):
                arrays[key] = value
            else:
                scalars[key] = value
        meta = {"format_version": FORMAT_VERSION, "policy": self.name,
                "params": self.get_params(), "state": scalars,
                "rng": self.rng_.bit_generator.state, **self._extra_meta()}
        with atomic_dir(path, "policy") as tmp:
            (tmp / POLICY_FILE).write_text(json.dumps(meta, default=json_default, indent=1))
            np.savez(tmp / ARRAYS_FILE, **arrays)
        return Path(path)

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_saved(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   **objects: Any) -> Policy:
        """A fresh policy with the saved hyperparameters (its state is restored next)."""
        return cls(**params, **objects)

    def _restore(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def load_policy(path: str | Path, **objects: Any) -> Policy:
    """A policy saved by `Policy.save` (JSON and ``allow_pickle=False`` only). ``objects``
    are what a policy needs that it does not save itself (`ModelPolicy`: ``model``). A
    damaged or inconsistent folder raises `CorruptFileError` naming it."""
    path = Path(path)
    meta = read_metadata(path, POLICY_FILE, "policy", FORMAT_VERSION)
    try:
        cls = POLICIES[meta["policy"]]
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        policy = cls.from_saved(meta["params"], arrays, **objects)
        state = {**meta["state"], **arrays}
        expected = set(policy._state())
        if set(state) != expected:
            raise ValueError(f"state {sorted(state)} differs from {sorted(expected)}")
        for key, value in state.items():
            old = getattr(policy, key)
            if isinstance(old, np.ndarray) and (not isinstance(value, np.ndarray)
                                                 or value.shape != old.shape):
                raise ValueError(f"{key} has shape {np.shape(value)}, expected {old.shape}")
        policy._restore(state, meta)
        policy.rng_.bit_generator.state = meta["rng"]
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise CorruptFileError(f"{path}: not a loadable policy ({first_line(exc)})") from None
    return policy


# ---------------------------------------------------------------------- slate helpers
def top_k_random_ties(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first, ties broken uniformly
    at random (``(n, k)``). NaN scores rank last."""
    n, m = scores.shape
    scores = np.where(np.isnan(scores), -np.inf, scores)
    if k == 1:
        best = scores.argmax(axis=1)[:, None]
        tied = (scores == np.take_along_axis(scores, best, axis=1)).sum(axis=1) > 1
        if tied.any():  # choose among the tied best uniformly
            top = scores[tied] == scores[tied].max(axis=1, keepdims=True)
            keys = np.where(top, rng.random(top.shape), -1.0)
            best[tied, 0] = keys.argmax(axis=1)
        return best
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    boundary_ties = (scores >= kth[:, None]).sum(axis=1) > k
    if boundary_ties.any():  # a tie across the cut: choose the tied arms at random
        rows = np.flatnonzero(boundary_ties)
        keys = rng.random((len(rows), m))
        order = np.lexsort((keys, -scores[rows]), axis=1)
        part[rows] = order[:, :k]
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((rng.random(part.shape), -picked), axis=1)
    return np.take_along_axis(part, order, axis=1)


def greedy_propensity(scores: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The probability that a greedy top-k with random tie-breaking puts the arm in column
    ``slots[t, j]`` in slot ``j``: ``1 / ties`` when ``above <= j < above + ties`` (``above``:
    candidates scoring strictly more, ``ties``: candidates scoring the same), else 0."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    chosen = np.take_along_axis(scores, slots, axis=1)[:, :, None]
    above = (scores[:, None, :] > chosen).sum(axis=2)
    ties = (scores[:, None, :] == chosen).sum(axis=2)
    j = np.arange(slots.shape[1])
    return np.where((above <= j) & (j < above + ties), 1.0 / ties, 0.0)


def greedy_action_dist(scores: np.ndarray, k: int) -> np.ndarray:
    """``(n, m, k)``: the probability that a greedy top-k with random tie-breaking puts each
    candidate in each slot (`greedy_propensity` for every candidate)."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    above = (scores[:, None, :] > scores[:, :, None]).sum(axis=2)
    ties = (scores[:, None, :] == scores[:, :, None]).sum(axis=2)
    j = np.arange(k)
    inside = (above[..., None] <= j) & (j < (above + ties)[..., None])
    return np.where(inside, 1.0 / ties[..., None], 0.0)


def check_contexts(contexts: Any, dim: int, what: str = "contexts") -> np.ndarray:
    """``contexts`` as a finite ``(n, dim)`` float64 array."""
    x = np.asarray(contexts, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"{what} must be an (n, {dim}) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{what} must be finite")
    return x


COUNT = Integer(0, MAX_COUNT)
