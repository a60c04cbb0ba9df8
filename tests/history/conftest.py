"""Fixtures for the history store tests, each backend opened fresh.

- ``backend``: parametrized over memory, SQLite and Redis (``shared_backend``: SQLite and
  Redis, whose stores can share one history; ``clocked_backend``: memory and SQLite;
  ``redis_backend``: Redis alone). ``backend.open(retention)`` opens a store on an empty
  namespace (a new SQLite file, a new Redis key prefix); ``backend.pass_time(seconds)``
  moves the store's clock on (a fake clock for memory and SQLite; Redis uses its server's
  clock, so it sleeps). Redis stores use the run's ``redis_server`` (tests/conftest.py).
"""

from __future__ import annotations

from grip_asgi.history import HistoryStore, MemoryHistory, RedisHistory, Retention, SQLiteHistory

from .. import _stores
from .._stores import FakeClock, RedisServer, backend_fixture, redis_prefix, running_redis

# Other tests import these from here.
__all__ = ("Backend", "FakeClock", "RedisServer", "redis_prefix", "running_redis")

BACKENDS = ("memory", "sqlite", "redis")
SHARED_BACKENDS = ("sqlite", "redis")  # several store objects (or processes) on one history


class Backend(_stores.Backend[HistoryStore]):
    def open(
        self, retention: Retention | None = None, *, namespace: str | None = None
    ) -> HistoryStore:
        """A store with ``retention`` (unbounded when None) on a fresh namespace, or on the
        given one (``new_namespace()``) to share it with another store object."""
        keep = retention or Retention(max_events=None, max_age=None)
        return self._open(
            namespace,
            memory=lambda clock: MemoryHistory(keep, clock=clock),
            sqlite=lambda path, clock: SQLiteHistory(path, retention=keep, clock=clock),
            redis=lambda url, prefix: RedisHistory(url, retention=keep, key_prefix=prefix),
        )


backend = backend_fixture(Backend, BACKENDS, name="backend")
shared_backend = backend_fixture(Backend, SHARED_BACKENDS, name="shared_backend")
# The backends whose clock a test can move.
clocked_backend = backend_fixture(Backend, ("memory", "sqlite"), name="clocked_backend")
redis_backend = backend_fixture(Backend, ("redis",), name="redis_backend")
