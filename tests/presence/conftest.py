"""Fixtures for the presence store tests, on the history tests' real redis-server.

- ``redis_server`` (session, from tests/history/conftest.py): a private ``redis-server`` on
  127.0.0.1. It FAILS without the ``redis-server`` command: run ``scripts/install-redis``.
- ``backend``: parametrized over memory, SQLite and Redis (``shared_backend``: SQLite and
  Redis, whose store objects can share members; ``clocked_backend``: memory and SQLite).
  ``backend.open()`` opens a store on an empty namespace (a new SQLite file, a new Redis
  key prefix), or on a given one; ``backend.pass_time(seconds)`` lets that much time pass
  for the store (a fake clock for memory and SQLite; Redis uses its server's clock, so it
  sleeps). ``backend.short_ttl`` is a ttl the tests let run out: seconds of fake time, or
  0.5 s of real time for Redis (short, yet long enough for the calls a test makes before it
  lets the ttl run out, on a busy machine).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grip_asgi.presence import MemoryPresence, PresenceStore, SQLitePresence

from ..history.conftest import FakeClock, RedisServer, redis_prefix, redis_server

__all__ = ("Backend", "FakeClock", "RedisServer", "redis_prefix", "redis_server")

BACKENDS = ("memory", "sqlite", "redis")
SHARED_BACKENDS = ("sqlite", "redis")


@dataclass(repr=False)
class Backend:
    name: str
    _open: Callable[[str | None], PresenceStore]
    clock: FakeClock | None
    short_ttl: float
    _stores: list[PresenceStore] = field(default_factory=list)

    def open(self, *, namespace: str | None = None) -> PresenceStore:
        """A store on a fresh namespace, or on the given one (``new_namespace()``) to share
        its members with another store object."""
        store = self._open(namespace)
        self._stores.append(store)
        return store

    def new_namespace(self) -> str:
        return uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    def pass_time(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            # Redis times members by its own clock: let it move on, with a margin.
            time.sleep(seconds + 0.1)

    def close_all(self) -> None:
        for store in self._stores:
            store.sync.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=("memory", "sqlite"))
def clocked_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The backends whose clock a test can move (memory, SQLite)."""
    yield from _backend(request, tmp_path)


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    files = itertools.count(1)
    made: Backend
    if name == "memory":
        clock = FakeClock()

        def open_memory(namespace: str | None) -> PresenceStore:
            assert namespace is None, "memory stores share nothing"
            return MemoryPresence(clock=clock)

        made = Backend(name, open_memory, clock, short_ttl=10.0)
    elif name == "sqlite":
        clock = FakeClock()

        def open_sqlite(namespace: str | None) -> PresenceStore:
            path = tmp_path / f"{namespace or next(files)}.sqlite3"
            return SQLitePresence(path, clock=clock)

        made = Backend(name, open_sqlite, clock, short_ttl=10.0)
    else:
        from grip_asgi.presence.redis import RedisPresence

        server: RedisServer = request.getfixturevalue("redis_server")

        def open_redis(namespace: str | None) -> PresenceStore:
            prefix = f"{namespace}:" if namespace else redis_prefix()
            return RedisPresence(server.url, key_prefix=prefix)

        made = Backend(name, open_redis, None, short_ttl=0.5)
    try:
        yield made
    finally:
        made.close_all()
