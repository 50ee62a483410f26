"""Fixtures of the serving tests: a real Redis server (``RECFORGE_REDIS_URL``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

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
