"""The Redis Stream consumer: a consumer group applying events to the store, acknowledging
only after the features are updated; pending entries re-read after a crash, claimed from a
dead consumer; bad entries dead-lettered; a consumer killed with SIGKILL while 10,000
events stream in leaves every event applied exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from recforge.errors import InputError
from recforge.serving.events import Event, EventLog
from recforge.serving.store import open_store, replay
from recforge.serving.stream import StreamConsumer, entry_event, publish


@pytest.fixture
def client(redis_url):
    import redis

    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def store(redis_url, redis_prefix):
    opened = open_store(f"{redis_url}?prefix={redis_prefix}store:", item_genres={})
    yield opened
    opened.close()


def events(n: int, start: int = 0) -> list[Event]:
    return [Event(f"e{i}", f"u{i % 9}", f"i{i % 31}", "click", 1.0, 1000.0 + i)
            for i in range(start, start + n)]


def consumer(client, store, prefix, name="c1", **kwargs) -> StreamConsumer:
    return StreamConsumer(client, store, stream=prefix + "events", group="g", consumer=name,
                          block_ms=10, **kwargs)


def test_entries_are_applied_then_acknowledged(client, store, redis_prefix):
    worker = consumer(client, store, redis_prefix, batch=40)
    worker.ensure_group()
    publish(client, events(100) + events(10), redis_prefix + "events")  # 10 re-sent
    while worker.step(block=False):
        pass
    assert worker.stats.acknowledged == 110 and worker.stats.applied == 100
    assert store.applied_count() == 100
    assert client.xpending(redis_prefix + "events", "g")["pending"] == 0
    assert worker.backlog() == 0
    assert sum(f.counts["click"] for f in store.users([f"u{k}" for k in range(9)])) == 100


def test_a_failed_apply_leaves_the_entries_pending_for_the_restart(client, store, redis_prefix,
                                                                  monkeypatch):
    publish(client, events(50), redis_prefix + "events")
    crashing = consumer(client, store, redis_prefix, batch=20)
    crashing.ensure_group()
    monkeypatch.setattr(store, "_apply", lambda evs: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        crashing.step(block=False)
    monkeypatch.undo()
    assert client.xpending(redis_prefix + "events", "g")["pending"] == 20
    assert store.applied_count() == 0
    restarted = consumer(client, store, redis_prefix, batch=20)  # the same consumer name
    while restarted.step(block=False):
        pass
    assert store.applied_count() == 50
    assert client.xpending(redis_prefix + "events", "g")["pending"] == 0


def test_entries_of_a_dead_consumer_are_claimed(client, store, redis_prefix):
    publish(client, events(30), redis_prefix + "events")
    dead = consumer(client, store, redis_prefix, name="dead", batch=30)
    dead.ensure_group()
    client.xreadgroup("g", "dead", {redis_prefix + "events": ">"}, count=30)  # never acked
    time.sleep(0.05)
    other = consumer(client, store, redis_prefix, name="other", claim_idle_ms=20)
    while other.step(block=False):
        pass
    assert store.applied_count() == 30
    assert client.xpending(redis_prefix + "events", "g")["pending"] == 0


def test_a_bad_entry_is_dead_lettered_not_redelivered(client, store, redis_prefix):
    stream = redis_prefix + "events"
    client.xadd(stream, {"event_id": "x", "user_id": "u"})
    client.xadd(stream, {"event_id": "y", "user_id": "u", "item_id": "i", "value": "lots"})
    publish(client, events(3), stream)
    worker = consumer(client, store, redis_prefix)
    worker.ensure_group()
    while worker.step(block=False):
        pass
    assert store.applied_count() == 3 and worker.stats.dead == 2
    dead = client.xrange(stream + ":dead")
    assert [fields["_error"] for _, fields in dead] == [
        f"stream entry {dead[0][1]['_entry_id']}.item_id: required",
        f"stream entry {dead[1][1]['_entry_id']}.value: must be a number, got 'lots'"]
    assert client.xpending(stream, "g")["pending"] == 0


def test_an_entry_without_timestamp_takes_its_entry_time():
    event = entry_event("1700000000123-4", {"event_id": "a", "user_id": "u", "item_id": "i"})
    assert event.timestamp == 1700000000.123
    with pytest.raises(InputError, match="stream entry 1-0.timestamp: must be a number"):
        entry_event("1-0", {"event_id": "a", "user_id": "u", "item_id": "i",
                            "timestamp": "soon"})


def test_consumer_settings_are_validated(client, store):
    with pytest.raises(InputError, match="^batch: must be an integer"):
        StreamConsumer(client, store, batch=0)
    with pytest.raises(InputError, match="^group: must be a non-empty name"):
        StreamConsumer(client, store, group=" ")


def test_a_consumer_killed_while_10000_events_stream_in_applies_each_once(
        client, redis_url, redis_prefix, tmp_path):
    stream, store_url = redis_prefix + "events", f"{redis_url}?prefix={redis_prefix}store:"
    log_path = tmp_path / "events.db"
    run_cli = "import sys; from recforge.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", run_cli, "features", "consume", "--store", store_url,
               "--redis", redis_url, "--stream", stream, "--group", "g", "--consumer", "c1",
               "--log", str(log_path), "--batch", "50", "--idle-exit", "1.5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    running = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    everything = events(10_000)
    store = open_store(store_url, item_genres={})
    killed_at = None
    for chunk in range(100):
        publish(client, everything[chunk * 100:(chunk + 1) * 100], stream)
        time.sleep(0.02)
        if chunk == 50:
            _wait_for(lambda: store.applied_count() >= 1_000, running)
            os.kill(running.pid, signal.SIGKILL)
            running.wait()
            killed_at = store.applied_count()
            running = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    assert running.wait(timeout=120) == 0
    assert killed_at is not None and 1_000 <= killed_at < 10_000
    assert store.applied_count() == 10_000
    assert client.xpending(stream, "g")["pending"] == 0
    assert sum(f.counts["click"] for f in store.users([f"u{k}" for k in range(9)])) == 10_000
    with EventLog(log_path) as log:
        assert len(log) == 10_000
        rebuilt = open_store(f"sqlite:///{tmp_path}/rebuilt.db", item_genres={})
        replay(log, rebuilt)
    assert rebuilt.snapshot() == store.snapshot()


def _wait_for(condition, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the consumer exited early"
        assert time.monotonic() < deadline, "timed out waiting for the consumer"
        time.sleep(0.01)
