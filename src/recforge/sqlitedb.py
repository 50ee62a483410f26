"""SQLite files that several processes and threads share: the append-only logs of the
service (`recforge.serving.events.EventLog`, `recforge.abtest.exposure.ExposureLog`) and the
embedded feature store.

`connect` opens a file in WAL mode (readers never block the writer), autocommit (callers
open their transactions with ``BEGIN IMMEDIATE``), with a busy timeout; `SharedFile` is the
base of a class that keeps one such connection for all its threads behind a lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from recforge.errors import InputError

if TYPE_CHECKING:
    from typing_extensions import Self

#: how long a writer waits for another process's transaction
BUSY_TIMEOUT_MS = 30_000


def connect(path: str | Path, *, readonly: bool = False,
            timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection for several processes at once: WAL journal (switched to with a retry, as
    the switch does not wait on the busy handler when processes race), ``synchronous=NORMAL``,
    a busy timeout, autocommit. ``readonly``: ``query_only``, and the journal mode untouched."""
    connection = sqlite3.connect(str(path), timeout=timeout_ms / 1000, isolation_level=None,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
    if readonly:
        connection.execute("PRAGMA query_only=1")
        return connection
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                connection.close()
                raise
            time.sleep(0.01)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def check_file_target(path: Path, what: str, *, must_exist: bool = False) -> None:
    """`InputError` naming ``what`` and ``path`` unless ``path`` can be (or, with
    ``must_exist``, is) a database file."""
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder, not a file")
    if must_exist and not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    if not path.parent.is_dir():
        raise InputError(f"{what} {path}: the folder {path.parent} does not exist")


class SharedFile:
    """One connection to a SQLite file, shared by threads under ``_lock``; a context manager
    that closes it."""

    path: Path
    _db: sqlite3.Connection

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _count(self, table: str) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def _abandon(self) -> None:
        """Close the connection, if one was opened, after a failed start."""
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
