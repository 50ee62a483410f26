"""Evaluating a click model (`recforge.models.ranking.base.ClickModel`) on parts of `Events`.

* `split_parts`: train / validation / test parts of one events file: consecutive in time
  (`Events.split_by_time`) when the events have timestamps, else `random_parts` (a seeded
  random permutation cut at the cumulative ``fractions``, each part in file order).
* `evaluate_clicks`: fit the model on ``train`` (early stopping on ``valid`` when given),
  predict the probability of ``label`` on ``test`` and compute the `CTR_METRICS` asked for:

  - ``auc``: ROC-AUC (`recforge.evaluation.classification.roc_auc`);
  - ``logloss``: mean binary cross-entropy, natural log;
  - ``gauc``: per-user AUC weighted by the user's test rows, users with one class left out
    (for anonymous data, e.g. libFM and Criteo files, every row has the same user, so GAUC
    equals AUC);
  - ``calibration``: expected calibration error over 10 equal-width bins.

  The result also holds the test part's ``rows``, ``users`` and ``gauc_users`` (users with
  both classes, the ones GAUC averages over), the fit and evaluation seconds and, for models
  that stop early, the best epoch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from recforge.data.events import Events
from recforge.errors import InputError, UnknownNameError, did_you_mean
from recforge.evaluation.classification import calibration_error, gauc, log_loss, roc_auc
from recforge.params import FRACTION, SEED

#: metric name -> function of (labels, probabilities, users)
CTR_METRICS = {
    "auc": lambda y, p, u: roc_auc(y, p),
    "logloss": lambda y, p, u: log_loss(y, p),
    "gauc": gauc,
    "calibration": lambda y, p, u: calibration_error(y, p),
}
DEFAULT_METRICS = ("auc", "logloss", "gauc")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def check_ctr_metrics(names: Sequence[str]) -> list[str]:
    """The metric names, lower-cased and checked (at least one, each in `CTR_METRICS`)."""
    checked = [str(name).strip().lower() for name in names if str(name).strip()]
    if not checked:
        raise InputError(f"no click metric named; valid: {', '.join(CTR_METRICS)}")
    for name in checked:
        if name not in CTR_METRICS:
            raise UnknownNameError(f"unknown click metric {name!r}"
                                   f"{did_you_mean(name, CTR_METRICS)}; valid: "
                                   f"{', '.join(CTR_METRICS)}")
    return list(dict.fromkeys(checked))


def _cuts(fractions: Sequence[float], n: int) -> np.ndarray:
    shares = np.array([FRACTION.check(f"fractions[{k}]", f) for k, f in enumerate(fractions)])
    if abs(shares.sum() - 1) > 1e-9:
        raise InputError(f"fractions must sum to 1, got {shares.sum():g}")
    return np.floor(np.concatenate([[0], np.cumsum(shares)]) * n + 0.5).astype(np.int64)


def random_parts(events: Events, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 seed: int = 0) -> tuple[Events, ...]:
    """Disjoint parts of ``events`` covering every row: a seeded random permutation cut at
    ``round(c_k n)`` (``c_k`` the cumulative ``fractions``, which must sum to 1); each part
    keeps the file order. Refuses a part that would be empty."""
    rng = np.random.default_rng(SEED.check("seed", seed))
    cuts = _cuts(fractions, len(events))
    if (np.diff(cuts) == 0).any():
        raise InputError(f"{len(events)} events are too few to split into parts of "
                         f"{', '.join(f'{f:g}' for f in fractions)}: a part would be empty")
    order = rng.permutation(len(events))
    return tuple(events.subset(np.sort(order[lo:hi])) for lo, hi in itertools.pairwise(cuts))


def split_parts(events: Events, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                seed: int = 0) -> tuple[tuple[Events, ...], str]:
    """The parts of ``events`` (module docstring) and how they were cut (``"time"`` or
    ``"random"``)."""
    if events.timestamps is not None:
        return events.split_by_time(fractions), "time"
    return random_parts(events, fractions, seed), "random"


def check_click_model(model: Any) -> None:
    """Refuse a model that is not a click model (it has no `predict_proba` over events)."""
    from recforge.models.ranking.base import ClickModel

    if not isinstance(model, ClickModel):
        raise InputError(f"{getattr(model, 'name', type(model).__name__)} is not a click model; "
                         f"CTR data needs one of {', '.join(click_model_names())}")


def click_model_names() -> list[str]:
    """The registered click models (their classes are imported)."""
    from recforge.models.ranking.base import ClickModel
    from recforge.models.registry import BUILTIN, get_model_class

    ranking = [n for n, where in BUILTIN.items() if where.startswith("recforge.models.ranking.")]
    return sorted(n for n in ranking if issubclass(get_model_class(n), ClickModel))


def _scored_label(model: Any, test: Events, label: str | None) -> str:
    tasks = list(getattr(model, "tasks_", None) or [next(iter(test.labels))])
    name = label or tasks[0]
    if name not in tasks:
        raise InputError(f"the model predicts {tasks}, not the label {name!r}")
    test.label(name)  # UnknownNameError naming the labels there are
    return name


def click_metrics(labels: np.ndarray, probabilities: np.ndarray, users: np.ndarray,
                  metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """The `CTR_METRICS` named by ``metrics`` of probabilities against 0/1 labels."""
    return {m: float(CTR_METRICS[m](labels, probabilities, users))
            for m in check_ctr_metrics(metrics)}


def evaluate_clicks(model: Any, train: Events, test: Events, valid: Events | None = None,
                    metrics: Sequence[str] = DEFAULT_METRICS,
                    label: str | None = None) -> dict[str, Any]:
    """Fit ``model`` on ``train`` (early stopping on ``valid``) and score ``label`` (default:
    the model's first task) on ``test``: ``{"metrics": {name: value}, "rows", "users",
    "gauc_users", "fit_seconds", "eval_seconds", "best_epoch"}`` (module docstring)."""
    metrics = check_ctr_metrics(metrics)
    check_click_model(model)
    if label is not None and getattr(model, "tasks", None) is None:
        train.label(label)
        model.set_params(tasks=[label])
    start = time.perf_counter()
    model.fit(train, valid)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    name = _scored_label(model, test, label)
    probabilities = model.predict_proba(test).reshape(len(test), -1)
    p = probabilities[:, list(model.tasks_).index(name)].astype(np.float64)
    y = test.label(name)
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError(f"the label {name!r} is not 0/1 on the test part; click metrics need "
                         "a binary label")
    values = click_metrics(y, p, test.users, metrics)
    return {"metrics": values, "label": name, "rows": len(test),
            "users": len(np.unique(test.users)), "gauc_users": _users_with_both(y, test),
            "fit_seconds": fit_seconds, "eval_seconds": time.perf_counter() - start,
            "best_epoch": getattr(model, "best_epoch_", None)}


def _users_with_both(labels: np.ndarray, test: Events) -> int:
    positives = np.bincount(test.users, weights=labels, minlength=test.n_users)
    rows = np.bincount(test.users, minlength=test.n_users)
    return int(((positives > 0) & (positives < rows)).sum())
