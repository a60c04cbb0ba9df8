"""Fixtures for the history store tests: a real redis-server, and each backend opened fresh.

- ``redis_server`` (session): a private ``redis-server`` on 127.0.0.1 with nothing saved to
  disk. It FAILS without the ``redis-server`` command: run ``scripts/install-redis``.
- ``backend``: parametrized over memory, SQLite and Redis (``shared_backend``: SQLite and
  Redis, whose stores can share one history; ``clocked_backend``: memory and SQLite;
  ``redis_backend``: Redis alone). ``backend.open(retention)`` opens
  a store on an empty namespace (a new SQLite file, a new Redis key prefix);
  ``backend.advance(seconds)`` moves the store's clock on (a fake clock for memory and
  SQLite; Redis uses its server's clock, so it sleeps).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grip_asgi.history import HistoryStore, MemoryHistory, Retention, SQLiteHistory
from grip_asgi.pushpin import _free_ports

BACKENDS = ("memory", "sqlite", "redis")
SHARED_BACKENDS = ("sqlite", "redis")  # several store objects (or processes) on one history


class FakeClock:
    """A clock that moves only when told, for age retention without waiting."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RedisServer:
    """A private redis-server on 127.0.0.1 that saves nothing to disk."""

    def __init__(self) -> None:
        self.port = 0
        self._dir = tempfile.mkdtemp(prefix="grip-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        path = Path(self._dir, "redis.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: run scripts/install-redis", pytrace=False)
        # A free port can be taken between the pick and the bind: pick again then.
        for _ in range(3):
            self.port = _free_ports(1)[0]
            self._process = subprocess.Popen(
                [
                    "redis-server",
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--logfile", "redis.log",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_ready(deadline=time.monotonic() + 15):
                return
            self.stop()
        pytest.fail(f"redis-server did not start:\n{self.log}", pytrace=False)

    def _wait_ready(self, deadline: float) -> bool:
        assert self._process is not None
        while time.monotonic() < deadline and self._process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


_namespaces = itertools.count(1)


def redis_prefix() -> str:
    """A key prefix no other store of the session uses."""
    return f"test-{uuid.uuid4().hex[:8]}-{next(_namespaces)}:"


@dataclass(repr=False)
class Backend:
    name: str
    _open: Callable[[Retention, str | None], HistoryStore]
    clock: FakeClock | None
    _stores: list[HistoryStore] = field(default_factory=list)

    def open(
        self, retention: Retention | None = None, *, namespace: str | None = None
    ) -> HistoryStore:
        """A store with ``retention`` (unbounded when None) on a fresh namespace, or on the
        given one (``new_namespace()``) to share it with another store object."""
        store = self._open(retention or Retention(max_events=None, max_age=None), namespace)
        self._stores.append(store)
        return store

    def new_namespace(self) -> str:
        return uuid.uuid4().hex

    def __repr__(self) -> str:  # short: Hypothesis prints it with every failing example
        return f"<Backend {self.name}>"

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            # Redis dates events by its own clock: let it move on, with a margin.
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


@pytest.fixture(params=("redis",))
def redis_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    files = itertools.count(1)
    made: Backend
    if name == "memory":
        clock = FakeClock()

        def open_memory(retention: Retention, namespace: str | None) -> HistoryStore:
            assert namespace is None, "memory stores share nothing"
            return MemoryHistory(retention, clock=clock)

        made = Backend(name, open_memory, clock)
    elif name == "sqlite":
        clock = FakeClock()

        def open_sqlite(retention: Retention, namespace: str | None) -> HistoryStore:
            path = tmp_path / f"{namespace or next(files)}.sqlite3"
            return SQLiteHistory(path, retention=retention, clock=clock)

        made = Backend(name, open_sqlite, clock)
    else:
        from grip_asgi.history.redis import RedisHistory

        server: RedisServer = request.getfixturevalue("redis_server")

        def open_redis(retention: Retention, namespace: str | None) -> HistoryStore:
            prefix = f"{namespace}:" if namespace else redis_prefix()
            return RedisHistory(server.url, retention=retention, key_prefix=prefix)

        made = Backend(name, open_redis, None)
    try:
        yield made
    finally:
        made.close_all()
