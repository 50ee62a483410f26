"""A linear blend of rating models (the "blending" of the Netflix Prize teams: Töscher, Jahrer
& Bell, "The BigChaos solution to the Netflix Grand Prize", 2009, section on linear blends).

The blend carves a validation split from its training data (a seeded per-user random share),
fits every member on the rest, fits ridge-regression weights ``r_ui ~ c + sum_m w_m r_m(u, i)``
on the members' validation predictions, and finally refits the members on all of the
training data. The test data are never seen; the only held-out data are part of ``train``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recforge.data.interactions import Interactions
from recforge.data.splits import random_split
from recforge.models.base import Recommender, members_state, restore_members
from recforge.models.registry import (
    RENAMED,
    create_model,
    get_model_class,
    model_names,
    register,
    saved_model_class,
)
from recforge.params import (
    BOOLEAN,
    PENALTY,
    SEED,
    Optional,
    Real,
    Rule,
    Sequence,
    parameter_error,
)

#: members of the default blend, chosen on validation splits carved from training data only:
#: on ML-100K ``u1.base``/``u2.base`` (outer per-user 10% carve for validation, the blend's own
#: holdout carved from the rest) this set scored 0.8857 mean validation RMSE, all nine rating
#: models 0.8856, SVD++ + AutoRec 0.8881, AutoRec alone 0.9031 (AutoRec then at reg 300)
DEFAULT_MEMBERS = ("baseline-only", "biased-mf", "biased-mf-als", "svdpp", "autorec",
                   "item-knn", "user-knn")


def _rating_model(name: str, value: Any) -> type[Recommender]:
    """The registered rating model called ``value`` (else `ParameterError` at ``name``)."""
    if not isinstance(value, str):
        raise parameter_error(name, f"must be a registered model name, got {value!r}")
    try:
        cls = get_model_class(value)
    except KeyError as exc:
        raise parameter_error(name, str(exc)) from None
    if not cls.predicts_ratings:
        raise parameter_error(name, f"blend member {value!r} does not predict ratings")
    return cls


def _saved_member_params(name: str, params: Any) -> Any:
    """A member's saved parameters with old names mapped (`Recommender.saved_params`)."""
    if isinstance(params, dict) and (name in RENAMED or name in model_names()):
        return saved_model_class(name).saved_params(params)
    return params


class MemberName(Rule):
    """The name of a registered model that predicts ratings."""

    def describe(self) -> str:
        return "the name of a registered rating model"

    def check(self, name: str, value: Any) -> str:
        _rating_model(name, value)
        return value


