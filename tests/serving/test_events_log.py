"""Events: validation, the append-only SQLite log, `ingest` and `replay` (rebuild equals
online), and a writer killed with SIGKILL mid-stream that loses and doubles nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recforge.errors import InputError
from recforge.serving.events import Event, EventLog, parse_events
from recforge.serving.store import ingest, open_store, replay

GENRES = {"1": ["Action"], "2": ["Drama", "Action"], "3": ["Comedy"]}


def test_parse_events_fills_defaults_and_keeps_ids_as_text():
    [event] = parse_events({"event_id": 7, "user_id": "196", "item_id": 242})
    assert event == Event("7", "196", "242", "click", 1.0, None)
    events = parse_events([{"event_id": "a", "user_id": "u", "item_id": "i", "event": "play",
                            "value": 3, "timestamp": 1.5}])
    assert events == [Event("a", "u", "i", "play", 3.0, 1.5)]


@pytest.mark.parametrize(("payload", "message"), [
    ({"user_id": "u", "item_id": "i"}, r"^events\.event_id: required$"),
    ([{"event_id": "a", "user_id": "u", "item_id": "i"}, {"event_id": "b", "user_id": "u"}],
     r"^events\[1\]\.item_id: required$"),
    ({"event_id": "a", "user_id": "", "item_id": "i"}, r"^events\.user_id: must be 1-256"),
    ({"event_id": "a", "user_id": True, "item_id": "i"}, r"^events\.user_id: must be a str"),
    ({"event_id": "a", "user_id": "u", "item_id": "i", "event": "a b"}, r"^events\.event: "),
    ({"event_id": "a", "user_id": "u", "item_id": "i", "value": float("nan")},
     r"^events\.value: must be a finite number"),
    ({"event_id": "a", "user_id": "u", "item_id": "i", "timestamp": -1},
     r"^events\.timestamp: must be seconds"),
    ({"event_id": "a", "user_id": "u", "item_id": "i", "colour": "red"},
     r"^events\.colour: unknown field"),
    ("click", r"^events: expected an event object or a list"),
    ([1], r"^events\[0\]: expected an event object"),
])
def test_parse_events_names_the_bad_field(payload, message):
    with pytest.raises(InputError, match=message):
        parse_events(payload)


def test_event_log_appends_once_per_id_in_order(tmp_path):
    log = EventLog(tmp_path / "events.db")
    fresh = log.append([Event("a", "u", "1"), Event("b", "u", "2", timestamp=5.0),
                        Event("a", "u", "3")])
    assert fresh == [True, True, False]
    assert log.append([Event("b", "v", "9"), Event("c", "v", "9")]) == [False, True]
    events = list(log)
    assert [e.event_id for e in events] == ["a", "b", "c"]
    assert events[0].timestamp is not None and abs(events[0].timestamp - time.time()) < 60
    assert events[1] == Event("b", "u", "2", "click", 1.0, 5.0)
    log.close()
    with EventLog(tmp_path / "events.db") as again:
        assert len(again) == 3 and list(again) == events


def test_event_log_refuses_unusable_paths(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        EventLog(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        EventLog(tmp_path / "no" / "events.db")
    (tmp_path / "junk.db").write_text("not a database at all, " * 50)
    with pytest.raises(InputError, match="not a usable SQLite database"):
        EventLog(tmp_path / "junk.db")


def stream_of(n: int) -> list[Event]:
    return [Event(f"e{i}", f"u{i % 7}", str(1 + i % 4), "exposure" if i % 5 == 0 else "click",
                  1.0, 1_000.0 + 37.0 * (i % 50) + i) for i in range(n)]


@pytest.mark.parametrize("where", ["same-file", "sqlite", "redis"])
def test_rebuild_from_the_log_equals_the_online_state(where, tmp_path, request):
    log = EventLog(tmp_path / "events.db")
    if where == "same-file":
        online = open_store(f"sqlite:///{log.path}", item_genres=GENRES)
    elif where == "sqlite":
        online = open_store(f"sqlite:///{tmp_path}/online.db", item_genres=GENRES)
    else:
        online = open_store(f"{request.getfixturevalue('redis_url')}?prefix="
                            f"{request.getfixturevalue('redis_prefix')}", item_genres=GENRES)
    events, seen = stream_of(400), set()
    for start in range(0, 400, 30):  # overlapping batches: most events are sent twice
        batch = events[start:start + 60]
        assert ingest(batch, online, log) == len({e.event_id for e in batch} - seen)
        seen |= {e.event_id for e in batch}
    assert len(log) == 400 and online.applied_count() == 400
    rebuilt = open_store(f"sqlite:///{tmp_path}/rebuilt.db", item_genres=GENRES)
    assert replay(log, rebuilt) == 400
    assert rebuilt.snapshot() == online.snapshot()
    assert replay(log, rebuilt) == 0


def test_ingest_without_a_log_counts_new_events(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/f.db")
    assert ingest([Event("a", "u", "1"), Event("a", "u", "1")], store) == 1
    assert store.user("u").last_active is not None


# A writer that ingests 10,000 events in batches of 25: log and store in separate files, so
# a kill can land between the log's commit and the store's (replay at start repairs it).
_WRITER = """
import sys
from recforge.serving.events import Event, EventLog
from recforge.serving.store import ingest, open_store, replay
log, store = EventLog(sys.argv[1]), open_store("sqlite:///" + sys.argv[2], item_genres={})
replay(log, store)
for start in range(0, 10_000, 25):
    ingest([Event(f"e{i}", f"u{i % 13}", f"i{i % 101}", "click", 1.0, float(i))
            for i in range(start, start + 25)], store, log)
"""


def test_a_writer_killed_mid_stream_loses_and_doubles_nothing(tmp_path):
    log_path, store_path = tmp_path / "events.db", tmp_path / "online.db"
    command = [sys.executable, "-c", _WRITER, str(log_path), str(store_path)]
    first = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while _logged(log_path) < 2_000 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = _logged(log_path)
    assert 0 < killed_at < 10_000, "the kill did not land mid-stream"
    subprocess.run(command, check=True, timeout=120)
    log = EventLog(log_path)
    store = open_store(f"sqlite:///{store_path}", item_genres={})
    assert len(log) == 10_000 and store.applied_count() == 10_000
    users = store.users([f"u{k}" for k in range(13)])
    assert sum(f.counts["click"] for f in users) == 10_000
    rebuilt = open_store(f"sqlite:///{tmp_path}/rebuilt.db", item_genres={})
    replay(log, rebuilt)
    assert rebuilt.snapshot() == store.snapshot()


def _logged(path: Path) -> int:
    """Events in the log so far, read without writing (no schema, no journal switch), so
    watching never races the writer's creation of the file; 0 while it is being created."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM event_log").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
