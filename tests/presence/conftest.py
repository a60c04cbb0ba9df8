"""Fixtures for the presence store tests, each backend opened fresh.

- ``backend``: parametrized over memory, SQLite and Redis (``shared_backend``: SQLite and
  Redis, whose store objects can share members; ``clocked_backend``: memory and SQLite).
  ``backend.open()`` opens a store on an empty namespace (a new SQLite file, a new Redis
  key prefix), or on a given one; ``backend.pass_time(seconds)`` lets that much time pass
  for the store (a fake clock for memory and SQLite; Redis uses its server's clock, so it
  sleeps). ``backend.short_ttl`` is a ttl the tests let run out: seconds of fake time, or
  0.5 s of real time for Redis (short, yet long enough for the calls a test makes before it
  lets the ttl run out, on a busy machine). Redis stores use the run's ``redis_server``
  (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grip_asgi.presence import MemoryPresence, PresenceStore, RedisPresence, SQLitePresence

from .. import _stores
from .._stores import backend_fixture

BACKENDS = ("memory", "sqlite", "redis")
SHARED_BACKENDS = ("sqlite", "redis")


class Backend(_stores.Backend[PresenceStore]):
    def __init__(self, name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        super().__init__(name, request, tmp_path)
        self.short_ttl = 0.5 if self.clock is None else 10.0

    def open(self, *, namespace: str | None = None) -> PresenceStore:
        """A store on a fresh namespace, or on the given one (``new_namespace()``) to share
        its members with another store object."""
        return self._open(
            namespace,
            memory=lambda clock: MemoryPresence(clock=clock),
            sqlite=lambda path, clock: SQLitePresence(path, clock=clock),
            redis=lambda url, prefix: RedisPresence(url, key_prefix=prefix),
        )


backend = backend_fixture(Backend, BACKENDS, name="backend")
shared_backend = backend_fixture(Backend, SHARED_BACKENDS, name="shared_backend")
# The backends whose clock a test can move.
clocked_backend = backend_fixture(Backend, ("memory", "sqlite"), name="clocked_backend")
