"""The SQLite presence store: one file, shared by every worker process of one host."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .._sqlite import Database, OnDatabaseThreads
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


class _SyncSQLitePresence(SyncPresence):
    def __init__(self, path: str, busy_timeout: float, clock: Callable[[], float]) -> None:
        self.db = Database(
            path, (_SCHEMA,), busy_timeout, kind="presence", error=PresenceUnavailableError
        )
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


class SQLitePresence(OnDatabaseThreads, SyncBackedPresence):
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
        super().__init__(_SyncSQLitePresence(os.fspath(path), busy_timeout, clock))

    def __repr__(self) -> str:
        return f"<SQLitePresence {self.path!r}>"
