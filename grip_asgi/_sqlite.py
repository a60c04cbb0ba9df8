"""The SQLite connection machinery of the SQLite history and presence stores."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, Protocol, TypeVar

from ._stores import UnavailableError

__all__ = ("Database", "OnDatabaseThreads")

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Connection(sqlite3.Connection):
    """A connection that a weak reference can point to (the base class allows none)."""


class Database:
    """Connections to one SQLite file: one per thread, in WAL mode, made again after fork().

    ``schema`` runs once (idempotent statements, one BEGIN IMMEDIATE transaction, so
    processes that start at the same time on a new file do not trip over each other) on the
    first connection. sqlite3 errors become ``error`` (the store kind's unavailable error),
    with messages that name the ``kind`` of store ("history", "presence").
    """

    def __init__(
        self,
        path: str,
        schema: tuple[str, ...],
        busy_timeout: float,
        *,
        kind: str,
        error: type[UnavailableError],
    ) -> None:
        if busy_timeout <= 0:
            raise ValueError(
                f"busy_timeout must be a positive number of seconds, got {busy_timeout!r}"
            )
        self.path = path
        self._schema = schema
        self._busy_timeout = busy_timeout
        self._kind = kind
        self._error = error
        self._lock = threading.Lock()
        self._closed = False
        self._schema_ready = False
        self._reset_for_process()

    def _reset_for_process(self) -> None:
        # A connection must not cross fork() (gunicorn --preload): a child starts afresh.
        self._pid = os.getpid()
        self._local = threading.local()
        # Every connection made, to close them all in close(); one whose thread ended is
        # dropped with that thread's local storage and closed by the garbage collector.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._executor: ThreadPoolExecutor | None = None

    async def call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``function`` on the async face's threads (each keeps its own connection), so
        the event loop never waits on the disk."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._get_executor(), functools.partial(function, *args, **kwargs)
        )

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, for statements that each stand alone."""
        conn = self._connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A transaction, committed at the end of the block, rolled back on any exception."""
        with self.connection() as conn:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def check_open(self) -> None:
        """Raise the unavailable error when closed (for a call that needs no connection)."""
        with self._lock:
            self._check_open()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            connections = list(self._connections)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for conn in connections:
            conn.close()

    def _get_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_usable()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    4, thread_name_prefix=f"grip-{self._kind}-sqlite"
                )
            return self._executor

    def _connection(self) -> sqlite3.Connection:
        with self._lock:
            self._check_usable()
            conn: _Connection | None = getattr(self._local, "conn", None)
            if conn is not None:
                return conn
        conn = self._connect()
        with self._lock:
            self._local.conn = conn
            self._connections.add(conn)
        return conn

    def _connect(self) -> _Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit: the transactions here are explicit
                check_same_thread=False,  # used by one thread, but close() may come from another
                factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            self._use_wal(conn)
            # synchronous=NORMAL: a commit survives the process crashing (not a power cut).
            conn.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                conn.execute("BEGIN IMMEDIATE")
                for statement in self._schema:
                    conn.execute(statement)
                conn.execute("COMMIT")
                self._schema_ready = True
        except sqlite3.Error as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL: readers never block the writer, nor the writer readers.

        The mode is kept in the file, so only its first users switch. Switching takes a lock
        that SQLite does not wait for (its busy timeout does not apply), so connections
        racing on a new file wait here instead, within the same timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.005)

    def _unavailable(self, exc: sqlite3.Error) -> UnavailableError:
        return self._error(
            f"the SQLite {self._kind} store {self.path!r} is unavailable: {exc}",
            store=f"sqlite:{self.path}",
        )

    def _check_usable(self) -> None:
        """(Under the lock.) Raise when closed; in a forked child, start afresh."""
        self._check_open()
        if self._pid != os.getpid():
            self._reset_for_process()

    def _check_open(self) -> None:
        if self._closed:
            raise self._error(
                f"the SQLite {self._kind} store {self.path!r} is closed",
                store=f"sqlite:{self.path}",
            )


class _OnDatabase(Protocol):
    @property
    def db(self) -> Database: ...


class OnDatabaseThreads:
    """For a SyncBacked store whose blocking face keeps its file in ``db``: its ``path``,
    and an async face that runs each call on the database's threads."""

    sync: _OnDatabase

    @property
    def path(self) -> str:
        """The database file."""
        return self.sync.db.path

    async def _call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self.sync.db.call(function, *args, **kwargs)
