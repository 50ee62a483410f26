"""The exposure log: which user saw which arm of which experiment, when.

An append-only SQLite table (WAL mode, so several server processes append while an analysis
reads; a busy writer is waited for, up to ``timeout`` seconds). Rows are never updated or
deleted: triggers refuse both. Each row is one `Exposure`: user, experiment, arm, time,
the request id and the item ids served.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.errors import InputError
from recforge.sqlitedb import SharedFile, check_file_target, connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    timestamp REAL NOT NULL,
    request_id TEXT,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exposures_experiment ON exposures (experiment, user_id);
CREATE TRIGGER IF NOT EXISTS exposures_no_update BEFORE UPDATE ON exposures
    BEGIN SELECT RAISE(ABORT, 'the exposure log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS exposures_no_delete BEFORE DELETE ON exposures
    BEGIN SELECT RAISE(ABORT, 'the exposure log is append-only'); END;
"""
#: the columns of `ExposureLog.read`
COLUMNS = ("user_id", "experiment", "arm", "timestamp", "request_id", "items")


@dataclass(frozen=True, slots=True)
class Exposure:
    """One exposure: ``user_id`` was served ``arm`` of ``experiment`` at ``timestamp``
    (seconds since the epoch; None: the time of logging), in request ``request_id``, with
    the item ids ``items``."""

    user_id: str
    experiment: str
    arm: str
    timestamp: float | None = None
    request_id: str | None = None
    items: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, row: Exposure | Mapping[str, Any], where: str) -> Exposure:
        """``row`` (an `Exposure` or a table with its fields) checked; `InputError` naming
        ``where`` and the field otherwise."""
        if isinstance(row, Mapping):
            unknown = set(row) - set(COLUMNS)
            if unknown:
                raise InputError(f"{where}: unknown field {min(unknown)!r}; valid: "
                                 f"{', '.join(COLUMNS)}")
            missing = [key for key in COLUMNS[:3] if key not in row]
            if missing:
                raise InputError(f"{where}: missing field {missing[0]!r}")
            row = cls(**row)
        if not isinstance(row, Exposure):
            raise InputError(f"{where}: must be an Exposure or a table, got {row!r}")
        row._check(where)
        return row

    def _check(self, where: str) -> None:
        for key in ("user_id", "experiment", "arm"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                raise InputError(f"{where}.{key}: must be a non-empty string, got {value!r}")
        stamp = self.timestamp
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, float))
                                  or not math.isfinite(stamp)):
            raise InputError(f"{where}.timestamp: must be a finite number or null, got "
                             f"{stamp!r}")
        if self.request_id is not None and not isinstance(self.request_id, str):
            raise InputError(f"{where}.request_id: must be a string or null, got "
                             f"{self.request_id!r}")
        if isinstance(self.items, str) or not isinstance(self.items, (list, tuple)):
            raise InputError(f"{where}.items: must be a list of item ids, got {self.items!r}")


class ExposureLog(SharedFile):
    """An append-only exposure log in the SQLite file ``path`` (created when absent).

    One instance may be shared by threads (calls are serialised); each process opens its
    own. ``timeout``: seconds to wait for another process's write. ``readonly``: for
    analysis: the file must exist and hold an exposure log, and nothing is written."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0,
                 readonly: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        check_file_target(self.path, "exposure log", must_exist=readonly)
        try:
            self._db = connect(self.path, readonly=readonly, timeout_ms=int(timeout * 1000))
            if readonly:
                self._check_table()
            else:
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._abandon()
            raise InputError(f"exposure log {self.path}: not a usable SQLite database "
                             f"({exc})") from None
        except InputError:
            self._abandon()
            raise

    def _check_table(self) -> None:
        """`InputError` unless the database holds an exposure table (a read-only open never
        adds one to someone else's database)."""
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                 "name = 'exposures'").fetchone()
        if found is None:
            raise InputError(f"exposure log {self.path}: the database holds no exposure log")

    def log(self, rows: Iterable[Exposure | Mapping[str, Any]]) -> int:
        """Append ``rows`` (`Exposure` objects or tables with its fields) in one transaction;
        all or none are written. Returns the number appended."""
        now = time.time()
        checked = [Exposure.coerce(row, f"exposures[{i}]") for i, row in enumerate(rows)]
        values = [(str(r.user_id), str(r.experiment), str(r.arm),
                   now if r.timestamp is None else float(r.timestamp), r.request_id,
                   json.dumps([str(item) for item in r.items])) for r in checked]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO exposures (user_id, experiment, arm, timestamp, request_id, "
                    "items) VALUES (?, ?, ?, ?, ?, ?)", values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(values)

    def rows(self, experiment: str | None = None) -> list[Exposure]:
        """The logged exposures in append order (of ``experiment`` only, when given)."""
        query = "SELECT user_id, experiment, arm, timestamp, request_id, items FROM exposures"
        params: Sequence[str] = ()
        if experiment is not None:
            query, params = query + " WHERE experiment = ?", (experiment,)
        with self._lock:
            fetched = self._db.execute(query + " ORDER BY seq", params).fetchall()
        return [Exposure(u, e, a, t, r, tuple(json.loads(items)))
                for u, e, a, t, r, items in fetched]

    def read(self, experiment: str | None = None) -> Any:
        """The logged exposures as a pandas DataFrame with columns `COLUMNS` (``items`` holds
        tuples), in append order; of ``experiment`` only when given."""
        import pandas as pd

        rows = self.rows(experiment)
        return pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in rows],
                            columns=list(COLUMNS))

    def experiments(self) -> list[str]:
        """The names of the experiments with logged exposures, sorted."""
        with self._lock:
            fetched = self._db.execute("SELECT DISTINCT experiment FROM exposures "
                                       "ORDER BY experiment").fetchall()
        return [name for (name,) in fetched]

    def __len__(self) -> int:
        return self._count("exposures")
