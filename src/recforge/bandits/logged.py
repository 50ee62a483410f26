"""Logged bandit feedback: what a logging policy showed, with what probability, and the
reward it got, as the input of off-policy evaluation (`recforge.bandits.ope`).

`LoggedFeedback.from_events` takes `recforge.data.events.Events` (one row per impression:
the user, the item shown, a reward label, the logging propensity, optionally the slot
position and numeric context columns). `read_event_log` reads a logged event file (CSV, TSV
or Parquet with a header: ``user``, ``item``, the reward column, ``propensity``, optionally
``position``) through `Events.read`, the reader of the service's exported event log.
`from_experiment_logs` reads the service's own logs: its A/B assignment is a logging policy
over the arms of an experiment with known propensities (the arms' traffic shares), the
exposure log says who was shown which arm when, and the event log holds the outcomes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.data.events import Events
from recforge.errors import InputError

if TYPE_CHECKING:
    from recforge.abtest.assignment import Experiment
    from recforge.abtest.exposure import ExposureLog


@dataclasses.dataclass
class LoggedFeedback:
    """``n`` logged rounds: ``actions`` (arm indices in ``[0, n_actions)``), ``rewards``,
    ``propensities`` (the logging policy's probability of the logged action in its slot, in
    ``(0, 1]``), ``positions`` (slot of each action, ``0`` when slates are not used),
    ``contexts`` (``(n, d)`` floats or None) and ``users`` (indices or None)."""

    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    n_actions: int
    positions: np.ndarray | None = None
    contexts: np.ndarray | None = None
    users: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.int64).ravel()
        n = len(self.actions)
        self.rewards = _vector(self.rewards, n, "rewards")
        self.propensities = _vector(self.propensities, n, "propensities")
        if n == 0:
            raise InputError("logged feedback has no rounds")
        if self.actions.min() < 0 or self.actions.max() >= self.n_actions:
            raise InputError(f"actions must be in [0, {self.n_actions})")
        if (self.propensities <= 0).any() or (self.propensities > 1).any():
            raise InputError("propensities must be in (0, 1] (an action the logging policy "
                             "could not take cannot be evaluated off-policy)")
        self.positions = (np.zeros(n, dtype=np.int64) if self.positions is None
                          else np.asarray(self.positions, dtype=np.int64).ravel())
        if len(self.positions) != n or self.positions.min() < 0:
            raise InputError(f"positions must be {n} slot indices >= 0")
        if self.contexts is not None:
            self.contexts = np.asarray(self.contexts, dtype=np.float64)
            if self.contexts.ndim != 2 or len(self.contexts) != n or not np.isfinite(
                    self.contexts).all():
                raise InputError(f"contexts must be a finite ({n}, d) array")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def slate_size(self) -> int:
        return int(self.positions.max()) + 1

    def subset(self, index: Any) -> LoggedFeedback:
        """The rounds at ``index``."""
        pick = np.asarray(index)
        return LoggedFeedback(
            self.actions[pick], self.rewards[pick], self.propensities[pick], self.n_actions,
            self.positions[pick], None if self.contexts is None else self.contexts[pick],
            None if self.users is None else np.asarray(self.users)[pick])

    @classmethod
    def from_events(cls, events: Events, reward: str, context: Sequence[str] = (),
                    position: str | None = None) -> LoggedFeedback:
        """Feedback from events with a logging propensity: the item is the action, the label
        ``reward`` the reward, the numeric ``context`` columns the contexts, and the
        ``position`` column (0-based slot) the position."""
        if events.propensity is None:
            raise InputError(f"{events.name or 'the events'}: off-policy evaluation needs the "
                             "logging propensity of every event (no propensity column)")
        rewards = events.label(reward).astype(np.float64)
        contexts = None
        if context:
            columns = [_numeric(events, name) for name in context]
            contexts = np.stack(columns, axis=1)
        slots = None if position is None else _numeric(events, position)
        if slots is not None and (np.any(slots != np.round(slots)) or np.any(slots < 0)):
            raise InputError(f"position column {position!r} must hold slot indices 0, 1, ...")
        return cls(events.items, rewards, events.propensity.astype(np.float64),
                   len(events.item_map), None if slots is None else slots.astype(np.int64),
                   contexts, events.users.astype(np.int64))


def read_event_log(path: str | Path, reward: str = "click", context: Sequence[str] = (),
                   position: str | None = "position",
                   propensity: str = "propensity") -> LoggedFeedback:
    """Logged feedback from an event file (CSV/TSV/Parquet with ``user``, ``item``, the
    ``reward`` label, the ``propensity`` and optionally ``position`` and ``context``
    columns); a bad value raises an error naming the file, the line and the column."""
    columns = [*context, *([position] if position else [])]
    events = Events.read(path, labels=[reward], propensity=propensity, context=columns)
    return LoggedFeedback.from_events(events, reward, context, position)


def from_experiment_logs(exposures: ExposureLog, events: Iterable[Any],
                         experiment: Experiment, reward: str = "click",
                         binary: bool = False) -> tuple[LoggedFeedback, list[str]]:
    """Logged feedback from the service's own logs (`recforge.serving`): one round per
    exposure of ``experiment`` (held-out users left out), the action the arm's index in the
    sorted arm names (returned beside the feedback), the propensity the arm's traffic share
    among the experiment's arms (the assignment is the logging policy), and the reward the sum
    of the ``value`` of the user's ``reward`` events from that exposure until the user's next
    one (``binary``: 1 if there is any). ``events``: the service's `EventLog` or any iterable
    of its events.

    Assignment is per user, so the rounds of one user share their action: the bootstrap
    intervals of `recforge.bandits.ope` treat rounds as independent and are too narrow when
    users see the experiment many times."""
    import pandas as pd

    arms = sorted(experiment.arms)
    shares = np.array([experiment.arms[arm] for arm in arms])
    shown = exposures.read(experiment.name)
    shown = shown[shown["arm"].isin(arms)]
    if shown.empty:
        raise InputError(f"experiment {experiment.name!r}: no exposures of its arms "
                         f"{arms} in {exposures.path}")
    shown = shown.assign(round=np.arange(len(shown)), timestamp=shown["timestamp"]
                         .astype(np.float64)).sort_values("timestamp", kind="stable")
    outcomes = pd.DataFrame([(e.user_id, float(e.timestamp), float(e.value)) for e in events
                             if e.event == reward and e.timestamp is not None],
                            columns=["user_id", "timestamp", "value"])
    rewards = np.zeros(len(shown))
    if not outcomes.empty:
        matched = pd.merge_asof(outcomes.sort_values("timestamp", kind="stable"),
                                shown[["user_id", "timestamp", "round"]], on="timestamp",
                                by="user_id", direction="backward").dropna(subset=["round"])
        per_round = matched.groupby("round")["value"].agg("size" if binary else "sum")
        rewards[per_round.index.to_numpy(np.int64)] = per_round.to_numpy(np.float64)
    if binary:
        rewards = np.minimum(rewards, 1.0)
    shown = shown.sort_values("round")
    actions = np.searchsorted(arms, shown["arm"].to_numpy(str))
    users = pd.factorize(shown["user_id"])[0]
    feedback = LoggedFeedback(actions, rewards, shares[actions] / shares.sum(), len(arms),
                              users=users)
    return feedback, arms


def _numeric(events: Events, name: str) -> np.ndarray:
    if name not in events.context.columns:
        raise InputError(f"no context column {name!r} (have {list(events.context.columns)})")
    values = np.asarray(events.context[name], dtype=object)
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"context column {name!r} must be numeric") from None
    if not np.isfinite(out).all():
        raise InputError(f"context column {name!r} has missing or non-finite values")
    return out


def _vector(values: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).ravel()
    if len(out) != n:
        raise InputError(f"{what} has {len(out)} values, expected {n}")
    if not np.isfinite(out).all():
        raise InputError(f"{what} must be finite")
    return out