class MemberParams(Rule):
    """A table from member names to their hyperparameters, each checked by that model's rules."""

    def describe(self) -> str:
        return "a table of member name -> hyperparameters"

    def check(self, name: str, value: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(value, dict):
            raise parameter_error(name, f"must be {self.describe()}, got {value!r}")
        out = {}
        for member, params in value.items():
            cls = _rating_model(f"{name} key", member)
            if not isinstance(params, dict):
                raise parameter_error(f"{name}.{member}", f"must be a table of hyperparameters, "
                                                          f"got {params!r}")
            out[member] = cls.validate_params(params, where=f"{name}.{member}.")
        return out


def ridge_weights(features: np.ndarray, target: np.ndarray,
                  alpha: float) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising ``|target - c - features w|^2 + alpha |w|^2``."""
    x = features.astype(np.float64)
    mean_x, mean_y = x.mean(axis=0), float(np.mean(target, dtype=np.float64))
    centred = x - mean_x
    gram = centred.T @ centred + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, centred.T @ (target - mean_y))
    return weights, mean_y - float(mean_x @ weights)


@register("blend")
class LinearBlend(Recommender):
    """Ridge-weighted linear blend of registered rating models.

    ``models`` names the members (default `DEFAULT_MEMBERS`), ``params`` maps a member name to
    its hyperparameters (members with a ``seed`` get the blend's unless given one).
    ``valid_fraction`` of each user's training ratings form the blending set; ``alpha`` is
    the ridge penalty; with ``refit`` the members are refitted on the whole training data
    after the weights are fitted (better members, twice the fitting time). A ``valid`` split
    given to `fit` is not used: the blending set always comes from ``train``.

    Paper: Töscher, Jahrer & Bell, "The BigChaos solution to the Netflix Grand Prize", 2009.
    Hyperparameters (defaults): ``models=None``, ``params=None``, ``valid_fraction=0.1``,
        ``alpha=1.0``, ``refit=True``; training (`recforge.nn.TrainingConfig`, the rest at its
        defaults): its defaults.
    Defaults: the members (`DEFAULT_MEMBERS`) were chosen on validation splits carved from
        training data only, never a test split; ``alpha`` and ``valid_fraction`` are
        conventional, not tuned.
    Consumes: interactions, ratings.
    """

    requires_ratings = True
    predicts_ratings = True
    param_rules: ClassVar[dict[str, Rule]] = {
        "models": Optional(Sequence(MemberName(), min_len=1)), "params": Optional(MemberParams()),
        "valid_fraction": Real(0, 1, low_open=True, high_open=True), "alpha": PENALTY,
        "refit": BOOLEAN, "seed": SEED,
    }

    def __init__(self, models: list[str] | None = None,
                 params: dict[str, dict[str, Any]] | None = None, valid_fraction: float = 0.1,
                 alpha: float = 1.0, refit: bool = True, seed: int = 0):
        self.models = models
        self.params = params
        self.valid_fraction = valid_fraction
        self.alpha = alpha
        self.refit = refit
        self.seed = seed

    @classmethod
    def saved_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Also maps the old names of members (`RENAMED`) and of their parameters."""
        params = super().saved_params(params)
        if isinstance(params.get("models"), list):
            params["models"] = [RENAMED.get(name, name) if isinstance(name, str) else name
                                for name in params["models"]]
        if isinstance(params.get("params"), dict):
            params["params"] = {RENAMED.get(name, name): _saved_member_params(name, member)
                                for name, member in params["params"].items()}
        return params

    def _member_names(self) -> list[str]:
        return list(self.models) if self.models is not None else list(DEFAULT_MEMBERS)

    def _new_members(self) -> list[Recommender]:
        members = []
        for name in self._member_names():
            params = dict((self.params or {}).get(name, {}))
            model = create_model(name, **params)
            if "seed" in model.get_params() and "seed" not in params:
                model.set_params(seed=self.seed)
            if not model.predicts_ratings:
                raise ValueError(f"blend member {name!r} does not predict ratings")
            members.append(model)
        return members

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        fit_part, held_out = random_split(train, self.valid_fraction, seed=self.seed,
                                          per_user=True)
        members = [m.fit(fit_part) for m in self._new_members()]
        features = np.column_stack([m.predict(held_out.users, held_out.items) for m in members])
        self.weights_, self.intercept_ = ridge_weights(features, held_out.ratings, self.alpha)
        self.validation_rmse_ = float(np.sqrt(np.mean(
            (features @ self.weights_ + self.intercept_ - held_out.ratings) ** 2)))
        self._members = [m.fit(train) for m in self._new_members()] if self.refit else members

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        features = np.column_stack([m.predict(users, items) for m in self._members])
        return (features @ self.weights_ + self.intercept_).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        scores = np.full((len(users), self.n_items_), self.intercept_, dtype=np.float32)
        for weight, member in zip(self.weights_, self._members):
            scores += np.float32(weight) * member.score(users)
        return scores

    def _state(self) -> dict[str, Any]:
        return super()._state() | members_state(self._members)

    def _restore(self, state: dict[str, Any]) -> None:
        members = self._new_members()
        super()._restore(restore_members(members, state))
        self._members = members
