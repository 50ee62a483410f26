"""The online feature store: both backends, the feature rules, idempotence, one-round-trip
reads, concurrent SQLite writers, and identical state across backends."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import pytest

from recforge.errors import InputError, ParameterError
from recforge.serving.events import Event
from recforge.serving.store import open_store
from recforge.serving.store.base import UserFeatures

GENRES = {"i1": ["Action", "Comedy"], "i2": ["Drama"], "i3": [], "i4": ["Action"]}


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """A factory of fresh stores of one backend (closed after the test)."""
    opened = []

    def make(**settings):
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/features-{len(opened)}.db"
        else:
            url = f"{request.getfixturevalue('redis_url')}?prefix=" \
                  f"{request.getfixturevalue('redis_prefix')}{len(opened)}:"
        store = open_store(url, item_genres=settings.pop("item_genres", GENRES), **settings)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def click(i, user="u", item="i1", t=None, event="click"):
    return Event(f"e{i}", user, item, event, 1.0, 1000.0 + i if t is None else t)


def test_unknown_user_has_empty_features(make_store):
    store = make_store()
    assert store.user("nobody") == UserFeatures("nobody")
    assert store.popularity(["i1"], now=5.0).tolist() == [0.0]


def test_window_keeps_the_last_50_items_oldest_first(make_store):
    store = make_store()
    assert store.apply([click(i, item=f"x{i}") for i in range(60)]) == 60
    features = store.user("u")
    assert features.recent_items == tuple(f"x{i}" for i in range(10, 60))
    assert features.counts == {"click": 60}


def test_window_setting(make_store):
    store = make_store(window=3)
    store.apply([click(i, item=f"x{i}") for i in range(5)])
    assert store.user("u").recent_items == ("x2", "x3", "x4")


def test_genre_ema_is_exact(make_store):
    store = make_store()
    store.apply([click(0, item="i1"), click(1, item="i2"), click(2, item="i4"),
                 click(3, item="unknown"), click(4, item="i3")])
    # by hand: p <- 0.9 p + 0.1 [g in item]; an unknown item changes nothing, an item
    # without genres decays them all
    action = 0.9 * (0.9 * (0.9 * 0.0 + 0.1) + 0.0) + 0.1
    comedy = 0.9 * (0.9 * (0.9 * 0.0 + 0.1) + 0.0) + 0.0
    drama = 0.9 * (0.9 * 0.0 + 0.1) + 0.0
    prefs = store.user("u").genre_prefs
    assert prefs == {"Action": 0.9 * action, "Comedy": 0.9 * comedy, "Drama": 0.9 * drama}


def test_alpha_setting(make_store):
    store = make_store(alpha=0.5)
    store.apply([click(0, item="i2"), click(1, item="i1")])
    assert store.user("u").genre_prefs == {"Drama": 0.25, "Action": 0.5, "Comedy": 0.5}


def test_duplicates_are_ignored_within_and_across_calls(make_store):
    store = make_store()
    events = [click(0), click(1, item="i2")]
    assert store.apply(events + [click(0, item="i4")]) == 2
    before = store.snapshot()
    assert store.apply(events) == 0
    assert store.snapshot() == before
    assert store.applied_count() == 2
    assert store.user("u").recent_items == ("i1", "i2")


def test_counts_sessions_and_passive_events(make_store):
    store = make_store(session_gap=100.0)
    store.apply([click(0, t=0.0), click(1, t=50.0), click(2, t=149.0, event="exposure"),
                 click(3, t=151.0, event="play"), click(4, t=200.0), click(5, t=400.0)])
    f = store.user("u")
    assert f.counts == {"click": 4, "exposure": 1, "play": 1}
    # 0, 50 | 151, 200 | 400 (the exposure neither extends a session nor enters the window)
    assert (f.session_id, f.session_events, f.last_active) == (3, 1, 400.0)
    assert f.recent_items == ("i1",) * 5


def test_out_of_order_events_apply_in_arrival_order(make_store):
    store = make_store(session_gap=100.0)
    store.apply([click(0, item="i1", t=1000.0), click(1, item="i2", t=500.0)])
    f = store.user("u")
    assert f.recent_items == ("i1", "i2")
    assert (f.last_active, f.session_id, f.session_events) == (1000.0, 1, 2)


def test_popularity_decays_with_the_half_life(make_store):
    store = make_store(half_life=10.0)
    store.apply([click(0, user="a", item="i1", t=0.0), click(1, user="b", item="i1", t=10.0),
                 click(2, user="c", item="i1", t=5.0), click(3, user="c", item="i2", t=20.0),
                 click(4, user="c", item="i2", t=20.0, event="exposure")])
    scores = store.popularity(["i1", "i2", "none"], now=20.0)
    assert scores[0] == pytest.approx(2 ** -2 + 2 ** -1 + 2 ** -1.5, rel=1e-12)
    assert scores[1] == 1.0 and scores[2] == 0.0


def test_settings_are_validated_by_value(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    for name, bad in (("window", 0), ("alpha", 0.0), ("alpha", 1.5), ("session_gap", -1),
                      ("half_life", float("nan"))):
        with pytest.raises(ParameterError, match=f"^{name}: must be"):
            open_store(url, **{name: bad})
    with pytest.raises(InputError, match="expected sqlite:///PATH or redis"):
        open_store("mysql://x")


def test_a_store_refuses_other_settings_than_its_own(make_store):
    store = make_store(window=10)
    store.apply([click(0)])
    with pytest.raises(InputError, match="was built with settings"):
        open_store(store.url, window=20)
    again = open_store(store.url, window=10)
    assert again.user("u").counts == {"click": 1}
    again.close()


def test_sqlite_read_is_one_query(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/f.db", item_genres=GENRES)
    store.apply([click(i, user=f"u{i % 3}") for i in range(10)])
    statements = []
    store._db.set_trace_callback(statements.append)
    assert store.user("u1").counts == {"click": 3}
    assert len(statements) == 1
    statements.clear()
    assert [f.user_id for f in store.users(["u0", "u2", "zz"])] == ["u0", "u2", "zz"]
    assert len(statements) == 1


def test_redis_read_is_one_pipeline(redis_url, redis_prefix, monkeypatch):
    store = open_store(f"{redis_url}?prefix={redis_prefix}", item_genres=GENRES)
    store.apply([click(i) for i in range(5)])
    executed = []
    pipeline = store._redis.pipeline

    def counting(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute
        pipe.execute = lambda *a, **k: executed.append(1) or execute(*a, **k)
        return pipe

    monkeypatch.setattr(store._redis, "pipeline", counting)
    monkeypatch.setattr(store._redis, "execute_command",
                        lambda *a, **k: pytest.fail(f"a command outside the pipeline: {a}"))
    assert len(store.user("u").recent_items) == 5
    assert len(executed) == 1


def random_events(n: int, seed: int) -> list[Event]:
    """A seeded mixed stream: duplicates, out-of-order times, exposures, unknown items."""
    rng = random.Random(seed)
    events, t = [], 1_700_000_000.0
    for i in range(n):
        t += rng.choice([0.0, 1.5, 30.0, 2000.0, -500.0])
        event_id = f"e{rng.randrange(i + 1)}" if rng.random() < 0.05 else f"e{i}"
        events.append(Event(event_id, f"u{rng.randrange(20)}", f"i{rng.randrange(40)}",
                            rng.choice(["click", "click", "play", "exposure"]),
                            rng.random(), t))
    return events


def test_both_backends_hold_identical_state(tmp_path, redis_url, redis_prefix):
    genres = {f"i{j}": [f"g{k}" for k in range(6) if (j >> k) & 1] for j in range(35)}
    events = random_events(3000, seed=7)
    sqlite = open_store(f"sqlite:///{tmp_path}/f.db", item_genres=genres, window=7)
    redis = open_store(f"{redis_url}?prefix={redis_prefix}", item_genres=genres, window=7)
    for start in range(0, len(events), 250):
        assert sqlite.apply(events[start:start + 250]) == redis.apply(events[start:start + 250])
    a, b = sqlite.snapshot(), redis.snapshot()
    assert a["applied"] == len({e.event_id for e in events})
    assert a == b
    users = [f"u{i}" for i in range(22)]
    assert sqlite.users(users) == redis.users(users)
    items = [f"i{j}" for j in range(42)]
    assert sqlite.popularity(items, now=1.8e9).tolist() == redis.popularity(items,
                                                                            now=1.8e9).tolist()


def _writer(path: str, worker: int, n: int) -> None:
    store = open_store(f"sqlite:///{path}", item_genres=GENRES)
    for start in range(0, n, 10):
        store.apply([Event(f"w{worker}-{i}", f"u{i % 5}", "i1", "click", 1.0, float(i))
                     for i in range(start, start + 10)])
    store.close()


def test_sqlite_takes_several_processes_writing_at_once(tmp_path):
    path = str(tmp_path / "f.db")
    open_store(f"sqlite:///{path}", item_genres=GENRES).close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(path, w, 300)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    store = open_store(f"sqlite:///{path}", item_genres=GENRES)
    assert store.applied_count() == 900
    assert sum(f.counts["click"] for f in store.users([f"u{i}" for i in range(5)])) == 900


def test_sqlite_store_rejects_a_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "f.db"
    bad.write_text("hello, this is not SQLite" * 100)
    with pytest.raises(InputError, match="not a usable SQLite database"):
        open_store(f"sqlite:///{bad}")
    with pytest.raises(InputError, match="not a file in an existing folder"):
        open_store(f"sqlite:///{tmp_path}/missing/f.db")
    assert Path(bad).read_text().startswith("hello")


def test_one_sqlite_store_serves_several_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(f"sqlite:///{tmp_path}/f.db", item_genres=GENRES)

    def work(worker: int) -> None:
        for i in range(100):
            store.apply([Event(f"t{worker}-{i}", f"u{worker}", "i1", "click", 1.0, float(i))])
            assert store.user(f"u{worker}").counts["click"] == i + 1
            store.popularity(["i1"])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert store.applied_count() == 400
