"""The SQLite history store: one file, shared by every worker process of one host."""

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
from typing import ParamSpec, TypeVar

from .. import metrics as _metrics
from ._base import (
    HistoryUnavailableError,
    Retention,
    StoredEvent,
    SyncBackedStore,
    SyncHistory,
    check_after_id,
    check_append,
    check_channel,
    check_count,
    check_gap,
)

__all__ = ("SQLiteHistory",)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# The counter lives in its own table so that it survives when retention removes every event.
# Each statement is idempotent, and they run in one BEGIN IMMEDIATE transaction, so processes
# that start at the same time on a new file do not trip over each other.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS grip_history_channel (
        channel TEXT PRIMARY KEY NOT NULL,
        last_id INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS grip_history_event (
        channel TEXT NOT NULL,
        id INTEGER NOT NULL,
        time REAL NOT NULL,
        event TEXT,
        data TEXT NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS grip_history_event_channel_id
        ON grip_history_event (channel, id)""",
)

_LAST_ID = "SELECT last_id FROM grip_history_channel WHERE channel = ?"
_INSERT = "INSERT INTO grip_history_event (channel, id, time, event, data) VALUES (?, ?, ?, ?, ?)"
_SET_LAST_ID = """INSERT INTO grip_history_channel (channel, last_id) VALUES (?, ?)
    ON CONFLICT (channel) DO UPDATE SET last_id = excluded.last_id"""
_BOUNDS = """SELECT (SELECT last_id FROM grip_history_channel WHERE channel = :channel),
    (SELECT min(id) FROM grip_history_event WHERE channel = :channel)"""
_AFTER = """SELECT id, data, event, time FROM grip_history_event
    WHERE channel = ? AND id > ? ORDER BY id LIMIT ?"""
_LATEST = """SELECT id, data, event, time FROM grip_history_event
    WHERE channel = ? ORDER BY id DESC LIMIT ?"""
_CHANNELS = "SELECT channel FROM grip_history_channel"
# trim() commits after this many channels, so appends never wait long behind it.
_TRIM_BATCH = 100


def _retention_sql(retention: Retention) -> str | None:
    """One DELETE of the channel's oldest events that retention no longer keeps, or None.

    Both limits remove a prefix of the channel's ids (never a hole): up to the newest
    ``max_events``, and up to the first event young enough for ``max_age``. Both bounds are
    index range lookups on (channel, id), and the DELETE a range, so an append removes the
    one or few events that fell out with a single statement.
    """
    last_id = "(SELECT last_id FROM grip_history_channel WHERE channel = :channel)"
    bounds = []
    if retention.max_events is not None:
        bounds.append(f"{last_id} - :max_events + 1")
    if retention.max_age is not None:
        bounds.append(
            "coalesce((SELECT id FROM grip_history_event WHERE channel = :channel "
            f"AND time >= :cutoff ORDER BY id LIMIT 1), {last_id} + 1)"
        )
    if not bounds:
        return None
    keep_from = bounds[0] if len(bounds) == 1 else f"max({', '.join(bounds)})"
    return f"DELETE FROM grip_history_event WHERE channel = :channel AND id < {keep_from}"


class _Connection(sqlite3.Connection):
    """A connection that a weak reference can point to (the base class allows none)."""


class _SyncSQLiteHistory(SyncHistory):
    def __init__(
        self, path: str, retention: Retention, busy_timeout: float, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self.retention = retention
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._trim_sql = _retention_sql(retention)
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

    # -- the operations ---------------------------------------------------------------------

    def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        check_append(channel, data, event)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            row = conn.execute(_LAST_ID, (channel,)).fetchone()
            new_id = (row[0] if row else 0) + 1
            now = self._clock()
            conn.execute(_INSERT, (channel, new_id, now, event, data))
            conn.execute(_SET_LAST_ID, (channel, new_id))
            self._apply_retention(conn, channel, now)
        if _metrics._recorder is not None:
            _metrics._recorder.history_append("sqlite")
        return StoredEvent(channel, new_id, data, event, now)

    def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        check_channel(channel)
        check_after_id(after_id, limit)
        # One read transaction: the counter and the events come from the same snapshot.
        with self._transaction("BEGIN") as conn:
            last_id, first_id = conn.execute(_BOUNDS, {"channel": channel}).fetchone()
            current_id = last_id or 0
            check_gap(
                channel, after_id, current_id, current_id + 1 if first_id is None else first_id
            )
            rows = conn.execute(_AFTER, (channel, after_id, limit)).fetchall()
        return [StoredEvent(channel, *row) for row in rows]

    def last_id(self, channel: str) -> int:
        check_channel(channel)
        with self._guard() as conn:
            row = conn.execute(_LAST_ID, (channel,)).fetchone()
        return row[0] if row else 0

    def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        check_channel(channel)
        check_count("count", count)
        with self._guard() as conn:
            rows = conn.execute(_LATEST, (channel, count)).fetchall()
        return [StoredEvent(channel, *row) for row in reversed(rows)]

    def trim(self) -> int:
        if self._trim_sql is None:
            with self._lock:
                self._check_open()
            return 0
        with self._guard() as conn:
            channels = [row[0] for row in conn.execute(_CHANNELS)]
        removed = 0
        for start in range(0, len(channels), _TRIM_BATCH):
            with self._transaction("BEGIN IMMEDIATE") as conn:
                now = self._clock()
                for channel in channels[start : start + _TRIM_BATCH]:
                    removed += self._apply_retention(conn, channel, now)
        return removed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            connections = list(self._connections)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for conn in connections:
            conn.close()

    def _apply_retention(self, conn: sqlite3.Connection, channel: str, now: float) -> int:
        if self._trim_sql is None:
            return 0
        params = {
            "channel": channel,
            "max_events": self.retention.max_events,
            "cutoff": self.retention.age_cutoff(now),
        }
        return conn.execute(self._trim_sql, params).rowcount

    # -- connections ------------------------------------------------------------------------

    def executor(self) -> ThreadPoolExecutor:
        """The threads the async face runs on (each keeps its own connection)."""
        with self._lock:
            self._check_usable()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(4, thread_name_prefix="grip-history-sqlite")
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
                for statement in _SCHEMA:
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

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard() as conn:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _unavailable(self, exc: sqlite3.Error) -> HistoryUnavailableError:
        return HistoryUnavailableError(
            f"the SQLite history store {self.path!r} is unavailable: {exc}",
            store=f"sqlite:{self.path}",
        )

    def _check_usable(self) -> None:
        """(Under the lock.) Raise when closed; in a forked child, start afresh."""
        self._check_open()
        if self._pid != os.getpid():
            self._reset_for_process()

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryUnavailableError(
                f"the SQLite history store {self.path!r} is closed", store=f"sqlite:{self.path}"
            )


class SQLiteHistory(SyncBackedStore):
    """Channel history in a SQLite file, shared by every process and thread of one host.

    Fit for ``uvicorn --workers N`` and gunicorn: an append is one short ``BEGIN IMMEDIATE``
    transaction, so ids stay gap-free across processes, and WAL mode lets readers go on
    while one process writes. The async face runs each call on a small thread pool, so the
    event loop never waits on the disk. The file and its tables are created on first use.

    Args:
        path: the database file (relative to the working directory, or absolute).
        retention: how much each channel keeps (default: :class:`Retention`'s defaults).
        busy_timeout: seconds a call waits for another process's write before it raises
            :class:`HistoryUnavailableError`.
        clock: returns the current Unix time; tests pass a fake one to test age retention.
    """

    sync: _SyncSQLiteHistory

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: Retention | None = None,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if busy_timeout <= 0:
            raise ValueError(
                f"busy_timeout must be a positive number of seconds, got {busy_timeout!r}"
            )
        keep = Retention() if retention is None else retention
        super().__init__(_SyncSQLiteHistory(os.fspath(path), keep, busy_timeout, clock))

    @property
    def path(self) -> str:
        """The database file."""
        return self.sync.path

    def __repr__(self) -> str:
        return f"<SQLiteHistory {self.path!r} {self.retention}>"

    async def _call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.sync.executor(), functools.partial(function, *args, **kwargs)
        )
