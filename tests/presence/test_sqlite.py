"""What only the SQLite backend has: a file, its write lock, and forked processes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from grip_asgi.history import SQLiteHistory
from grip_asgi.presence import PresenceUnavailableError, SQLitePresence

from .._stores import FakeClock, assert_each_fails, in_forked_child, write_lock_held

LONG = 600.0


def test_one_table_in_a_wal_file_that_history_can_share(tmp_path: Path) -> None:
    path = tmp_path / "grip.sqlite3"
    with SQLitePresence(path).sync as presence, SQLiteHistory(path).sync as history:
        assert not path.exists()  # made on first use
        presence.join("room", "c1", ttl=LONG, user="ann", info={"a": [1]})
        history.append("room", "hello")
        assert [m.client for m in presence.members("room")] == ["c1"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = conn.execute("SELECT channel, client, user, info FROM grip_presence").fetchall()
        assert rows == [("room", "c1", "ann", '{"a":[1]}')]
    finally:
        conn.close()


def test_a_write_lock_held_past_busy_timeout_is_unavailable_and_reads_go_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "presence.sqlite3"
    with SQLitePresence(path, busy_timeout=0.2).sync as store:
        store.join("room", "c1", ttl=LONG)
        with write_lock_held(path):
            calls = (
                lambda: store.join("room", "c2", ttl=LONG),
                lambda: store.touch("room", "c1", ttl=LONG),
                lambda: store.leave("room", "c1"),
                lambda: store.expire("room"),
            )
            errors = assert_each_fails(
                calls,
                PresenceUnavailableError,
                match="database is locked",
                cause=sqlite3.OperationalError,
            )
            assert all(str(path) in str(error) for error in errors)
            # WAL: readers do not wait for the writer.
            assert [m.client for m in store.members("room")] == ["c1"]
        assert store.leave("room", "c1") is not None


def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    store = SQLitePresence(tmp_path / "missing-dir" / "presence.sqlite3")
    with store.sync, pytest.raises(PresenceUnavailableError, match="missing-dir"):
        store.sync.members("room")


def test_busy_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLitePresence(tmp_path / "p.db", busy_timeout=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_store_made_before_fork_works_in_the_child(tmp_path: Path) -> None:
    # gunicorn --preload: the app (and its store) is made in the master, then forked.
    clock = FakeClock()
    store = SQLitePresence(tmp_path / "presence.sqlite3", clock=clock)
    store.sync.join("room", "stays", ttl=LONG)  # the parent has a connection open now
    store.sync.join("room", "gone-1", ttl=1)
    store.sync.join("room", "gone-2", ttl=1)
    clock.advance(1)
    swept = in_forked_child(lambda: sorted(m.client for m in store.sync.expire("room")))
    assert swept == ["gone-1", "gone-2"]
    assert store.sync.expire("room") == []  # the child took them
    assert [m.client for m in store.sync.members("room")] == ["stays"]
    store.sync.close()
