"""The embedded feature store: one SQLite file in WAL mode, no server.

Tables: ``users`` (one JSON state per user), ``popularity`` (score and reference time per
item), ``applied`` (every applied event id) and ``meta`` (the settings the file was created
with; opening it with other settings is refused, since its features were computed under
them). `apply` runs in one ``BEGIN IMMEDIATE`` transaction, so several processes (uvicorn
workers) may write at once, each waiting its turn (busy timeout), and a process killed
mid-way leaves no partial update: the event ids and the features commit together.
A read is one query.

The same file may hold the `EventLog` table (`ingest` appends and applies in one
transaction when the log is this file).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from recforge.errors import InputError
from recforge.serving.events import LOG_SCHEMA, Event, append_rows, stamp
from recforge.serving.store.base import FeatureRules, FeatureStore, UserFeatures, UserState
from recforge.sqlitedb import connect

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS popularity (item_id TEXT PRIMARY KEY, score REAL NOT NULL, "
     "ref REAL NOT NULL)"),
    "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY) WITHOUT ROWID",
    LOG_SCHEMA,
)
#: most ids bound in one IN (...) query (SQLite's default variable limit is 32,766)
_CHUNK = 10_000


class SqliteFeatureStore(FeatureStore):
    """The SQLite backend (module docstring) at ``path`` (created when absent)."""

    def __init__(self, path: str | Path, rules: FeatureRules) -> None:
        super().__init__(rules)
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.RLock()  # one connection, shared by the service's threads
        if self.path.is_dir() or not self.path.parent.is_dir():
            raise InputError(f"feature store {self.path}: not a file in an existing folder")
        try:
            self._db = connect(self.path)
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._check_settings()
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"feature store {self.path}: not a usable SQLite database "
                             f"({exc})") from None

    def _check_settings(self) -> None:
        mine = json.dumps(self.rules.settings(), sort_keys=True)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('settings', ?)", (mine,))
        elif row[0] != mine:
            self._db.execute("ROLLBACK")
            raise InputError(f"feature store {self.path}: was built with settings {row[0]}, "
                             f"not {mine} (rebuild it with `recforge features rebuild`)")

    def _apply(self, events: list[Event]) -> int:
        return self._transaction(events, log=False)

    def ingest(self, events: Sequence[Event]) -> list[bool]:
        """Append ``events`` to this file's event log table and apply them, in one
        transaction; True for each new event id."""
        events = stamp(events)
        fresh: list[bool] = []
        self._transaction(events, log=True, fresh=fresh)
        return fresh

    def _transaction(self, events: list[Event], log: bool,
                     fresh: list[bool] | None = None) -> int:
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                if log:
                    result = append_rows(db, events)
                    if fresh is not None:
                        fresh.extend(result)
                applied = self._apply_in_transaction(events)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return applied

    def _apply_in_transaction(self, events: list[Event]) -> int:
        db, rules = self._db, self.rules
        users: dict[str, UserState] = {}
        items: dict[str, tuple[float, float] | None] = {}
        applied = 0
        for e in events:
            if db.execute("INSERT OR IGNORE INTO applied VALUES (?)",
                          (e.event_id,)).rowcount != 1:
                continue
            applied += 1
            if e.user_id not in users:
                users[e.user_id] = self._load_users([e.user_id]).get(e.user_id) or UserState()
            rules.update(users[e.user_id], e)
            if e.event not in rules.passive:
                if e.item_id not in items:
                    items[e.item_id] = self._popularity_raw([e.item_id])[0]
                score, ref = items[e.item_id] or (0.0, None)
                items[e.item_id] = rules.popularity_update(score, ref, float(e.timestamp))
        db.executemany("INSERT OR REPLACE INTO users VALUES (?, ?)",
                       [(uid, _dump(state)) for uid, state in users.items()])
        db.executemany("INSERT OR REPLACE INTO popularity VALUES (?, ?, ?)",
                       [(item, *pair) for item, pair in items.items() if pair is not None])
        return applied

    def _load_users(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        out = {}
        for chunk in _chunks(user_ids):
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT user_id, state FROM users WHERE user_id IN ({marks})",
                    chunk).fetchall()
            out.update((uid, _load(text)) for uid, text in rows)
        return out

    def users(self, user_ids: Sequence[str]) -> list[UserFeatures]:
        states = self._load_users(list(dict.fromkeys(user_ids)))
        return [states.get(uid, UserState()).features(uid) for uid in user_ids]

    def _popularity_raw(self, item_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        found: dict[str, tuple[float, float]] = {}
        for chunk in _chunks(list(dict.fromkeys(item_ids))):
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT item_id, score, ref FROM popularity WHERE item_id IN ({marks})",
                    chunk).fetchall()
            found.update((item, (score, ref)) for item, score, ref in rows)
        return [found.get(item) for item in item_ids]

    def applied_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM applied").fetchone()[0])

    def snapshot(self) -> dict[str, Any]:
        db = self._db
        with self._lock:
            db.execute("BEGIN")
            try:
                users = {uid: _load(text).features(uid).to_dict()
                         for uid, text in db.execute("SELECT user_id, state FROM users")}
                popularity = {item: [score, ref] for item, score, ref in
                              db.execute("SELECT item_id, score, ref FROM popularity")}
                applied = self.applied_count()
            finally:
                db.execute("COMMIT")
        return {"users": users, "popularity": popularity, "applied": applied}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    ids = [str(i) for i in ids]
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _dump(state: UserState) -> str:
    return json.dumps([state.recent, state.prefs, state.counts, state.last_active,
                       state.session_id, state.session_events], separators=(",", ":"))


def _load(text: str) -> UserState:
    recent, prefs, counts, last_active, session_id, session_events = json.loads(text)
    return UserState(recent, prefs, counts, last_active, session_id, session_events)
