"""Synthetic interaction data with a latent-factor ground truth (the offline ``synthetic`` set).

The generative story, all of it seeded:

* Users and items have latent vectors ``u`` and ``v`` (entries ``N(0, 1/sqrt(f))``, so ``u.v``
  has unit variance). Each user's taste drifts linearly over the time window along a private
  direction ``d``: ``u(t) = u + phase(t) * d`` with ``phase`` going from 0 to 1.
* Item popularity is Zipf-like: the item of popularity rank ``r`` has base weight
  ``r ** -popularity_exponent`` (the affinity term flattens the realised counts, so the default
  exponent is steep). A share of the items is released during the window and gets a novelty
  boost that decays after release; every item's log-popularity also trends linearly.
* User activity is heavy-tailed: every user gets ``min_user_interactions`` plus a share of the
  rest proportional to ``r ** -activity_exponent`` (rank ``r``), capped at
  ``max_user_fraction`` of the catalogue available at the start of the window.
* Each user is active in a time window and picks their distinct items from the target
  ``popularity * exp(affinity * u(t).v + trend(t)) * (1 + novelty_boost * exp(-age / tau))``
  (``tau = novelty_days``, ``age`` = time since release) over released items, by
  sampling-importance-resampling: a pool of about ``oversample`` times their count is drawn from
  their time-averaged target (for the `_HEAD_ITEMS` most popular items exactly, with ``u`` at
  the middle of their window and each item weighted by the share of the window it is out; the
  rest of the catalogue by popularity alone, in proportion to its popularity mass), each
  candidate gets a uniform time in the part of the window when the item is out, and the user
  keeps the distinct candidates with the largest ``log target - log proposal + Gumbel noise``
  (Gumbel-top-k: close to sampling without replacement; less exact for tail items beyond the
  head). The pools of a block of users are drawn at once (BLAS dot products and a compiled
  inverse-CDF pass); users whose pool holds too few distinct items are redrawn with a twice
  larger pool and a flatter proposal. Cost: O(users x min(items, `_HEAD_ITEMS`) + interactions x
  oversample).
* Explicit ratings: ``1.9 + user bias + item bias + u(t).v + noise``, rounded and clipped to
  1..5. Implicit feedback has no ratings; with ``counts=True`` each interaction gets a repeat
  count ``1 + Poisson(exp(u(t).v))`` as its weight.
* Side tables: items get multi-hot genres (logistic in the item vector), a title made of words
  from the primary genre's vocabulary plus the release year, and the release year; users get
  age, age bucket, gender and occupation, each depending on the user vector.

Random numbers come from independent streams (items, users, item features, user features and
one per shard of `SHARD_USERS` users), so the data for a given seed does not depend on how it is
chunked, and the items do not depend on the number of users. External ids are ``1..n``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import SideTable
from recforge.data.interactions import IdMap, Interactions
from recforge.data.movielens import AGE_BOUNDS, AGE_BUCKETS
from recforge.data.sampling import ranges

#: users per random-number stream; chunks are re-cut from shards of this size
SHARD_USERS = 1024
DAY = 86_400
YEAR = 365.25 * DAY

GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Crime", "Sci-Fi",
          "Horror", "Children", "Mystery", "War", "Musical", "Documentary", "Animation",
          "Fantasy", "Western", "Film-Noir")
#: title words per genre (same order as `GENRES`, ten words each)
GENRE_WORDS = np.array([
    ["Silent", "Letters", "Winter", "Mother", "Promise", "River", "Broken", "Home", "Years",
     "Grace"],
    ["Crazy", "Wedding", "Party", "Lucky", "Neighbors", "Holiday", "Trouble", "Roommate",
     "Goofy", "Weekend"],
    ["Fury", "Iron", "Strike", "Bullet", "Force", "Rogue", "Blast", "Impact", "Steel", "Hunter"],
    ["Shadow", "Witness", "Edge", "Deadly", "Stranger", "Pursuit", "Fear", "Trap", "Suspect",
     "Hours"],
    ["Love", "Heart", "Kiss", "Forever", "Summer", "Paris", "Sweet", "Moonlight", "Bride",
     "Dance"],
    ["Quest", "Island", "Journey", "Treasure", "Lost", "Jungle", "Voyage", "Empire", "Legend",
     "Frontier"],
    ["Heist", "Gang", "Mob", "Street", "Dirty", "Money", "Cop", "Alibi", "Vice", "Contract"],
    ["Galaxy", "Robot", "Star", "Orbit", "Android", "Planet", "Quantum", "Signal", "Future",
     "Clone"],
    ["Blood", "Night", "Haunted", "Curse", "Scream", "Grave", "Dead", "Evil", "Hollow",
     "Witch"],
    ["Puppy", "Magic", "Little", "Friends", "Toy", "Adventure", "Kid", "Wonder", "Pony", "Giant"],
    ["Secret", "Clue", "Mystery", "Riddle", "Missing", "Manor", "Puzzle", "Cipher", "Vanishing",
     "Detective"],
    ["Battle", "Soldier", "Front", "Platoon", "Victory", "Bridge", "Glory", "Trench", "General",
     "Enemy"],
    ["Song", "Melody", "Broadway", "Rhythm", "Stage", "Sing", "Jazz", "Chorus", "Harmony",
     "Tune"],
    ["Truth", "Inside", "Story", "Life", "Nature", "Portrait", "Voices", "Record", "Earth",
     "Reality"],
    ["Cartoon", "Dragon", "Kingdom", "Bunny", "Lion", "Wizard", "Fairy", "Mouse", "Castle",
     "Tale"],
    ["Sword", "Sorcerer", "Realm", "Spell", "Elf", "Crown", "Enchanted", "Prophecy", "Ring",
     "Myth"],
    ["Outlaw", "Ranch", "Sheriff", "Canyon", "Rider", "Dust", "Gunfight", "Saddle", "Prairie",
     "Rustler"],
    ["Noir", "Dame", "Smoke", "Rain", "Midnight", "Double", "Crossing", "Gin", "Fog", "Neon"],
])
OCCUPATIONS = ("student", "engineer", "educator", "programmer", "administrator", "writer",
               "artist", "technician", "scientist", "librarian", "marketing", "healthcare",
               "entertainment", "executive", "lawyer", "salesman", "retired", "homemaker",
               "doctor", "other", "none")

# Fixed constants of the generative story (documented in the module docstring).
_RATING_CENTER = 1.9
_RATING_AFFINITY = 1.0
_USER_BIAS_STD = 0.45
_ITEM_BIAS_STD = 0.35
_ITEM_BIAS_POPULARITY = 0.25  # popular items are rated a little higher
_GENRE_COUPLING = 1.2  # strength of the item-vector effect on genre membership
_OLD_ITEM_AGE_YEARS = 10.0  # mean age (exponential) of items released before the window
_MAX_ATTEMPTS = 12  # pool redraws (each twice larger and flatter) for users left short
_BLOCK_ELEMENTS = 1 << 20  # users x items scored at once when drawing candidate pools
_CHUNK = 64  # items per partial sum in the inverse-CDF search
_HEAD_ITEMS = 4096  # most popular items, drawn with the affinity-aware proposal


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic generator (keyword arguments of `generate`)."""

    n_users: int = 2000
    n_items: int = 1000
    n_interactions: int = 100_000
    n_factors: int = 16
    feedback: Literal["explicit", "implicit"] = "explicit"
    seed: int = 0
    #: Zipf exponent of base item popularity over popularity ranks
    popularity_exponent: float = 1.8
    #: Zipf exponent of user activity over activity ranks
    activity_exponent: float = 0.6
    min_user_interactions: int = 5
    #: most items one user may have, as a fraction of the items released before the window
    max_user_fraction: float = 0.5
    #: weight of the latent affinity ``u(t).v`` against popularity when choosing items
    affinity: float = 3.0
    #: candidate pool size per user, as a multiple of their interaction count
    oversample: float = 2.0
    #: genres in the item side table (the first ``n_genres`` of `GENRES`)
    n_genres: int = len(GENRES)
    #: start of the time window (anything `pandas.Timestamp` accepts, or epoch seconds)
    start: str | int = "2018-01-01"
    duration_days: float = 730.0
    #: share of the items released during the window (the others are older)
    new_item_fraction: float = 0.2
    #: size of each user's taste drift over the window, relative to the taste itself
    taste_drift: float = 0.5
    #: standard deviation of each item's log-popularity change over the window
    popularity_drift: float = 0.5
    #: a just-released item is ``1 + novelty_boost`` times as popular, decaying in novelty_days
    novelty_boost: float = 1.5
    novelty_days: float = 60.0
    #: standard deviation of the noise added to the latent rating before rounding
    rating_noise: float = 0.6
    #: implicit feedback only: add repeat counts as interaction weights
    counts: bool = False

    def __post_init__(self) -> None:
        self._check_values()
        self._check_counts()
        try:
            self.start_epoch  # noqa: B018 -- parse once so a bad value fails here
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cannot read start={self.start!r} as a time") from exc

    def _check_values(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "n_factors", "n_genres",
                     "min_user_interactions"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.feedback not in ("explicit", "implicit"):
            raise ValueError(f"feedback must be 'explicit' or 'implicit', got {self.feedback!r}")
        if self.counts and self.feedback != "implicit":
            raise ValueError("counts=True is for implicit feedback")
        if self.n_genres > len(GENRES):
            raise ValueError(f"n_genres must be at most {len(GENRES)}, got {self.n_genres}")
        for name in ("popularity_exponent", "activity_exponent", "affinity", "taste_drift",
                     "popularity_drift", "novelty_boost", "rating_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if not 0 <= self.new_item_fraction < 1:
            raise ValueError("new_item_fraction must be in [0, 1)")
        if not 0 < self.max_user_fraction <= 1:
            raise ValueError("max_user_fraction must be in (0, 1]")
        if not self.oversample >= 1:
            raise ValueError("oversample must be at least 1")
        if not (self.duration_days > 0 and self.novelty_days > 0):
            raise ValueError("duration_days and novelty_days must be positive")

    @property
    def n_old_items(self) -> int:
        """Items released before the window starts."""
        return self.n_items - round(self.new_item_fraction * self.n_items)

    @property
    def max_user_interactions(self) -> int:
        return int(self.max_user_fraction * self.n_old_items)

    @property
    def start_epoch(self) -> int:
        if isinstance(self.start, (int, np.integer)):
            return int(self.start)
        return int(pd.Timestamp(self.start).timestamp())

    def _check_counts(self) -> None:
        lo, hi = self.min_user_interactions, self.max_user_interactions
        if hi < lo:
            raise ValueError(
                f"n_items={self.n_items} is too small: a user may have at most {hi} items "
                f"(max_user_fraction x items released before the window) but needs {lo}")
        if not lo * self.n_users <= self.n_interactions <= hi * self.n_users:
            raise ValueError(
                f"n_interactions must be between {lo * self.n_users} and {hi * self.n_users} "
                f"for {self.n_users} users ({lo}..{hi} interactions each), "
                f"got {self.n_interactions}")


# ---------------------------------------------------------------------- public API
def generate(**kwargs: Any) -> Interactions:
    """The whole synthetic dataset in memory, with user and item side tables.

    Keyword arguments are the fields of `SyntheticConfig`; with none it is an
    ML-100K-sized explicit dataset (2000 users, 1000 items, 100,000 ratings 1-5).
    """
    world = _World(SyntheticConfig(**kwargs))
    frame = pd.concat([world.shard_frame(s) for s in range(world.n_shards)], ignore_index=True)
    return world.interactions(frame)


def generate_chunks(chunk_users: int = 100_000, **kwargs: Any) -> Iterator[pd.DataFrame]:
    """The interactions as data frames of ``chunk_users`` consecutive users each.

    Columns ``user``, ``item`` (external ids), ``rating`` (explicit) or ``weight`` (implicit
    with counts) and ``timestamp`` (epoch seconds), sorted by user then time. Memory is bounded
    by the chunk (plus one shard of `SHARD_USERS` users); the rows do not depend on
    ``chunk_users``.
    """
    if chunk_users < 1:
        raise ValueError("chunk_users must be at least 1")
    world = _World(SyntheticConfig(**kwargs))
    shards = (world.shard_frame(s) for s in range(world.n_shards))
    yield from _rechunk(shards, chunk_users)


def write_parquet(path: str | Path, chunk_users: int = 100_000, **kwargs: Any) -> Path:
    """Stream the interactions to a Parquet file, one row group per chunk; atomic.

    Returns the path. ``Interactions.from_parquet(path)`` reads it back (without side tables).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.io import atomic_path

    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in generate_chunks(chunk_users, **kwargs):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return Path(path)


def item_table(**kwargs: Any) -> SideTable:
    """The items' side table (genres, title, year) for the given generator parameters."""
    return _World(SyntheticConfig(**kwargs)).item_table()


def user_table(**kwargs: Any) -> SideTable:
    """The users' side table (age, age bucket, gender, occupation)."""
    return _World(SyntheticConfig(**kwargs)).user_table()


# ---------------------------------------------------------------------- the latent world
def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for ``key`` (items, users, a shard...) under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_ITEMS, _USERS, _ITEM_FEATURES, _USER_FEATURES, _SHARDS = range(5)


class _World:
    """The latent state shared by all users: item and user parameters, O(users + items)."""

    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.start = config.start_epoch
        self.duration = int(config.duration_days * DAY)
        self.tau = config.novelty_days * DAY
        self._init_items(_rng(config.seed, _ITEMS))
        self._init_users(_rng(config.seed, _USERS))

    @property
    def n_shards(self) -> int:
        return -(-self.config.n_users // SHARD_USERS)

    def _init_items(self, rng: np.random.Generator) -> None:
        c = self.config
        n, f = c.n_items, c.n_factors
        self.item_factors = _latent(rng, n, f)
        self.log_popularity = -c.popularity_exponent * np.log1p(rng.permutation(n))
        new = np.zeros(n, dtype=bool)
        new[rng.choice(n, n - c.n_old_items, replace=False)] = True
        age = rng.exponential(_OLD_ITEM_AGE_YEARS * YEAR, n)
        inside = rng.random(n) * self.duration
        self.release = (self.start + np.where(new, inside, -age)).astype(np.int64)
        head = np.argsort(-self.log_popularity)[:_HEAD_ITEMS]
        self.head = head[np.argsort(self.release[head], kind="stable")]  # by release time
        self.in_head = np.zeros(n, dtype=bool)
        self.in_head[self.head] = True
        self.tail = np.flatnonzero(~self.in_head)
        self.head_factors_t = np.ascontiguousarray(self.item_factors[self.head].T)
        self.head_release = self.release[self.head]
        self.trend = rng.normal(0, c.popularity_drift, n).astype(np.float32)
        self.item_bias = (rng.normal(0, _ITEM_BIAS_STD, n)
                          + _ITEM_BIAS_POPULARITY * _zscore(self.log_popularity)).astype(np.float32)

    def _init_users(self, rng: np.random.Generator) -> None:
        c = self.config
        n, f = c.n_users, c.n_factors
        self.user_factors = _latent(rng, n, f)
        self.user_drift = (c.taste_drift * _latent(rng, n, f)).astype(np.float32)
        self.user_bias = rng.normal(0, _USER_BIAS_STD, n).astype(np.float32)
        arrival = rng.random(n)
        span = rng.beta(0.6, 3.0, n)
        self.window_start = (self.start + arrival * self.duration).astype(np.int64)
        window_end = self.start + np.minimum(arrival + span, 1.0) * self.duration
        self.window_end = np.maximum(window_end.astype(np.int64), self.window_start + 1)
        mid = (self.window_start + self.window_end) / 2
        self.phase_mid = ((mid - self.start) / self.duration).astype(np.float32)
        activity = np.exp(-c.activity_exponent * np.log1p(rng.permutation(n)))
        self.counts = _allocate(activity, c.n_interactions, c.min_user_interactions,
                                c.max_user_interactions, rng)

    # ------------------------------------------------------------------ interactions
    def shard_frame(self, shard: int) -> pd.DataFrame:
        """The interactions of users ``shard * SHARD_USERS`` onwards, from their own stream."""
        rng = _rng(self.config.seed, _SHARDS, shard)
        users = np.arange(shard * SHARD_USERS, min((shard + 1) * SHARD_USERS, self.config.n_users))
        items, times, affinity = self._choose_items(users, rng)
        owners = np.repeat(users, self.counts[users])
        frame = {"user": (owners + 1).astype(np.int32), "item": (items + 1).astype(np.int32)}
        frame.update(self._feedback(owners, items, affinity, rng))
        frame["timestamp"] = times
        order = np.lexsort((items, times, owners))
        return pd.DataFrame({k: v[order] for k, v in frame.items()})

    def _choose_items(self, users: np.ndarray, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each user's distinct items, event times and affinities, users in order.

        Users whose pool holds too few distinct items are redrawn with a twice larger pool and
        a flatter proposal (the importance weights keep the target the same)."""
        need = self.counts[users]
        dest = np.concatenate([[0], np.cumsum(need)])
        items = np.empty(dest[-1], dtype=np.int64)
        times = np.empty(dest[-1], dtype=np.int64)
        affinity = np.empty(dest[-1], dtype=np.float32)
        pending = np.arange(len(users))
        for attempt in range(_MAX_ATTEMPTS):
            pool = self._draw_pool(users[pending], attempt, rng)
            picked, ok = _select_top_unique(pool["offsets"], pool["item"], pool["score"],
                                            need[pending], self.config.n_items)
            keep = np.repeat(ok, need[pending])
            into = ranges(dest[pending], need[pending])[keep]
            for out, key in ((items, "item"), (times, "time"), (affinity, "affinity")):
                out[into] = pool[key][picked[keep]]
            pending = pending[~ok]
            if not len(pending):
                return items, times, affinity
        raise RuntimeError(f"could not find enough distinct items for {len(pending)} users")

    def _draw_pool(self, users: np.ndarray, attempt: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Candidates with event times, affinities at those times and selection scores
        ``log target - log proposal + Gumbel`` (sampling-importance-resampling)."""
        c = self.config
        sizes = np.ceil(2.0 ** attempt * c.oversample * self.counts[users]).astype(np.int64) + 8
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        owner = np.repeat(users, sizes)
        item, log_q = self._propose(users, offsets, owner, 0.5 ** attempt, rng)
        lo = np.maximum(self.window_start[owner], self.release[item])
        span = np.maximum(self.window_end[owner] - lo, 0)
        time = lo + (rng.random(len(item)) * span).astype(np.int64)
        phase = ((time - self.start) / self.duration).astype(np.float32)
        affinity = _affinity(owner, item, phase, self.user_factors, self.user_drift,
                             self.item_factors)
        novelty = np.log1p(c.novelty_boost * np.exp((self.release[item] - time) / self.tau))
        with np.errstate(divide="ignore"):
            score = (self.log_popularity[item] + c.affinity * affinity + novelty
                     + self.trend[item] * (2 * phase - 1) + np.log(span) - log_q
                     + rng.gumbel(size=len(item)))
        return {"offsets": offsets, "item": item, "time": time, "affinity": affinity,
                "score": score}

    def _propose(self, users: np.ndarray, offsets: np.ndarray, owner: np.ndarray,
                 temper: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pool items and the log probability that the proposal draws each.

        Items of the popularity `head` are drawn with weight ``(popularity * exp(affinity *
        u_mid.v)) ** temper`` times the time they are out in the user's window; with
        probability the tail's share of ``popularity ** temper``, a slot instead gets a tail
        item drawn by ``popularity ** temper`` (dropped later if released too late)."""
        c = self.config
        head_draw, log_norm = self._draw_head(users, offsets, temper, rng.random(len(owner)))
        item = self.head[head_draw]
        tail_cdf = np.cumsum(np.exp(temper * self.log_popularity[self.tail]))
        tail_total = tail_cdf[-1] if len(tail_cdf) else 0.0
        tail_share = tail_total / (tail_total + np.exp(
            temper * self.log_popularity[self.head]).sum())
        from_tail = np.flatnonzero(rng.random(len(owner)) < tail_share)
        if len(from_tail):
            pick = np.searchsorted(tail_cdf, rng.random(len(from_tail)) * tail_total, "right")
            item[from_tail] = self.tail[np.minimum(pick, len(self.tail) - 1)]
        head_affinity = _affinity(owner, item, self.phase_mid[owner], self.user_factors,
                                  self.user_drift, self.item_factors)
        share = _share_out(self.window_start[owner], self.window_end[owner], self.release[item])
        with np.errstate(divide="ignore"):
            log_head = (temper * (self.log_popularity[item] + c.affinity * head_affinity)
                        + np.log(share) - np.repeat(log_norm, np.diff(offsets))
                        + np.log1p(-tail_share))
        log_tail = -np.inf
        if tail_total > 0:
            log_tail = temper * self.log_popularity[item] + np.log(tail_share / tail_total)
        return item, np.where(self.in_head[item], log_head, log_tail)

    def _draw_head(self, users: np.ndarray, offsets: np.ndarray, temper: float,
                   uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in `head` drawn (inverse CDF of ``uniform``) for each user's pool slots,
        and each user's log normaliser, working on blocks of users at once."""
        taste = self.user_factors[users] + self.phase_mid[users, None] * self.user_drift[users]
        log_popularity = (temper * self.log_popularity[self.head]).astype(np.float32)
        drawn = np.empty(offsets[-1], dtype=np.int64)
        log_norm = np.empty(len(users))
        block = max(1, _BLOCK_ELEMENTS // len(self.head))
        for lo in range(0, len(users), block):
            part = slice(lo, min(lo + block, len(users)))
            logw, top = _head_logits(temper * self.config.affinity * taste[part],
                                     self.head_factors_t, log_popularity, self.head_release,
                                     self.window_start[users[part]], self.window_end[users[part]])
            logw -= top[:, None]
            totals = _draw_rows(np.exp(logw, out=logw), offsets[lo:part.stop + 1], uniform, drawn)
            log_norm[part] = np.log(totals) + top
        return drawn, log_norm

    def _feedback(self, owners: np.ndarray, items: np.ndarray, affinity: np.ndarray,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``rating`` (explicit), ``weight`` (implicit with counts) or nothing."""
        c = self.config
        if c.feedback == "explicit":
            latent = (_RATING_CENTER + self.user_bias[owners] + self.item_bias[items]
                      + _RATING_AFFINITY * affinity + rng.normal(0, c.rating_noise, len(items)))
            return {"rating": np.clip(np.rint(latent), 1, 5).astype(np.float32)}
        if c.counts:
            return {"weight": (1 + rng.poisson(np.exp(affinity))).astype(np.float32)}
        return {}

    def interactions(self, frame: pd.DataFrame) -> Interactions:
        """Wrap a frame of all users' rows (as `shard_frame` makes) with ids and side tables."""
        return Interactions(
            frame["user"].to_numpy() - 1,
            frame["item"].to_numpy() - 1,
            user_map=IdMap(np.arange(1, self.config.n_users + 1)),
            item_map=IdMap(np.arange(1, self.config.n_items + 1)),
            ratings=frame["rating"].to_numpy() if "rating" in frame else None,
            timestamps=frame["timestamp"].to_numpy(),
            weights=frame["weight"].to_numpy() if "weight" in frame else None,
            user_features=self.user_table(),
            item_features=self.item_table(),
            name="synthetic",
        )

    # ------------------------------------------------------------------ side tables
    @cached_property
    def release_year(self) -> np.ndarray:
        return pd.to_datetime(self.release, unit="s").year.to_numpy()

    def item_table(self) -> SideTable:
        """Genres (logistic in the item vector), title and release year."""
        c = self.config
        rng = _rng(c.seed, _ITEM_FEATURES)
        labels = list(GENRES[:c.n_genres])
        prevalence = 0.45 * (1 + np.arange(c.n_genres)) ** -1.2
        logits = (np.log(prevalence / (1 - prevalence))
                  + _GENRE_COUPLING * _projection(rng, self.item_factors, c.n_genres))
        member = rng.random(logits.shape) < 1 / (1 + np.exp(-logits))
        primary = np.argmax(np.where(member, logits, -np.inf), axis=1)
        primary = np.where(member.any(axis=1), primary, np.argmax(logits, axis=1))
        member[np.arange(c.n_items), primary] = True
        titles = _titles(rng, primary, self.release_year)
        ids = np.arange(1, c.n_items + 1)
        return SideTable(ids, numeric={"year": self.release_year},
                         multihot={"genres": (labels, sp.csr_matrix(member))},
                         text={"title": titles})

    def user_table(self) -> SideTable:
        """Age, age bucket, gender and occupation, each depending on the user vector."""
        c = self.config
        rng = _rng(c.seed, _USER_FEATURES)
        z = _projection(rng, self.user_factors, 2 + len(OCCUPATIONS))
        age = np.clip(np.rint(33 + 10 * z[:, 0] + rng.normal(0, 5, c.n_users)), 7, 73)
        bucket = np.array(AGE_BUCKETS, dtype=object)[np.searchsorted(AGE_BOUNDS, age, "right")]
        male = rng.random(c.n_users) < 1 / (1 + np.exp(-(0.9 + 1.5 * z[:, 1])))
        base = np.log(0.5 + np.arange(len(OCCUPATIONS))[::-1])
        occupation = np.argmax(base + z[:, 2:] + rng.gumbel(size=z[:, 2:].shape), axis=1)
        return SideTable(
            np.arange(1, c.n_users + 1),
            categorical={"age_bucket": bucket,
                         "gender": np.where(male, "M", "F"),
                         "occupation": np.array(OCCUPATIONS, dtype=object)[occupation]},
            numeric={"age": age},
        )


# ---------------------------------------------------------------------- helpers
def _latent(rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    """``n`` latent vectors whose pairwise dot products have unit variance."""
    return rng.normal(0, f ** -0.25, (n, f)).astype(np.float32)


def _zscore(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)


def _projection(rng: np.random.Generator, factors: np.ndarray, k: int) -> np.ndarray:
    """``k`` standardised random projections of the latent vectors (one column each)."""
    directions = rng.normal(size=(factors.shape[1], k))
    proj = factors.astype(np.float64) @ directions
    return (proj - proj.mean(axis=0)) / np.maximum(proj.std(axis=0), 1e-12)


def _titles(rng: np.random.Generator, genre: np.ndarray, year: np.ndarray) -> np.ndarray:
    """Two different words from each item's genre vocabulary, then the year in brackets."""
    n_words = GENRE_WORDS.shape[1]
    first = rng.integers(0, n_words, len(genre))
    second = (first + rng.integers(1, n_words, len(genre))) % n_words
    title = (pd.Series(GENRE_WORDS[genre, first]) + " " + pd.Series(GENRE_WORDS[genre, second])
             + " (" + pd.Series(year).astype(str) + ")")
    return title.to_numpy(dtype=object)


def _share_out(start: np.ndarray, end: np.ndarray, release: np.ndarray) -> np.ndarray:
    """Share of the window ``[start, end]`` after ``release`` (0 if released after ``end``)."""
    return np.clip((end - np.maximum(start, release)) / (end - start), 0.0, 1.0)


def _allocate(weights: np.ndarray, total: int, lo: int, hi: int,
              rng: np.random.Generator) -> np.ndarray:
    """Integer counts in ``[lo, hi]`` summing to ``total``, the excess over ``lo`` drawn
    multinomially by ``weights`` (users at the cap pass their overflow on to the others)."""
    counts = np.full(len(weights), lo, dtype=np.int64)
    remaining = total - counts.sum()
    while remaining > 0:
        room = hi - counts
        p = np.where(room > 0, weights, 0.0)
        counts += np.minimum(rng.multinomial(remaining, p / p.sum()), room)
        remaining = total - counts.sum()
    return counts


def _rechunk(frames: Iterator[pd.DataFrame], chunk_users: int) -> Iterator[pd.DataFrame]:
    """Re-cut frames sorted by ``user`` (ids ``1..n``) into blocks of ``chunk_users`` users."""
    buffer: list[pd.DataFrame] = []
    bound = chunk_users
    for frame in frames:
        buffer.append(frame)
        while buffer and buffer[-1]["user"].iat[-1] >= bound:
            data = pd.concat(buffer, ignore_index=True)
            cut = int(np.searchsorted(data["user"].to_numpy(), bound, side="right"))
            if cut:
                yield data.iloc[:cut].reset_index(drop=True)
            buffer = [data.iloc[cut:].reset_index(drop=True)] if cut < len(data) else []
            bound += chunk_users
    if buffer:
        yield pd.concat(buffer, ignore_index=True)


@numba.njit(parallel=True, cache=True, nogil=True)
def _affinity(owner: np.ndarray, item: np.ndarray, phase: np.ndarray, user_factors: np.ndarray,
              user_drift: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """``(u + phase * d) . v`` for each candidate (owner user, item, phase)."""
    out = np.empty(len(item), dtype=np.float32)
    for p in numba.prange(len(item)):
        u, i, t = owner[p], item[p], phase[p]
        total = np.float32(0.0)
        for k in range(item_factors.shape[1]):
            total += (user_factors[u, k] + t * user_drift[u, k]) * item_factors[i, k]
        out[p] = total
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _head_logits(taste: np.ndarray, factors_t: np.ndarray, log_popularity: np.ndarray,
                 release: np.ndarray, window_start: np.ndarray, window_end: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``log_popularity + taste[b].v + log(share of user b's window the item is out)`` for
    each user ``b`` and head item (columns sorted by ``release``; -inf when never out), and
    each row's maximum."""
    n_factors, n_items = factors_t.shape
    out = np.empty((taste.shape[0], n_items), dtype=np.float32)
    top = np.empty(taste.shape[0], dtype=np.float32)
    for b in numba.prange(taste.shape[0]):
        row = out[b]
        row[:] = log_popularity
        for k in range(n_factors):
            weight = taste[b, k]
            for i in range(n_items):
                row[i] += weight * factors_t[k, i]
        t0, t1 = window_start[b], window_end[b]
        for i in range(np.searchsorted(release, t0, side="right"), n_items):
            share = (t1 - release[i]) / (t1 - t0)
            row[i] += np.log(share) if share > 0 else -np.inf
        top[b] = row.max()
    return out, top


@numba.njit(parallel=True, cache=True, nogil=True)
def _draw_rows(weights: np.ndarray, offsets: np.ndarray, uniform: np.ndarray,
               items: np.ndarray) -> np.ndarray:
    """For row ``b`` of ``weights`` (a user), fill ``items[offsets[b]:offsets[b+1]]`` by
    inverse CDF with the given uniforms: a search over cumulative chunk sums, then a scan
    inside the chunk. Zero-weight items are never drawn. Returns the row sums."""
    n_items = weights.shape[1]
    n_chunks = (n_items + _CHUNK - 1) // _CHUNK
    totals = np.empty(weights.shape[0], dtype=np.float64)
    for b in numba.prange(weights.shape[0]):
        cum = np.zeros(n_chunks + 1, dtype=np.float64)
        for c in range(n_chunks):
            part = np.float32(0.0)
            for i in range(c * _CHUNK, min((c + 1) * _CHUNK, n_items)):
                part += weights[b, i]
            cum[c + 1] = cum[c] + part
        for j in range(offsets[b], offsets[b + 1]):
            target = uniform[j] * cum[n_chunks]
            c = min(np.searchsorted(cum, target, side="right") - 1, n_chunks - 1)
            rest = target - cum[c]
            i, end = c * _CHUNK, min((c + 1) * _CHUNK, n_items) - 1
            while i < end and (rest >= weights[b, i] or weights[b, i] == 0):
                rest -= weights[b, i]
                i += 1
            while weights[b, i] == 0:  # rounding ran past the chunk's last positive weight
                i -= 1
            items[j] = i
        totals[b] = cum[n_chunks]
    return totals


@numba.njit(cache=True, nogil=True)
def _select_top_unique(offsets: np.ndarray, item: np.ndarray, score: np.ndarray,
                       need: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user (pool ``offsets[u]:offsets[u+1]``), the positions of the ``need[u]`` best
    scored distinct items; ``ok[u]`` is False when the pool has too few finite ones."""
    n = len(need)
    out_start = np.zeros(n + 1, dtype=np.int64)
    out_start[1:] = np.cumsum(need)
    picked = np.zeros(out_start[-1], dtype=np.int64)
    ok = np.zeros(n, dtype=np.bool_)
    owner_of = np.full(n_items, -1, dtype=np.int64)
    for u in range(n):
        lo = offsets[u]
        order = np.argsort(-score[lo:offsets[u + 1]], kind="mergesort")
        taken = 0
        for j in order:
            if taken == need[u] or score[lo + j] == -np.inf:
                break
            i = item[lo + j]
            if owner_of[i] != u:
                owner_of[i] = u
                picked[out_start[u] + taken] = lo + j
                taken += 1
        ok[u] = taken == need[u]
    return picked, ok
