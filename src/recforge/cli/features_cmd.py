"""``recforge features rebuild|show|consume``: the online feature store from the command
line (`recforge.serving.store`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

from recforge.cli.common import console, phase
from recforge.errors import InputError
from recforge.serving.store.base import ALPHA, HALF_LIFE, SESSION_GAP, WINDOW


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge features``."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild", help="recompute the online features from the event log into a fresh store")
    rebuild.add_argument("--log", required=True, help="the event log (a SQLite file)")
    rebuild.add_argument("--store", required=True,
                         help="the new store: sqlite:///PATH (must not exist) or "
                              "redis://HOST:PORT/DB?prefix=P (the prefix must be empty)")
    rebuild.add_argument("--replace", action="store_true",
                         help="clear a Redis prefix that holds an earlier recforge store")
    rebuild.set_defaults(func=cmd_rebuild)
    compare = actions.add_parser(
        "compare", help="compare two stores (e.g. the online one and a rebuild); exit status "
                        "1 when they differ")
    compare.add_argument("stores", nargs=2, metavar="URL")
    compare.set_defaults(func=cmd_compare)
    show = actions.add_parser("show", help="print users' features (JSON)")
    show.add_argument("users", nargs="+", metavar="USER")
    show.add_argument("--store", required=True)
    show.set_defaults(func=cmd_show)
    consume = actions.add_parser(
        "consume", help="apply a Redis Stream of events to the store (a consumer group member)")
    consume.add_argument("--store", required=True)
    consume.add_argument("--redis", default=None,
                         help="the Redis with the stream (default: $RECFORGE_REDIS_URL or "
                              "redis://127.0.0.1:6379/0)")
    consume.add_argument("--stream", default="recforge:events")
    consume.add_argument("--group", default="recforge")
    consume.add_argument("--consumer", default=None,
                         help="this consumer's name (stable across restarts; default HOST-PID)")
    consume.add_argument("--log", default=None, help="also append the events to this log")
    consume.add_argument("--batch", type=int, default=500)
    consume.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                         help="stop after this long without a new entry")
    consume.set_defaults(func=cmd_consume)
    for sub in (rebuild, compare, show, consume):
        _add_settings(sub)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """The feature settings and the genre source (the same for the online and rebuilt
    stores, so they agree)."""
    parser.add_argument("--dataset", default=None,
                        help="take item genres from this dataset (e.g. ml-100k)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--genres", default=None, metavar="FILE",
                        help="item genres from a JSON object {item: [genre, ...]}")
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--alpha", type=float, default=ALPHA)
    parser.add_argument("--session-gap", type=float, default=SESSION_GAP, metavar="SECONDS")
    parser.add_argument("--half-life", type=float, default=HALF_LIFE, metavar="SECONDS")


def _store_options(args: argparse.Namespace) -> dict[str, Any]:
    """open_store's keyword arguments from the command line."""
    if args.dataset and args.genres:
        raise InputError("give --dataset or --genres, not both")
    genres = None
    if args.genres:
        from recforge.serving.store import read_genres

        genres = read_genres(args.genres)
    elif args.dataset:
        from recforge.data.loading import load_dataset
        from recforge.serving.store import genres_of

        genres = genres_of(load_dataset(args.dataset, data_dir=args.data_dir))
    return {"item_genres": genres, "window": args.window, "alpha": args.alpha,
            "session_gap": args.session_gap, "half_life": args.half_life}


def cmd_rebuild(args: argparse.Namespace) -> int:
    from recforge.serving.events import EventLog
    from recforge.serving.store import open_store, replay

    options = _store_options(args)
    log_path = Path(args.log)
    if not log_path.is_file():
        raise InputError(f"--log {args.log}: no such file")
    with EventLog(log_path) as log, phase(f"replaying {len(log):,} events"):
        if args.store.startswith("sqlite:///"):
            applied = _rebuild_sqlite(args.store[len("sqlite:///"):], log, options)
        else:
            with open_store(args.store, **options) as store:
                _check_empty_redis(store, args.replace)
                applied = replay(log, store)
    console.print(f"{applied:,} events applied into {args.store}", soft_wrap=True)
    return 0


