"""The SQLite history store: one file, shared by every worker process of one host."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from .. import metrics as _metrics
from .._sqlite import Database, OnDatabaseThreads
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

# The counter lives in its own table so that it survives when retention removes every event.
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


class _SyncSQLiteHistory(SyncHistory):
    def __init__(
        self, path: str, retention: Retention, busy_timeout: float, clock: Callable[[], float]
    ) -> None:
        self.db = Database(
            path, _SCHEMA, busy_timeout, kind="history", error=HistoryUnavailableError
        )
        self.retention = retention
        self._clock = clock
        self._trim_sql = _retention_sql(retention)

    def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        check_append(channel, data, event)
        with self.db.transaction("BEGIN IMMEDIATE") as conn:
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
        with self.db.transaction("BEGIN") as conn:
            last_id, first_id = conn.execute(_BOUNDS, {"channel": channel}).fetchone()
            current_id = last_id or 0
            check_gap(
                channel, after_id, current_id, current_id + 1 if first_id is None else first_id
            )
            rows = conn.execute(_AFTER, (channel, after_id, limit)).fetchall()
        return [StoredEvent(channel, *row) for row in rows]

    def last_id(self, channel: str) -> int:
        check_channel(channel)
        with self.db.connection() as conn:
            row = conn.execute(_LAST_ID, (channel,)).fetchone()
        return row[0] if row else 0

    def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        check_channel(channel)
        check_count("count", count)
        with self.db.connection() as conn:
            rows = conn.execute(_LATEST, (channel, count)).fetchall()
        return [StoredEvent(channel, *row) for row in reversed(rows)]

    def trim(self) -> int:
        if self._trim_sql is None:
            self.db.check_open()
            return 0
        with self.db.connection() as conn:
            channels = [row[0] for row in conn.execute(_CHANNELS)]
        removed = 0
        for start in range(0, len(channels), _TRIM_BATCH):
            with self.db.transaction("BEGIN IMMEDIATE") as conn:
                now = self._clock()
                for channel in channels[start : start + _TRIM_BATCH]:
                    removed += self._apply_retention(conn, channel, now)
        return removed

    def close(self) -> None:
        self.db.close()

    def _apply_retention(self, conn: sqlite3.Connection, channel: str, now: float) -> int:
        if self._trim_sql is None:
            return 0
        params = {
            "channel": channel,
            "max_events": self.retention.max_events,
            "cutoff": self.retention.age_cutoff(now),
        }
        return conn.execute(self._trim_sql, params).rowcount


class SQLiteHistory(OnDatabaseThreads, SyncBackedStore):
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
        keep = Retention() if retention is None else retention
        super().__init__(_SyncSQLiteHistory(os.fspath(path), keep, busy_timeout, clock))

    def __repr__(self) -> str:
        return f"<SQLiteHistory {self.path!r} {self.retention}>"
