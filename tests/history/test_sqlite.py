"""What only the SQLite backend has: a file, its write lock, threads and forked processes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from grip_asgi.history import HistoryUnavailableError, Retention, SQLiteHistory

from .._stores import assert_each_fails, in_forked_child, write_lock_held

UNBOUNDED = Retention(max_events=None, max_age=None)


def test_the_file_is_made_on_first_use_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with SQLiteHistory(path).sync as store:
        assert not path.exists()
        store.append("ch", "x")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_a_write_lock_held_past_busy_timeout_is_unavailable_and_reads_go_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.sqlite3"
    with SQLiteHistory(path, busy_timeout=0.2).sync as store:
        store.append("ch", "first")
        with write_lock_held(path):
            [error] = assert_each_fails(
                [lambda: store.append("ch", "blocked")],
                HistoryUnavailableError,
                match="database is locked",
                cause=sqlite3.OperationalError,
            )
            assert str(path) in str(error)
            # WAL: readers do not wait for the writer.
            assert [event.data for event in store.read("ch")] == ["first"]
        assert store.append("ch", "after").id == 2  # the failed append used no id


def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteHistory(tmp_path / "missing-dir" / "history.sqlite3")
    with pytest.raises(HistoryUnavailableError, match="missing-dir"):
        store.sync.append("ch", "x")

    async def async_call() -> None:
        async with store:
            with pytest.raises(HistoryUnavailableError, match="unable to open"):
                await store.last_id("ch")

    asyncio.run(async_call())


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a SQLite database" * 100)
    with SQLiteHistory(path).sync as store, pytest.raises(HistoryUnavailableError):
        store.append("ch", "x")


def test_busy_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteHistory(tmp_path / "h.db", busy_timeout=0)


@pytest.mark.anyio
async def test_the_async_face_waits_for_the_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.sqlite3"
    async with SQLiteHistory(path, busy_timeout=30) as store:
        await store.append("ch", "first")
        with write_lock_held(path) as other:
            waiting = asyncio.ensure_future(store.append("ch", "waits for the lock"))
            # If the append blocked the loop, this task could not release the lock, and the
            # append would fail after its 30 s busy timeout instead.
            await asyncio.sleep(0.1)
            assert not waiting.done()
            other.execute("COMMIT")
            assert (await asyncio.wait_for(waiting, timeout=30)).id == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_store_made_before_fork_works_in_the_child(tmp_path: Path) -> None:
    # gunicorn --preload: the app (and its store) is made in the master, then forked.
    store = SQLiteHistory(tmp_path / "history.sqlite3", retention=UNBOUNDED)
    store.sync.append("ch", "parent 0")  # the parent has a connection open now
    appended = in_forked_child(lambda: [store.sync.append("ch", f"child {n}").id for n in range(3)])
    assert appended == [2, 3, 4]
    assert store.sync.append("ch", "parent 1").id == 5
    assert [event.data for event in store.sync.read("ch")] == [
        "parent 0",
        "child 0",
        "child 1",
        "child 2",
        "parent 1",
    ]
    store.sync.close()


def test_threads_racing_to_first_use_a_new_file_all_get_in(tmp_path: Path) -> None:
    # Switching a new file to WAL takes a lock that SQLite's busy timeout does not cover.
    errors: list[BaseException] = []

    def first_use(store: SQLiteHistory, start: threading.Barrier) -> None:
        start.wait()
        try:
            store.sync.append("ch", "x")
        except BaseException as exc:
            errors.append(exc)

    for round_ in range(25):
        store = SQLiteHistory(tmp_path / f"new-{round_}.sqlite3", retention=UNBOUNDED)
        start = threading.Barrier(6, timeout=30)
        threads = [threading.Thread(target=first_use, args=(store, start)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        store.sync.close()
        assert errors == []
        with SQLiteHistory(store.path).sync as reopened:
            assert [event.id for event in reopened.read("ch")] == [1, 2, 3, 4, 5, 6]
