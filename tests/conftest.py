"""Shared pytest fixtures for the recforge test suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens-100K folder, ``$RECFORGE_DATA_DIR/ml-100k``.

    Skips when the data is missing, except on CI (``CI=true``), where missing data fails.
    """
    base = os.environ.get("RECFORGE_DATA_DIR", "")
    folder = Path(base) / "ml-100k" if base else None
    if folder is not None and (folder / "u.data").is_file():
        return folder
    where = f"{folder}" if folder is not None else "RECFORGE_DATA_DIR (not set)"
    message = f"MovieLens-100K not found: expected u.data under {where}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
FAKE_ML100K_RATINGS = (
    "1\t1\t5\t874965758", "1\t2\t3\t876893171", "2\t1\t4\t888550871", "2\t3\t2\t888551000",
    "3\t2\t1\t889237269", "3\t1\t4\t889237300", "1\t3\t4\t878542960", "2\t2\t5\t888552000",
)


def _genre_flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


def write_fake_ml100k(folder: Path) -> Path:
    """A tiny ML-100K folder in the real formats: 3 users, 4 movies (one unrated), 8 ratings.

    Every fold ``uX`` has the first 6 ratings as ``.base`` and the last 2 as ``.test``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://imdb/toy|{_genre_flags('Animation', 'Comedy')}",
        f"2|Misérables, Les (1995)|15-Dec-1995||http://imdb/mis|{_genre_flags('Drama')}",
        f"3|unknown||||{_genre_flags('unknown')}",
        f"4|Unrated Film (1998)|01-Jan-1998||http://imdb/x|{_genre_flags('War', 'Western')}",
    ]
    files = {
        "u.data": FAKE_ML100K_RATINGS,
        "u.item": items,
        "u.user": ["1|24|M|technician|85711", "2|53|F|other|01002", "3|17|M|student|T8H1N"],
        "u.genre": [f"{g}|{i}" for i, g in enumerate(ML100K_GENRES)] + [""],
        "u.occupation": ["other", "student", "technician"],
        "u.info": ["3 users", "4 items", "8 ratings"],
    }
    for fold in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        files[f"{fold}.base"] = FAKE_ML100K_RATINGS[:6]
        files[f"{fold}.test"] = FAKE_ML100K_RATINGS[6:]
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    return folder


@pytest.fixture
def fake_ml100k(tmp_path: Path) -> Path:
    """A tiny ML-100K folder (see `write_fake_ml100k`) under ``tmp_path/fake/ml-100k``."""
    return write_fake_ml100k(tmp_path / "fake" / "ml-100k")


@pytest.fixture
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``RECFORGE_DATA_DIR``, an empty cache under ``tmp_path/cache``, no download URL."""
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    monkeypatch.delenv("RECFORGE_DOWNLOAD_URL", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(cache))
    return cache


def require_module(name: str):
    """Import an optional reference library (e.g. ``surprise``): skip when it is missing,
    except on CI (``CI=true``), where `make test` installs it and a missing one fails."""
    if os.environ.get("CI", "").lower() == "true":
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name)

REDIS_URL = os.environ.get("RECFORGE_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; skips when the server is unreachable, except on CI (``CI=true``),
    where `.ci/run` starts one and an unreachable server fails."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable on CI: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); start redis-server or set "
                    "RECFORGE_REDIS_URL")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix for one test; its keys are deleted afterwards."""
    import redis

    prefix = f"rftest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client: Any = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