def _rebuild_sqlite(path: str, log: Any, options: dict[str, Any]) -> int:
    """Replay ``log`` into a new SQLite store at ``path``, built beside it and renamed into
    place when complete."""
    from recforge.io import atomic_path
    from recforge.serving.store import open_store, replay

    target = Path(path)
    for taken in (target, target.with_name(target.name + "-wal")):
        if taken.exists() or taken.is_symlink():
            raise InputError(f"--store {path}: exists; rebuild writes a fresh store (choose a "
                             "new path)")
    with atomic_path(target, owned=lambda p: False) as tmp, \
            open_store(f"sqlite:///{tmp}", **options) as store:
        return replay(log, store)


def _check_empty_redis(store: Any, replace: bool) -> None:
    """Refuse a Redis prefix holding anything but this rebuild's fresh settings key; with
    ``replace``, clear one that holds an earlier recforge store."""
    if store.is_empty():
        return
    if store.created:
        raise InputError(f"--store: the prefix {store.prefix!r} holds keys that are not a "
                         "recforge feature store; choose another prefix")
    if not replace:
        raise InputError(f"--store: the prefix {store.prefix!r} holds a feature store; rebuild "
                         "writes a fresh one (another prefix, or --replace to clear it)")
    store.clear()


def cmd_compare(args: argparse.Namespace) -> int:
    from recforge.serving.store import open_store

    options = _store_options(args)
    snapshots = []
    for url in args.stores:
        with open_store(url, **options) as store:
            snapshots.append(store.snapshot())
    differences = snapshot_differences(*snapshots)
    if not differences:
        console.print(f"the stores agree: {snapshots[0]['applied']:,} events, "
                      f"{len(snapshots[0]['users']):,} users, "
                      f"{len(snapshots[0]['popularity']):,} items", soft_wrap=True)
        return 0
    for line in differences[:20]:
        console.print(line, soft_wrap=True, markup=False)
    console.print(f"the stores differ ({len(differences):,} differences)", soft_wrap=True)
    return 1


def snapshot_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """One line per difference between two store snapshots (`FeatureStore.snapshot`)."""
    lines = []
    if a["applied"] != b["applied"]:
        lines.append(f"applied events: {a['applied']} vs {b['applied']}")
    for part, noun in (("users", "user"), ("popularity", "item")):
        for key in sorted(set(a[part]) | set(b[part])):
            left, right = a[part].get(key), b[part].get(key)
            if left != right:
                lines.append(f"{noun} {key!r}: {left} vs {right}")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from recforge.serving.store import open_store

    with open_store(args.store, **_store_options(args)) as store:
        features = [f.to_dict() for f in store.users(args.users)]
    console.print_json(json.dumps(features))
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    import redis

    from recforge.serving.events import EventLog
    from recforge.serving.store import open_store
    from recforge.serving.stream import StreamConsumer

    url = args.redis or os.environ.get("RECFORGE_REDIS_URL", "redis://127.0.0.1:6379/0")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    log = EventLog(args.log) if args.log else None
    try:
        with open_store(args.store, **_store_options(args)) as store:
            consumer = StreamConsumer(
                redis.Redis.from_url(url, decode_responses=True), store, stream=args.stream,
                group=args.group, consumer=args.consumer, log=log, batch=args.batch)
            stats = consumer.run(lambda: bool(stopping), idle_exit_s=args.idle_exit)
    except redis.RedisError as exc:
        raise InputError(f"--redis {url}: {exc}") from None
    finally:
        if log is not None:
            log.close()
    console.print(f"{stats.acknowledged:,} entries acknowledged, {stats.applied:,} events new, "
                  f"{stats.dead:,} dead-lettered", soft_wrap=True)
    return 0
