"""Online feature stores (`recforge.serving.store.base`): `open_store` opens one by URL;
`ingest` records events in the log and the store in one order; `replay` feeds a log's events
to a store (catching up after a crash, or ``recforge features rebuild`` into a fresh store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from recforge.errors import InputError
from recforge.serving.events import Event, EventLog, stamp
from recforge.serving.store.base import FeatureRules, FeatureStore, UserFeatures
from recforge.serving.store.sqlite import SqliteFeatureStore

if TYPE_CHECKING:
    from recforge.data.interactions import Interactions

__all__ = ["FeatureStore", "UserFeatures", "genres_of", "ingest", "open_store", "read_genres",
           "replay"]
#: the default embedded store, beside the working folder
DEFAULT_URL = "sqlite:///features.db"


def open_store(url: str = DEFAULT_URL, *, item_genres: Mapping[str, Sequence[str]] | None = None,
               **settings: Any) -> FeatureStore:
    """The feature store at ``url``: ``sqlite:///PATH`` (embedded; ``sqlite:////abs/path``
    for an absolute path) or ``redis://HOST:PORT/DB[?prefix=P]``. ``item_genres`` maps item
    ids to genres; ``settings`` are `FeatureRules`' (window, alpha, session_gap, half_life,
    passive)."""
    rules = FeatureRules(item_genres, **settings)
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise InputError(f"feature store URL {url!r}: expected sqlite:///PATH")
        return SqliteFeatureStore(path, rules)
    if scheme in ("redis", "rediss", "unix"):
        from recforge.serving.store.redis import RedisFeatureStore

        return RedisFeatureStore(url, rules)
    raise InputError(f"feature store URL {url!r}: expected sqlite:///PATH or "
                     "redis://HOST:PORT/DB")


def ingest(events: Sequence[Event], store: FeatureStore, log: EventLog | None = None) -> int:
    """Record ``events``: appended to ``log`` (when given) and applied to ``store``, the store
    applying them in the log's order, so that `replay` of the log rebuilds the same state.
    Returns how many events were new (to the log when given, else to the store).

    A SQLite store whose file is the log's appends and applies in one transaction. Otherwise
    the log's ingest lock is held across both steps: the append commits first, so a crash
    in between leaves the events in the log only, and `replay` at the next start applies
    them (before any newer event, under the same lock)."""
    events = stamp(events)
    if log is None:
        return store.apply(events)
    if isinstance(store, SqliteFeatureStore) and _same_file(store.path, log.path):
        return sum(store.ingest(events))
    with log.locked():
        fresh = log.append(events)
        store.apply(events)
    return sum(fresh)


def replay(log: EventLog, store: FeatureStore, batch: int = 1000) -> int:
    """Apply every event of ``log`` to ``store`` in append order, ``batch`` events per
    transaction, under the log's ingest lock; events already applied are skipped. Returns
    how many were new to the store."""
    applied = 0
    with log.locked():
        after = 0
        while rows := log.read(after, batch):
            applied += store.apply([event for _, event in rows])
            after = rows[-1][0]
    return applied


def genres_of(data: Interactions) -> dict[str, tuple[str, ...]]:
    """Item id (as text) -> genres, from ``data``'s item side table (the multihot
    ``genres`` column of the MovieLens loaders); empty when there is none."""
    table = data.item_features
    if table is None or "genres" not in table.multihot:
        return {}
    labels, matrix = table.multihot["genres"]
    matrix = matrix.tocsr()
    return {str(item): tuple(labels[j] for j in matrix.indices[matrix.indptr[i]:
                                                             matrix.indptr[i + 1]])
            for i, item in enumerate(table.ids.tolist())}


def read_genres(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Item id -> genres from a JSON file holding one object ``{"item": ["genre", ...]}``."""
    from recforge.io import read_json

    table = read_json(Path(path))
    if not isinstance(table, dict) or not all(
            isinstance(genres, list) and all(isinstance(g, str) for g in genres)
            for genres in table.values()):
        raise InputError(f"{path}: expected a JSON object mapping each item id to a list of "
                         "genre names")
    return {str(item): tuple(genres) for item, genres in table.items()}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
