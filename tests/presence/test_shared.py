"""Several store objects on one presence (SQLite file, Redis prefix), as several processes or
hosts have it: they see each other's members, and each leave is reported exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from grip_asgi.presence import Member, PresenceStore, SQLitePresence, SyncPresence

from .._stores import RedisServer, redis_prefix
from .conftest import Backend

LONG = 600.0


def test_store_objects_on_one_namespace_share_members(shared_backend: Backend) -> None:
    namespace = shared_backend.new_namespace()
    first = shared_backend.open(namespace=namespace).sync
    second = shared_backend.open(namespace=namespace).sync
    assert first.join("room", "c1", ttl=LONG, user="ann") is True
    assert second.join("room", "c1", ttl=LONG, user="ann") is False
    assert second.join("room", "c2", ttl=shared_backend.short_ttl) is True
    assert [m.client for m in first.members("room")] == ["c1", "c2"]
    assert first.leave("room", "c1") is not None
    assert second.leave("room", "c1") is None
    shared_backend.pass_time(shared_backend.short_ttl)
    assert [m.client for m in second.expire("room")] == ["c2"]
    assert first.expire("room") == []
    assert first.members("room") == second.members("room") == []


def run_threads(targets: list[Callable[[], None]], timeout: float = 60) -> None:
    """Start every target at once; fail (not hang) when one raises or does not finish."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets), timeout=timeout)

    def run(target: Callable[[], None]) -> None:
        try:
            start.wait()
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert errors == []


def test_two_stores_racing_expire_each_get_a_member_at_most_once(
    shared_backend: Backend,
) -> None:
    namespace = shared_backend.new_namespace()
    stores = [shared_backend.open(namespace=namespace).sync for _ in range(2)]
    for round_ in range(4):
        clients = {f"r{round_}-c{n}" for n in range(60)}
        for client in clients:
            stores[0].join("room", client, ttl=shared_backend.short_ttl)
        stores[0].join("room", f"r{round_}-stays", ttl=LONG)
        shared_backend.pass_time(shared_backend.short_ttl)

        got: list[Member] = []  # list.extend is atomic: both threads may add to it

        def sweep(store: SyncPresence, got: list[Member] = got) -> Callable[[], None]:
            return lambda: got.extend(store.expire("room"))

        run_threads([sweep(store) for store in stores])
        swept = Counter(member.client for member in got)
        assert set(swept) == clients
        assert max(swept.values()) == 1
        assert stores[1].expire("room") == []


@pytest.fixture(params=("sqlite", "redis"))
def open_shared(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], PresenceStore]]:
    """Opens store objects on one presence, timed by the real clock."""
    made: list[PresenceStore] = []
    if request.param == "sqlite":
        path = tmp_path / "presence.sqlite3"

        def open_store() -> PresenceStore:
            made.append(SQLitePresence(path))
            return made[-1]
    else:
        from grip_asgi.presence.redis import RedisPresence

        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = redis_prefix()

        def open_store() -> PresenceStore:
            made.append(RedisPresence(server.url, key_prefix=prefix))
            return made[-1]

    try:
        yield open_store
    finally:
        for store in made:
            store.sync.close()


def test_leave_and_expire_racing_around_the_expiry_time_report_each_member_once(
    open_shared: Callable[[], PresenceStore],
) -> None:
    # One store leaves each member just about when it expires, while two others sweep:
    # whichever wins, a member is reported (by leave or by expire) exactly once.
    leaver, *sweepers = (open_shared().sync for _ in range(3))
    ttl_of = {f"c{n:03}": 1.0 + n * 0.003 for n in range(100)}  # expiries 3 ms apart
    for client, ttl in ttl_of.items():
        leaver.join("room", client, ttl=ttl)
    # (On a very slow machine the first may have expired already: leave those at once.)
    now = time.time()
    expires = {client: now for client in ttl_of}
    expires.update((m.client, m.expires) for m in leaver.members("room"))
    all_expired = max(expires.values()) + 0.05
    left: list[Member] = []
    swept: list[list[Member]] = [[] for _ in sweepers]
    leaving_done = threading.Event()

    # Leave from 2 ms before to 2 ms after each expiry: some leaves win, some come too late
    # (then expire() reports the member), and some meet a sweep at the same moment.
    leave_at = {client: at + (n % 5 - 2) / 1000 for n, (client, at) in enumerate(expires.items())}

    def leave_near_expiry() -> None:
        try:
            for client, at in sorted(leave_at.items(), key=lambda item: item[1]):
                time.sleep(max(0.0, at - time.time()))
                if (member := leaver.leave("room", client)) is not None:
                    left.append(member)
        finally:
            leaving_done.set()

    def sweep(n: int) -> Callable[[], None]:
        def run() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                finished = leaving_done.is_set() and time.time() > all_expired
                swept[n].extend(sweepers[n].expire("room"))
                if finished:  # this sweep began after every member had expired
                    return
                time.sleep(0.001)

        return run

    run_threads([leave_near_expiry, sweep(0), sweep(1)])
    reported = Counter(member.client for member in left + swept[0] + swept[1])
    assert reported == Counter(set(ttl_of)), "each member reported exactly once"
    assert leaver.members("room") == []
    assert leaver.expire("room") == []
