"""``recforge features rebuild|show``: the rebuilt store equals the online one (SQLite and
Redis targets), fresh targets only, genres from a file or a dataset, one-line errors."""

from __future__ import annotations

import json

import pytest

from recforge.cli import main
from recforge.serving.events import Event, EventLog
from recforge.serving.store import genres_of, ingest, open_store

GENRES = {"1": ["Animation", "Comedy"], "2": ["Drama"], "4": ["War", "Western"]}


@pytest.fixture
def online(tmp_path):
    """An event log and the online SQLite store it fed (window 5, half-life 60 s)."""
    log = EventLog(tmp_path / "events.db")
    store = open_store(f"sqlite:///{tmp_path}/online.db", item_genres=GENRES, window=5,
                       half_life=60.0)
    events = [Event(f"e{i}", f"u{i % 3}", str(1 + i % 4), "exposure" if i % 7 == 0 else "click",
                    1.0, 100.0 * i) for i in range(200)]
    for start in range(0, 200, 20):
        ingest(events[start:start + 20], store, log)
    (tmp_path / "genres.json").write_text(json.dumps(GENRES))
    yield log.path, store
    log.close()
    store.close()


SETTINGS = ["--window", "5", "--half-life", "60"]


def test_rebuild_into_sqlite_equals_the_online_state(online, tmp_path, capsys):
    log, store = online
    target = tmp_path / "rebuilt.db"
    assert main(["features", "rebuild", "--log", str(log), "--store", f"sqlite:///{target}",
                 "--genres", str(tmp_path / "genres.json"), *SETTINGS]) == 0
    assert "200 events applied" in capsys.readouterr().out
    with open_store(f"sqlite:///{target}", item_genres=GENRES, window=5,
                    half_life=60.0) as rebuilt:
        assert rebuilt.snapshot() == store.snapshot()
    assert not (tmp_path / "rebuilt.db-wal").exists()
    assert main(["features", "compare", store.url, f"sqlite:///{target}", *SETTINGS]) == 0
    assert "the stores agree: 200 events, 3 users, 4 items" in capsys.readouterr().out
    store.apply([Event("late", "u1", "2", "click", 1.0, 20_000.0)])
    assert main(["features", "compare", store.url, f"sqlite:///{target}", *SETTINGS]) == 1
    out = capsys.readouterr().out
    assert "applied events: 201 vs 200" in out and "user 'u1':" in out and "item '2':" in out
    # a rebuild never overwrites: the target must be new
    assert main(["features", "rebuild", "--log", str(log), "--store", f"sqlite:///{target}",
                 *SETTINGS]) == 2
    assert "exists; rebuild writes a fresh store" in capsys.readouterr().err


def test_rebuild_into_redis_equals_the_online_state(online, tmp_path, redis_url, redis_prefix,
                                                    capsys):
    log, store = online
    url = f"{redis_url}?prefix={redis_prefix}"
    args = ["features", "rebuild", "--log", str(log), "--store", url, "--genres",
            str(tmp_path / "genres.json"), *SETTINGS]
    assert main(args) == 0
    with open_store(url, item_genres=GENRES, window=5, half_life=60.0) as rebuilt:
        assert rebuilt.snapshot() == store.snapshot()
    capsys.readouterr()
    assert main(args) == 2
    assert "holds a feature store" in capsys.readouterr().err
    assert main([*args, "--replace"]) == 0
    with open_store(url, item_genres=GENRES, window=5, half_life=60.0) as rebuilt:
        assert rebuilt.snapshot() == store.snapshot()


def test_rebuild_refuses_a_prefix_holding_other_keys(online, redis_url, redis_prefix, capsys):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set(redis_prefix + "someone-else", "keep me")
    log, _ = online
    assert main(["features", "rebuild", "--log", str(log), "--store",
                 f"{redis_url}?prefix={redis_prefix}", "--replace"]) == 2
    assert "not a recforge feature store" in capsys.readouterr().err
    assert client.get(redis_prefix + "someone-else") == b"keep me"


def test_rebuild_with_other_genres_differs(online, tmp_path):
    log, store = online
    target = tmp_path / "nogenres.db"
    assert main(["features", "rebuild", "--log", str(log), "--store", f"sqlite:///{target}",
                 *SETTINGS]) == 0
    with open_store(f"sqlite:///{target}", window=5, half_life=60.0) as rebuilt:
        assert rebuilt.user("u1").genre_prefs == {}
        assert store.user("u1").genre_prefs != {}


def test_show_prints_features(online, capsys):
    _, store = online
    assert main(["features", "show", "u1", "nobody", "--store", store.url, *SETTINGS]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[0] == store.user("u1").to_dict()
    assert shown[1]["recent_items"] == [] and shown[1]["session_id"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--alpha", "0"], "alpha: must be a finite number in (0, 1]"),
    (["--window", "0"], "window: must be an integer in [1, 10000]"),
    (["--genres", "G", "--dataset", "ml-100k"], "give --dataset or --genres, not both"),
])
def test_bad_settings_are_one_line_errors(online, tmp_path, capsys, args, message):
    log, _ = online
    code = main(["features", "rebuild", "--log", str(log), "--store",
                 f"sqlite:///{tmp_path}/x.db", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_missing_log_and_bad_genres_file(tmp_path, capsys):
    assert main(["features", "rebuild", "--log", str(tmp_path / "none.db"), "--store",
                 f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "--log" in capsys.readouterr().err
    (tmp_path / "g.json").write_text('{"1": "Drama"}')
    EventLog(tmp_path / "e.db").close()
    assert main(["features", "rebuild", "--log", str(tmp_path / "e.db"), "--store",
                 f"sqlite:///{tmp_path}/x.db", "--genres", str(tmp_path / "g.json")]) == 2
    assert "mapping each item id to a list of genre names" in capsys.readouterr().err


def test_genres_from_a_dataset(fake_ml100k, tmp_path, monkeypatch):
    from recforge.data.loading import load_dataset

    monkeypatch.setattr("recforge.data.movielens.resolve_dataset", lambda *args: fake_ml100k)
    genres = genres_of(load_dataset("ml-100k", download=False))
    assert genres["1"] == ("Animation", "Comedy") and genres["4"] == ("War", "Western")
    log = EventLog(tmp_path / "e.db")
    log.append([Event("a", "u", "4", timestamp=1.0)])
    assert main(["features", "rebuild", "--log", str(log.path), "--store",
                 f"sqlite:///{tmp_path}/x.db", "--dataset", "ml-100k"]) == 0
    with open_store(f"sqlite:///{tmp_path}/x.db") as store:
        assert store.user("u").genre_prefs == {"War": 0.1, "Western": 0.1}


@pytest.mark.realdata
def test_genres_of_movielens_100k(ml100k_dir):
    from recforge.data.movielens import read_ml100k

    genres = genres_of(read_ml100k(ml100k_dir))
    assert len(genres) == 1682
    assert genres["1"] == ("Animation", "Children's", "Comedy")
