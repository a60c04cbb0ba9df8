"""Helpers for the history and presence store tests: a fake clock, a private redis-server
(``redis_server``, the session fixture in tests/conftest.py, runs one), the backends that the
contract tests run on, and the SQLite file's other users (another process's write lock, a
forked child).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from grip_asgi.history import HistoryStore
from grip_asgi.presence import PresenceStore
from grip_asgi.pushpin import _free_ports

__all__ = (
    "Backend",
    "FakeClock",
    "RedisServer",
    "assert_each_fails",
    "backend_fixture",
    "hide_the_redis_package",
    "in_forked_child",
    "redis_prefix",
    "running_redis",
    "unreachable_redis_url",
    "write_lock_held",
)

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)
_Store = TypeVar("_Store", HistoryStore, PresenceStore)


class FakeClock:
    """A clock that moves only when told, for expiry and age retention without waiting."""

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


_namespaces = itertools.count(1)


def unreachable_redis_url(password: str) -> str:
    """A URL with ``password`` for a redis-server that has stopped: nothing listens there."""
    with running_redis() as server:
        port = server.port
    return f"redis://:{password}@127.0.0.1:{port}/0"


def redis_prefix() -> str:
    """A key prefix no other store of the session uses."""
    return f"test-{uuid.uuid4().hex[:8]}-{next(_namespaces)}:"


class Backend(Generic[_Store]):
    """One backend of a store kind under test: memory, SQLite or Redis.

    A store kind's subclass opens its stores with :meth:`_open`, each on an empty namespace
    (a new SQLite file, a new Redis key prefix) or on a given one (:meth:`new_namespace`) to
    share it with another store object; :meth:`close_all` closes them all.
    """

    def __init__(self, name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.name = name
        # Redis keeps time by its server's clock; memory and SQLite by this fake one.
        self.clock = None if name == "redis" else FakeClock()
        self._request = request
        self._tmp_path = tmp_path
        self._files = itertools.count(1)
        self._stores: list[_Store] = []

    def __repr__(self) -> str:  # short: Hypothesis prints it with every failing example
        return f"<Backend {self.name}>"

    def new_namespace(self) -> str:
        return uuid.uuid4().hex

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store (Redis: sleep, with a margin)."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            time.sleep(seconds + 0.1)

    def close_all(self) -> None:
        for store in self._stores:
            store.sync.close()

    def _open(
        self,
        namespace: str | None,
        *,
        memory: Callable[[FakeClock], _Store],
        sqlite: Callable[[Path, FakeClock], _Store],
        redis: Callable[[str, str], _Store],
    ) -> _Store:
        """The store that ``memory(clock)``, ``sqlite(path, clock)`` or ``redis(url,
        key_prefix)`` makes, by this backend's name, on ``namespace`` (None: a new one)."""
        if self.clock is None:
            server: RedisServer = self._request.getfixturevalue("redis_server")
            store = redis(server.url, f"{namespace}:" if namespace else redis_prefix())
        elif self.name == "sqlite":
            path = self._tmp_path / f"{namespace or next(self._files)}.sqlite3"
            store = sqlite(path, self.clock)
        else:
            assert namespace is None, "memory stores share nothing"
            store = memory(self.clock)
        self._stores.append(store)
        return store


def backend_fixture(
    make: Callable[[str, pytest.FixtureRequest, Path], Backend[Any]],
    names: tuple[str, ...],
    *,
    name: str,
) -> Any:
    """A fixture ``name`` parametrized over the backends ``names``, each made by ``make`` and
    its stores closed after the test."""

    @pytest.fixture(name=name, params=names)
    def fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend[Any]]:
        made = make(request.param, request, tmp_path)
        try:
            yield made
        finally:
            made.close_all()

    return fixture


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the file, as another process would have, holding its write lock
    until the block ends or it commits (``conn.execute("COMMIT")``)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
        if other.in_transaction:
            other.execute("COMMIT")
    finally:
        other.close()


def in_forked_child(function: Callable[[], _T]) -> _T:
    """``function()``'s result, from a forked child process (gunicorn --preload forks its
    workers from a master that made the app, and its store, already)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_put_result, args=(function, results))
    child.start()
    try:
        result: _T = results.get(timeout=60)
        child.join(timeout=30)
        assert child.exitcode == 0
        return result
    finally:
        if child.is_alive():
            child.terminate()
            child.join(timeout=10)


def _put_result(function: Callable[[], Any], results: Any) -> None:
    results.put(function())


def assert_each_fails(
    calls: Iterable[Callable[[], object]],
    error: type[_E],
    *,
    match: str,
    cause: type[BaseException],
) -> list[_E]:
    """Each call must raise ``error``, its message matching ``match``, from a ``cause``
    (the backend's own exception); returns the errors."""
    errors = []
    for call in calls:
        with pytest.raises(error, match=match) as caught:
            call()
        assert isinstance(caught.value.__cause__, cause)
        errors.append(caught.value)
    return errors


def hide_the_redis_package(monkeypatch: pytest.MonkeyPatch, store_module: str) -> None:
    """Make the next import of ``store_module`` (a Redis store) fail as it would without the
    redis package installed."""
    for module in (store_module, "grip_asgi._redis"):  # imported again
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
