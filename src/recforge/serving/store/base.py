"""The online feature store's interface and the feature rules every backend follows.

Per user (`UserFeatures`):

* ``recent_items``: the items of the user's last ``window`` (50) interaction events, oldest
  first (a sliding window; a repeated item appears again).
* ``genre_prefs``: an exponential moving average (``alpha`` 0.1) of the genre indicator
  vectors of the items the user interacted with: on each event every genre ``g`` becomes
  ``(1 - alpha) * p_g + alpha * [g in genres(item)]`` over the genres the user has and the
  item's genres (an absent genre is 0). An item missing from the genre mapping leaves the
  preferences unchanged.
* ``counts``: events per event type (every type, passive ones included).
* ``last_active``: the latest timestamp of an interaction event.
* ``session_id`` / ``session_events``: a session ends after ``session_gap`` seconds (1800)
  without interaction; the first event opens session 1.

Per item: time-decayed popularity, the sum over interaction events of
``2 ** (-(now - t) / half_life)``, kept exactly as a pair (score at the reference time, the
reference time = the latest event time), so that a replay of the same events in the same
order gives the same bits.

Passive event types (default ``exposure``: an item shown, not chosen) only count in
``counts``. Events are applied in arrival order (the order of `FeatureStore.apply` calls and
of the events within a call), whatever their timestamps: an out-of-order event still
enters the window at the newest end and the EMA last, ``last_active`` is the maximum
timestamp, and a session gap is measured from ``last_active`` (an older event never opens
a session). ``recforge features rebuild`` replays the log in append order, so the rebuilt
state equals the online one bit for bit.

Events are idempotent by ``event_id``: each backend keeps the set of applied ids in the
store itself and updates it in the same atomic step as the features.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.params import MAX_COUNT, Integer, Real, Text
from recforge.params import Sequence as SequenceRule
from recforge.serving.events import Event, stamp

if TYPE_CHECKING:
    from typing_extensions import Self

WINDOW, ALPHA, SESSION_GAP, HALF_LIFE = 50, 0.1, 1800.0, 7 * 86_400.0
PASSIVE = ("exposure",)
_SETTING_RULES = {
    "window": Integer(1, 10_000),
    "alpha": Real(0, 1, low_open=True),
    "session_gap": Real(0, low_open=True),
    "half_life": Real(0, low_open=True),
    "passive": SequenceRule(Text(r"\S+", "a non-empty word"), max_len=MAX_COUNT),
}


@dataclass(frozen=True)
class UserFeatures:
    """One user's online features (module docstring); an unknown user has empty ones."""

    user_id: str
    recent_items: tuple[str, ...] = ()
    genre_prefs: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last_active: float | None = None
    session_id: int = 0
    session_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields with ``recent_items`` as a list."""
        out = asdict(self)
        out["recent_items"] = list(self.recent_items)
        return out


@dataclass
class UserState:
    """The mutable state of one user while events are applied (`FeatureRules.update`)."""

    recent: list[str] = field(default_factory=list)
    prefs: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last_active: float | None = None
    session_id: int = 0
    session_events: int = 0

    def features(self, user_id: str) -> UserFeatures:
        return UserFeatures(user_id, tuple(self.recent), dict(self.prefs), dict(self.counts),
                            self.last_active, self.session_id, self.session_events)


class FeatureRules:
    """The settings and update rules shared by every backend (module docstring).

    ``item_genres`` maps an item id to its genres; the other settings are validated by
    value (one-line `ParameterError` naming the setting)."""

    def __init__(self, item_genres: Mapping[str, Sequence[str]] | None = None, *,
                 window: int = WINDOW, alpha: float = ALPHA, session_gap: float = SESSION_GAP,
                 half_life: float = HALF_LIFE, passive: Sequence[str] = PASSIVE) -> None:
        self.window = _SETTING_RULES["window"].check("window", window)
        self.alpha = _SETTING_RULES["alpha"].check("alpha", alpha)
        self.session_gap = _SETTING_RULES["session_gap"].check("session_gap", session_gap)
        self.half_life = _SETTING_RULES["half_life"].check("half_life", half_life)
        self.passive = frozenset(_SETTING_RULES["passive"].check("passive", list(passive)))
        self.item_genres: dict[str, frozenset[str]] = {
            str(item): frozenset(str(g) for g in genres)
            for item, genres in (item_genres or {}).items()}

    def update(self, state: UserState, event: Event) -> None:
        """Apply one stamped ``event`` to ``state``."""
        state.counts[event.event] = state.counts.get(event.event, 0) + 1
        if event.event in self.passive:
            return
        t = float(event.timestamp)  # type: ignore[arg-type]
        state.recent.append(event.item_id)
        del state.recent[:-self.window]
        genres = self.item_genres.get(event.item_id)
        if genres is not None:
            keep = 1.0 - self.alpha
            for g in set(state.prefs) | genres:
                state.prefs[g] = keep * state.prefs.get(g, 0.0) + self.alpha * (
                    1.0 if g in genres else 0.0)
        if state.last_active is None or t - state.last_active > self.session_gap:
            state.session_id += 1
            state.session_events = 1
        else:
            state.session_events += 1
        state.last_active = t if state.last_active is None else max(state.last_active, t)

    def popularity_update(self, score: float, ref: float | None, t: float) -> tuple[float, float]:
        """(score, reference time) after one interaction at ``t``."""
        if ref is None:
            return 1.0, t
        if t >= ref:
            return score * 2.0 ** (-(t - ref) / self.half_life) + 1.0, t
        return score + 2.0 ** (-(ref - t) / self.half_life), ref

    def decayed(self, score: float, ref: float, now: float) -> float:
        """A stored (score, reference time) decayed to ``now``."""
        return score * 2.0 ** (-(now - ref) / self.half_life)

    def settings(self) -> dict[str, Any]:
        return {"window": self.window, "alpha": self.alpha, "session_gap": self.session_gap,
                "half_life": self.half_life, "passive": sorted(self.passive)}


class FeatureStore(ABC):
    """An online feature store (module docstring). Backends: `SqliteFeatureStore` (embedded
    default) and `RedisFeatureStore`; `recforge.serving.store.open_store` opens either."""

    #: the URL the store was opened with (`recforge.serving.store.open_store`)
    url: str

    def __init__(self, rules: FeatureRules) -> None:
        self.rules = rules

    @property
    def window(self) -> int:
        return self.rules.window

    @property
    def alpha(self) -> float:
        return self.rules.alpha

    def apply(self, events: Sequence[Event]) -> int:
        """Apply ``events`` in order, atomically, skipping event ids already applied (a
        missing timestamp is the current time); returns how many were new."""
        return self._apply(stamp(events)) if events else 0

    @abstractmethod
    def _apply(self, events: list[Event]) -> int:
        """`apply` with every event stamped."""

    def user(self, user_id: str) -> UserFeatures:
        """One user's features in one round trip (an unknown user: empty features)."""
        return self.users([user_id])[0]

    @abstractmethod
    def users(self, user_ids: Sequence[str]) -> list[UserFeatures]:
        """Several users' features in one round trip."""

    def popularity(self, item_ids: Sequence[str], now: float | None = None) -> np.ndarray:
        """Time-decayed popularity of ``item_ids`` at ``now`` (default: the current time);
        0 for an item without events."""
        now = time.time() if now is None else float(now)
        raw = self._popularity_raw(item_ids)
        return np.array([0.0 if pair is None else self.rules.decayed(pair[0], pair[1], now)
                         for pair in raw], dtype=np.float64)

    @abstractmethod
    def _popularity_raw(self, item_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        """The stored (score, reference time) of each item, None when it has none."""

    @abstractmethod
    def applied_count(self) -> int:
        """How many distinct event ids have been applied."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """Everything stored, comparable across backends: ``{"users": {id: features dict},
        "popularity": {item: [score, reference time]}, "applied": n}``."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
