"""The SQLite presence store: one file, shared by every worker process of one host."""

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
from typing import Any, ParamSpec, TypeVar

from ._base import (
    Member,
    PresenceUnavailableError,
    SyncBackedPresence,
    SyncPresence,
    check_join,
    check_key,
    check_presence_channel,
    check_ttl,
    decode_info,
)

__all__ = ("SQLitePresence",)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# One row per member. The table can share a file with the channel history's tables.
_SCHEMA = """CREATE TABLE IF NOT EXISTS grip_presence (
    channel TEXT NOT NULL,
    client TEXT NOT NULL,
    user TEXT,
    info TEXT NOT NULL,
    joined REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (channel, client)
) WITHOUT ROWID"""

_COLUMNS = "client, user, info, joined, expires"
_GET = "SELECT joined, expires FROM grip_presence WHERE channel = ? AND client = ?"
_UPSERT = f"""INSERT INTO grip_presence (channel, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (channel, client) DO UPDATE SET user = excluded.user, info = excluded.info,
        joined = excluded.joined, expires = excluded.expires"""
_TOUCH = """UPDATE grip_presence SET expires = ?
    WHERE channel = ? AND client = ? AND expires > ?"""
_LIVE_ONE = f"""SELECT {_COLUMNS} FROM grip_presence
    WHERE channel = ? AND client = ? AND expires > ?"""
_DELETE_ONE = "DELETE FROM grip_presence WHERE channel = ? AND client = ?"
_LIVE = f"""SELECT {_COLUMNS} FROM grip_presence
    WHERE channel = ? AND expires > ? ORDER BY joined, client"""
_EXPIRED = f"""SELECT {_COLUMNS} FROM grip_presence
    WHERE channel = ? AND expires <= ? ORDER BY joined, client"""
_DELETE_EXPIRED = "DELETE FROM grip_presence WHERE channel = ? AND expires <= ?"


def _member(channel: str, row: tuple[Any, ...]) -> Member:
    client, user, info, joined, expires = row
    return Member(channel, client, user, decode_info(info), joined, expires)


class _Connection(sqlite3.Connection):
    """A connection that a weak reference can point to (the base class allows none)."""


class _Database:
    """Connections to one SQLite file: one per thread, in WAL mode, made again after fork().

    ``schema`` runs once (idempotent statements, one BEGIN IMMEDIATE transaction) on the
    first connection. sqlite3 errors become :class:`PresenceUnavailableError`.
    """

    def __init__(self, path: str, schema: tuple[str, ...], busy_timeout: float) -> None:
        self.path = path
        self._schema = schema
        self._busy_timeout = busy_timeout
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

    def executor(self) -> ThreadPoolExecutor:
        """The threads the async face runs on (each keeps its own connection)."""
        with self._lock:
            self._check_usable()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(4, thread_name_prefix="grip-presence-sqlite")
            return self._executor

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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            connections = list(self._connections)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for conn in connections:
            conn.close()

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
        # The mode is kept in the file, so only its first users switch. Switching takes a
        # lock that SQLite's busy timeout does not cover: racing connections wait here.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.005)

    def _unavailable(self, exc: sqlite3.Error) -> PresenceUnavailableError:
        return PresenceUnavailableError(
            f"the SQLite presence store {self.path!r} is unavailable: {exc}",
            store=f"sqlite:{self.path}",
        )

    def _check_usable(self) -> None:
        """(Under the lock.) Raise when closed; in a forked child, start afresh."""
        if self._closed:
            raise PresenceUnavailableError(
                f"the SQLite presence store {self.path!r} is closed", store=f"sqlite:{self.path}"
            )
        if self._pid != os.getpid():
            self._reset_for_process()


class _SyncSQLitePresence(SyncPresence):
    def __init__(self, path: str, busy_timeout: float, clock: Callable[[], float]) -> None:
        self.db = _Database(path, (_SCHEMA,), busy_timeout)
        self._clock = clock

    def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        info_text = check_join(channel, client, ttl, user, info)
        with self.db.transaction() as conn:
            now = self._clock()
            row = conn.execute(_GET, (channel, client)).fetchone()
            live = row is not None and row[1] > now
            joined = row[0] if live else now
            conn.execute(_UPSERT, (channel, client, user, info_text, joined, now + ttl))
        return not live

    def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        check_key(channel, client)
        check_ttl(ttl)
        with self.db.connection() as conn:  # one statement: atomic by itself
            now = self._clock()
            return conn.execute(_TOUCH, (now + ttl, channel, client, now)).rowcount == 1

    def leave(self, channel: str, client: str) -> Member | None:
        check_key(channel, client)
        with self.db.transaction() as conn:
            row = conn.execute(_LIVE_ONE, (channel, client, self._clock())).fetchone()
            if row is None:
                return None  # an expired member is expire()'s to report
            conn.execute(_DELETE_ONE, (channel, client))
        return _member(channel, row)

    def members(self, channel: str) -> list[Member]:
        check_presence_channel(channel)
        with self.db.connection() as conn:
            rows = conn.execute(_LIVE, (channel, self._clock())).fetchall()
        return [_member(channel, row) for row in rows]

    def expire(self, channel: str) -> list[Member]:
        check_presence_channel(channel)
        # BEGIN IMMEDIATE takes the write lock before the SELECT: no other process can take
        # or change these rows between it and the DELETE.
        with self.db.transaction() as conn:
            now = self._clock()
            rows = conn.execute(_EXPIRED, (channel, now)).fetchall()
            if rows:
                conn.execute(_DELETE_EXPIRED, (channel, now))
        return [_member(channel, row) for row in rows]

    def close(self) -> None:
        self.db.close()


class SQLitePresence(SyncBackedPresence):
    """Presence in a SQLite file, shared by every process and thread of one host.

    Fit for ``uvicorn --workers N`` and gunicorn: each change is one short transaction, so
    a join, leave or expiry is reported once whichever worker sees it. The async face runs
    each call on a small thread pool, so the event loop never waits on the disk. The file
    and its table (``grip_presence``) are made on first use; the history's file will do.

    Args:
        path: the database file (relative to the working directory, or absolute).
        busy_timeout: seconds a call waits for another process's write before it raises
            :class:`PresenceUnavailableError`.
        clock: returns the current Unix time; tests pass a fake one to expire members
            without waiting.
    """

    sync: _SyncSQLitePresence

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if busy_timeout <= 0:
            raise ValueError(
                f"busy_timeout must be a positive number of seconds, got {busy_timeout!r}"
            )
        super().__init__(_SyncSQLitePresence(os.fspath(path), busy_timeout, clock))

    @property
    def path(self) -> str:
        """The database file."""
        return self.sync.db.path

    def __repr__(self) -> str:
        return f"<SQLitePresence {self.path!r}>"

    async def _call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.sync.db.executor(), functools.partial(function, *args, **kwargs)
        )
