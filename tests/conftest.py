from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

    from ._stores import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _history_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliable-channel history goes to a directory of the test's own, never the checkout:
    apps and servers a test starts inherit ``GRIP_HISTORY_URL``."""
    directory = tmp_path_factory.mktemp("history")
    monkeypatch.setenv("GRIP_HISTORY_URL", f"sqlite:///{directory}/history.sqlite3")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private ``redis-server`` on 127.0.0.1 that saves nothing to disk, one for the whole
    run. It FAILS without the ``redis-server`` command: run ``scripts/install-redis``."""
    from ._stores import running_redis  # imported only by the tests that need Redis

    with running_redis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client of ``redis_server``, to look at the keys a store wrote."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()
