"""Events of the serving layer: what a user did to an item, validated, and the append-only log.

An `Event` is one user action (a click, a play, a rating, an exposure served by the A/B
layer) with a unique ``event_id``: every consumer (the feature store, the log, the stream
consumer) is idempotent by that id, so a re-delivered event is applied once.

`EventLog` is the embedded append-only log: one SQLite table in WAL mode, safe for several
processes appending at once; iteration gives the events in append order, the order in which
``recforge features rebuild`` replays them.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.errors import InputError
from recforge.sqlitedb import SharedFile, check_file_target, connect

#: longest id or event type accepted (an id is a key, not a document)
MAX_ID_LENGTH = 256
#: most events accepted in one payload
MAX_BATCH = 10_000
_FIELDS = ("event_id", "user_id", "item_id", "event", "value", "timestamp")


@dataclass(frozen=True, slots=True)
class Event:
    """One user action on one item; ``timestamp`` in seconds since the epoch (None: the time
    of ingestion, filled in by `stamped`)."""

    event_id: str
    user_id: str
    item_id: str
    event: str = "click"
    value: float = 1.0
    timestamp: float | None = None

    def stamped(self, now: float) -> Event:
        """This event with ``timestamp`` set to ``now`` when it has none."""
        if self.timestamp is not None:
            return self
        return Event(self.event_id, self.user_id, self.item_id, self.event, self.value, now)


def stamp(events: Sequence[Event], now: float | None = None) -> list[Event]:
    """``events`` with every missing timestamp set to ``now`` (default: the current time)."""
    now = time.time() if now is None else now
    return [e.stamped(now) for e in events]


def parse_events(payload: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                 where: str = "events") -> list[Event]:
    """Validated events from one JSON object or a list of them.

    ``event_id``, ``user_id`` and ``item_id`` are required: a non-empty string or an integer
    (kept as its decimal text); ``event`` (default ``"click"``) a non-empty token; ``value``
    a finite number; ``timestamp`` a finite number >= 0 or null. Unknown fields are refused.
    Problems raise a one-line `InputError` naming ``where``, the index and the field."""
    if isinstance(payload, Mapping):
        return [_parse_one(payload, where)]
    if isinstance(payload, (str, bytes)) or not isinstance(payload, Sequence):
        raise InputError(f"{where}: expected an event object or a list of them, got "
                         f"{type(payload).__name__}")
    if len(payload) > MAX_BATCH:
        raise InputError(f"{where}: at most {MAX_BATCH} events per request, got {len(payload)}")
    return [_parse_one(item, f"{where}[{i}]") for i, item in enumerate(payload)]


def _parse_one(item: Any, where: str) -> Event:
    if not isinstance(item, Mapping):
        raise InputError(f"{where}: expected an event object, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown field (an event has "
                         f"{', '.join(_FIELDS)})")
    for required in ("event_id", "user_id", "item_id"):
        if item.get(required) is None:
            raise InputError(f"{where}.{required}: required")
    return Event(
        event_id=_identifier(item["event_id"], f"{where}.event_id"),
        user_id=_identifier(item["user_id"], f"{where}.user_id"),
        item_id=_identifier(item["item_id"], f"{where}.item_id"),
        event=_token(item.get("event", "click"), f"{where}.event"),
        value=_number(item.get("value", 1.0), f"{where}.value"),
        timestamp=_timestamp(item.get("timestamp"), f"{where}.timestamp"))


def _identifier(value: Any, where: str) -> str:
    """An id: a non-empty string without control characters, or an integer as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"{where}: must be a string or an integer id, got "
                         f"{type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InputError(f"{where}: must be 1-{MAX_ID_LENGTH} printable characters, got "
                         f"{value[:40]!r}")
    return value


def _token(value: Any, where: str) -> str:
    """An event type: a non-empty string without spaces or control characters."""
    text = _identifier(value, where) if isinstance(value, str) else None
    if text is None or any(c.isspace() for c in text):
        raise InputError(f"{where}: must be a non-empty word such as 'click', got {value!r}")
    return text


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise InputError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def _timestamp(value: Any, where: str) -> float | None:
    if value is None:
        return None
    seconds = _number(value, where)
    if seconds < 0:
        raise InputError(f"{where}: must be seconds since the epoch (>= 0), got {value!r}")
    return seconds


LOG_SCHEMA = """CREATE TABLE IF NOT EXISTS event_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL,
    value REAL NOT NULL, timestamp REAL NOT NULL)"""


def append_rows(connection: sqlite3.Connection, events: Sequence[Event]) -> list[bool]:
    """Insert stamped ``events`` into ``event_log`` inside the caller's transaction; True for
    each new event id, False for a duplicate."""
    fresh = []
    for e in events:
        cursor = connection.execute(
            "INSERT OR IGNORE INTO event_log (event_id, user_id, item_id, event, value, "
            "timestamp) VALUES (?, ?, ?, ?, ?, ?)",
            (e.event_id, e.user_id, e.item_id, e.event, e.value, e.timestamp))
        fresh.append(cursor.rowcount == 1)
    return fresh


class EventLog(SharedFile):
    """The embedded append-only event log (module docstring): a SQLite file in WAL mode.

    Events are stored with their timestamps (missing ones stamped at append); a repeated
    ``event_id`` is ignored. Iteration yields the events in append order."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()  # one connection, shared by the service's threads
        self.path = Path(path)
        check_file_target(self.path, "event log")
        try:
            self._db = connect(self.path)
            self._db.execute(LOG_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._abandon()
            raise InputError(f"event log {self.path}: not a usable SQLite database "
                             f"({exc})") from None

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Append ``events`` in one transaction; True = new, False = a duplicate event id."""
        events = stamp(events)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                fresh = append_rows(self._db, events)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return fresh

    def read(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        """Up to ``limit`` (sequence number, event) pairs with sequence numbers > ``after``,
        in append order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, user_id, item_id, event, value, timestamp FROM "
                "event_log WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [(row[0], Event(*row[1:])) for row in rows]

    def __iter__(self) -> Iterator[Event]:
        after = 0
        while batch := self.read(after):
            yield from (event for _, event in batch)
            after = batch[-1][0]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's ingest lock (an exclusive ``flock`` on the log file, independent of
        SQLite's own locks): `recforge.serving.store.ingest` holds it from the append until
        the feature store has applied the events, so every process applies in log order."""
        with open(self.path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def __len__(self) -> int:
        return self._count("event_log")
