"""The Redis Stream event consumer: events published to a stream are applied to the feature
store by the members of a consumer group.

Each stream entry is one event with the fields of `recforge.serving.events.Event` as text
(``event_id``, ``user_id``, ``item_id`` required; ``event``, ``value``, ``timestamp``
optional); `publish` writes them. An entry without a timestamp takes its entry id's time
(the moment Redis accepted it), so a re-delivered entry carries the same time.

Delivery is at least once and application exactly once: a batch read with ``XREADGROUP``
is recorded (`recforge.serving.store.ingest`: the log when given, then the store, which
skips event ids already applied) and only then acknowledged with ``XACK``. A consumer killed
in between leaves its entries pending; on restart it first re-reads its own pending entries
(``XREADGROUP`` from id 0) and then claims other consumers' entries idle longer than
``claim_idle_ms`` (``XAUTOCLAIM``), so nothing acknowledged is lost and nothing is applied
twice. An entry that is not a valid event is acknowledged and copied, with the reason, to
the dead-letter stream ``STREAM:dead`` (it would otherwise be re-delivered forever).

Run one with ``recforge features consume``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recforge.errors import InputError
from recforge.params import Integer
from recforge.serving.events import Event, EventLog, parse_events
from recforge.serving.store import FeatureStore, ingest, replay

DEFAULT_STREAM, DEFAULT_GROUP = "recforge:events", "recforge"
_COUNT = Integer(1, 100_000)
_MILLISECONDS = Integer(0, 86_400_000)


def default_consumer_name() -> str:
    """``HOST-PID``: unique per process (pass a stable name to re-read one's own pending
    entries after a restart)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def publish(client: Any, events: Sequence[Event], stream: str = DEFAULT_STREAM) -> list[str]:
    """XADD ``events`` to ``stream`` in one pipeline; returns the entry ids."""
    pipe = client.pipeline(transaction=False)
    for e in events:
        fields = {"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
                  "event": e.event, "value": repr(e.value)}
        if e.timestamp is not None:
            fields["timestamp"] = repr(e.timestamp)
        pipe.xadd(stream, fields)
    return [str(entry_id) for entry_id in pipe.execute()]


def entry_event(entry_id: str, fields: Mapping[str, str]) -> Event:
    """The event of one stream entry (`InputError` naming the entry when it is not one)."""
    where = f"stream entry {entry_id}"
    record: dict[str, Any] = dict(fields)
    for name in ("value", "timestamp"):
        if name in record:
            try:
                record[name] = float(record[name])
            except ValueError:
                raise InputError(f"{where}.{name}: must be a number, got "
                                 f"{record[name]!r}") from None
    if record.get("timestamp") is None:
        record["timestamp"] = int(entry_id.split("-")[0]) / 1000
    return parse_events(record, where)[0]


@dataclass
class ConsumerStats:
    """What a consumer has done: entries acknowledged, events new to the store (or log),
    entries dead-lettered, and the age (seconds) of the newest event at its application."""

    acknowledged: int = 0
    applied: int = 0
    dead: int = 0
    lag_seconds: float | None = None


class StreamConsumer:
    """One member of a consumer group applying a Redis Stream to a feature store (module
    docstring). ``client`` is a ``redis.Redis`` with ``decode_responses=True``."""

    def __init__(self, client: Any, store: FeatureStore, *, stream: str = DEFAULT_STREAM,
                 group: str = DEFAULT_GROUP, consumer: str | None = None,
                 log: EventLog | None = None, batch: int = 500, block_ms: int = 1000,
                 claim_idle_ms: int = 60_000) -> None:
        for name, value in (("stream", stream), ("group", group), ("consumer", consumer)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name}: must be a non-empty name, got {value!r}")
        self.client, self.store, self.log = client, store, log
        self.stream, self.group = stream, group
        self.consumer = consumer or default_consumer_name()
        self.batch = _COUNT.check("batch", batch)
        self.block_ms = _MILLISECONDS.check("block_ms", block_ms)
        self.claim_idle_ms = _MILLISECONDS.check("claim_idle_ms", claim_idle_ms)
        self.stats = ConsumerStats()
        self._own_pending_done = False
        self._claim_cursor, self._next_claim = "0-0", 0.0

    def ensure_group(self) -> None:
        """Create the stream and the group (reading from the stream's start) if absent."""
        import redis

        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def start(self) -> None:
        """Prepare to consume: the group exists, and the log's events not yet in the store
        (a crash between the two) are applied first."""
        self.ensure_group()
        if self.log is not None:
            replay(self.log, self.store)

    def step(self, block: bool = True) -> int:
        """Process one batch: this consumer's pending entries first, then entries idle in
        dead consumers, then new ones (waiting up to ``block_ms`` when ``block``). Returns
        how many entries were acknowledged."""
        entries = self._next_entries(block)
        if not entries:
            return 0
        events, ids = [], []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if fields is None:  # deleted from the stream while pending (XTRIM)
                continue
            try:
                events.append(entry_event(entry_id, fields))
            except InputError as exc:
                self._dead_letter(entry_id, fields, str(exc))
        if events:
            self.stats.applied += ingest(events, self.store, self.log)
            newest = max(float(e.timestamp) for e in events)  # type: ignore[arg-type]
            self.stats.lag_seconds = max(0.0, time.time() - newest)
        self.client.xack(self.stream, self.group, *ids)
        self.stats.acknowledged += len(ids)
        return len(ids)

    def _next_entries(self, block: bool) -> list[tuple[str, dict[str, str] | None]]:
        if not self._own_pending_done:
            entries = self._read("0", block=False)
            if entries:
                return entries
            self._own_pending_done = True
        if self.claim_idle_ms and time.monotonic() >= self._next_claim:
            cursor, claimed, *_ = self.client.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms,
                start_id=self._claim_cursor, count=self.batch)
            self._claim_cursor = cursor
            if cursor == "0-0":  # scanned every pending entry: look again after a while
                self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
            if claimed:
                return [(entry_id, fields or None) for entry_id, fields in claimed]
        return self._read(">", block)

    def _read(self, start: str, block: bool) -> list[tuple[str, dict[str, str] | None]]:
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                       count=self.batch,
                                       block=self.block_ms if block and self.block_ms else None)
        return [(entry_id, fields or None) for _, entries in reply or [] for entry_id, fields
                in entries]

    def _dead_letter(self, entry_id: str, fields: Mapping[str, str], reason: str) -> None:
        self.client.xadd(f"{self.stream}:dead", {**fields, "_entry_id": entry_id,
                                                 "_error": reason})
        self.stats.dead += 1

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            idle_exit_s: float | None = None) -> ConsumerStats:
        """`start`, then process batches until ``should_stop()`` or, with ``idle_exit_s``,
        until no entry arrived for that long."""
        self.start()
        idle_since = time.monotonic()
        while not should_stop():
            if self.step():
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
        return self.stats

    def backlog(self) -> int:
        """Entries of the stream this group has not yet acknowledged (pending + undelivered;
        Redis 7's group ``lag``, counted as pending when unknown)."""
        for info in self.client.xinfo_groups(self.stream):
            if info["name"] == self.group:
                return int(info.get("pending", 0)) + int(info.get("lag") or 0)
        return 0
