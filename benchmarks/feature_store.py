"""Online feature store speed on MovieLens-100K events, SQLite (embedded, WAL) and Redis.

The 100,000 ratings become click events in timestamp order, with the movies' genres. Write
throughput: events per second applied one event per call (a ``POST /events`` with one
event) and 100 per call (the stream consumer's batches), plus the embedded default's
``ingest`` (event log and store in one SQLite transaction). Read latency: one user's
features (one round trip) for 5,000 random users, and the popularity of 100 items; p50 and
p99 in milliseconds. One process, one thread, a Redis on 127.0.0.1.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/feature_store.py \
        --redis redis://127.0.0.1:6379/15 --json benchmarks/results/feature_store.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from recforge.data.loading import load_dataset
from recforge.serving.events import Event, EventLog
from recforge.serving.store import FeatureStore, genres_of, open_store


def movielens_events() -> tuple[list[Event], dict[str, tuple[str, ...]]]:
    """ML-100K ratings as click events in timestamp order, and the item genres."""
    data = load_dataset("ml-100k", download=False)
    order = np.argsort(data.timestamps, kind="stable")
    users = data.user_map.ids[data.users[order]]
    items = data.item_map.ids[data.items[order]]
    times = data.timestamps[order]
    events = [Event(f"r{i}", str(u), str(it), "click", 1.0, float(t))
              for i, (u, it, t) in enumerate(zip(users.tolist(), items.tolist(), times.tolist()))]
    return events, genres_of(data)


def throughput(store: FeatureStore, events: list[Event], batch: int) -> float:
    """Events per second applying ``events`` ``batch`` at a time."""
    start = time.perf_counter()
    for lo in range(0, len(events), batch):
        store.apply(events[lo:lo + batch])
    return len(events) / (time.perf_counter() - start)


def latencies(call, args: list, repeat: int = 1) -> dict[str, float]:
    """p50/p99 (ms) of ``call(arg)`` over ``args``."""
    times = []
    for arg in args:
        start = time.perf_counter()
        call(arg)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4), "calls": len(args)}


def measure(url: str, events: list[Event], genres: dict, single: int, seed: int) -> dict:
    """Write throughput and read latency of the store at ``url`` (which must be empty)."""
    rng = np.random.default_rng(seed)
    with open_store(url, item_genres=genres) as store:
        out = {"events_per_s_batch_1": round(throughput(store, events[:single], 1)),
               "events_per_s_batch_100": round(throughput(store, events[single:], 100))}
        assert store.applied_count() == len(events)
        user_ids = sorted({e.user_id for e in events})
        item_ids = sorted({e.item_id for e in events})
        users = rng.choice(user_ids, 5_000).tolist()
        out["read_user"] = latencies(store.user, users)
        pops = [rng.choice(item_ids, 100).tolist() for _ in range(1_000)]
        out["read_popularity_100_items"] = latencies(store.popularity, pops)
        if hasattr(store, "clear"):
            store.clear()
    return out


def measure_ingest(folder: Path, events: list[Event], genres: dict, n: int) -> float:
    """Events per second of `ingest` into a SQLite store that holds the log (one event per
    call, as ``POST /events`` does)."""
    from recforge.serving.store import ingest

    path = folder / "ingest.db"
    with open_store(f"sqlite:///{path}", item_genres=genres) as store, EventLog(path) as log:
        start = time.perf_counter()
        for e in events[:n]:
            ingest([e], store, log)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default=None, help="a Redis URL (skipped when absent)")
    parser.add_argument("--single", type=int, default=5_000,
                        help="events applied one per call (the rest 100 per call)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    events, genres = movielens_events()
    results: dict = {"events": len(events), "users": len({e.user_id for e in events})}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(f"sqlite:///{folder}/features.db", events, genres,
                                    args.single, args.seed)
        results["sqlite_ingest_with_log_events_per_s_batch_1"] = round(
            measure_ingest(Path(folder), events, genres, args.single))
    if args.redis:
        url = f"{args.redis}?prefix=recforge-bench:{time.time_ns()}:"
        results["redis"] = measure(url, events, genres, args.single, args.seed)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
