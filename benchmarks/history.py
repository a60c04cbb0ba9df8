"""Channel history: grip-asgi's stores against django-eventstream's, in the same run.

- Appends per second, SQLite against django-eventstream's ``DjangoModelStorage`` (Django's
  SQLite backend) and Redis against its ``RedisStorage``, on a private redis-server.
- The catch-up read of 1,000 events, in pages as each library reads them.
- ``publish_reliable`` against a plain ``publish_text`` to a real Pushpin.
- What a recovery request for 100 missed events adds to a ``GET /events/{channel}``.

Django's settings are set once per process, and the django benchmark sets them without a
database, so :func:`run` measures in a fresh interpreter (``python -m benchmarks.history``).
Every figure is wall time: Redis and Pushpin work in other processes, and the SQLite store's
async face waits on its threads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, Publisher
from grip_asgi.events import get_events
from grip_asgi.history import HistoryStore, open_history
from grip_asgi.pushpin import _free_ports
from grip_asgi.testing import make_grip_sig

from ._harness import Batch, Result, Settings, interleave, median_difference
from .asgi import GRIP_KEY, GRIP_URL, AsgiRequest, asgi_batch, call

__all__ = (
    "CATCH_UP",
    "IN_FLIGHT",
    "MESSAGE",
    "MISSED",
    "PAGE",
    "catch_up",
    "check_recovery",
    "on_loop",
    "ours_async_appends",
    "ours_async_catch_up",
    "ours_catch_up",
    "ours_sync_appends",
    "plain_publishes",
    "recovery_app",
    "recovery_requests",
    "redis_server",
    "reliable_publishes",
    "run",
)

#: What every append and publish stores: a small chat message, as JSON.
MESSAGE = {"user": "alice", "room": "lobby", "text": "hello from the history benchmark"}
#: Events in one catch-up read.
CATCH_UP = 1000
#: Events per page: the default page of our SSE endpoints, and what django-eventstream's
#: ``get_events(request)`` keeps (it asks its storage for one more, to see if more follow).
PAGE = 100
#: Operations in flight for the "in flight" workloads.
IN_FLIGHT = 8
#: Events a recovering subscriber missed.
MISSED = 100
#: The largest added time a recovery request may cost (issue #12), in ms.
RECOVERY_BUDGET_MS = 5.0

_LOOPBACK = "127.0.0.1"


# --- A private redis-server -------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A redis-server on 127.0.0.1 that saves nothing; yields its port, stops it on exit.

    The server comes from Debian's package (``scripts/install-redis``).
    """
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: run scripts/install-redis")
    with tempfile.TemporaryDirectory(prefix="grip-bench-redis-") as directory:
        port = _free_ports(1)[0]
        # fmt: off
        process = subprocess.Popen(
            [
                "redis-server",
                "--bind", _LOOPBACK,
                "--port", str(port),
                "--save", "",
                "--appendonly", "no",
                "--dir", directory,
                "--logfile", "redis.log",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        # fmt: on
        try:
            _wait_for_redis(process, port, Path(directory, "redis.log"))
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    client = redis.Redis(host=_LOOPBACK, port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            time.sleep(0.05)
    finally:
        client.close()
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"redis-server did not start on port {port}:\n{text[-2000:]}")


# --- Batches ----------------------------------------------------------------------------------


def on_loop(
    loop: asyncio.AbstractEventLoop,
    operation: Callable[[], Awaitable[object]],
    in_flight: int = 1,
) -> Batch:
    """A batch that runs ``operation`` ``n`` times on ``loop``, ``in_flight`` at once."""

    async def run(n: int) -> None:
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await operation()

        await asyncio.gather(*(worker() for _ in range(min(in_flight, n))))

    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


def ours_sync_appends(store: HistoryStore, channel: str) -> Batch:
    """``store.sync.append``, one at a time: what a Django sync view or a script does."""

    def batch(n: int) -> None:
        for _ in range(n):
            store.sync.append(channel, json.dumps(MESSAGE))

    return batch


def ours_async_appends(
    loop: asyncio.AbstractEventLoop, store: HistoryStore, channel: str, in_flight: int = 1
) -> Batch:
    """``await store.append``, ``in_flight`` at once."""

    async def append() -> None:
        await store.append(channel, json.dumps(MESSAGE))

    return on_loop(loop, append, in_flight)


def _their_appends(storage: Any, channel: str) -> Batch:
    """django-eventstream's ``append_event``, as its ``send_event`` calls it (it encodes the
    data as JSON itself; ours get it encoded by the caller, above)."""

    def batch(n: int) -> None:
        for _ in range(n):
            storage.append_event(channel, "message", MESSAGE)

    return batch


ReadPage = Callable[[int, int], Sequence[Any]]


def catch_up(read_page: ReadPage, after_id: int, count: int = CATCH_UP, page: int = PAGE) -> None:
    """Read ``count`` events after ``after_id``, ``page`` at a time, with ``read_page(last_id,
    limit)``; raises unless exactly the expected ids came back."""
    last_id = after_id
    while last_id < after_id + count:
        last_id = _read_up_to(read_page(last_id, min(page, after_id + count - last_id)), last_id)


def _read_up_to(events: Sequence[Any], last_id: int) -> int:
    """The id a catch-up has read up to with this page; raises unless the page goes on from
    ``last_id`` with no gap (ids only grow, so the ends tell)."""
    if not events or events[0].id != last_id + 1 or events[-1].id != last_id + len(events):
        ids = [event.id for event in events]
        raise AssertionError(f"catch-up after id {last_id}: read ids {ids[:3]}...{ids[-1:]}")
    last: int = events[-1].id
    return last


def ours_catch_up(
    store: HistoryStore, channel: str, after_id: int, count: int = CATCH_UP, page: int = PAGE
) -> Batch:
    """One operation is a whole catch-up: ``count`` events with ``store.sync.read``."""

    def read_page(last_id: int, limit: int) -> Sequence[Any]:
        return store.sync.read(channel, last_id, limit=limit)

    def batch(n: int) -> None:
        for _ in range(n):
            catch_up(read_page, after_id, count, page)

    return batch


def ours_async_catch_up(
    loop: asyncio.AbstractEventLoop,
    store: HistoryStore,
    channel: str,
    after_id: int,
    count: int = CATCH_UP,
    page: int = PAGE,
) -> Batch:
    """A whole catch-up with ``await store.read``, as the recoverable endpoints read."""

    async def one() -> None:
        last_id = after_id
        while last_id < after_id + count:
            limit = min(page, after_id + count - last_id)
            last_id = _read_up_to(await store.read(channel, last_id, limit=limit), last_id)

    return on_loop(loop, one)


def _their_catch_up(storage: Any, channel: str, after_id: int) -> Batch:
    def read_page(last_id: int, limit: int) -> Sequence[Any]:
        # As django_eventstream.eventstream.get_events reads: one more than it keeps.
        events: list[Any] = storage.get_events(channel, last_id, limit=limit + 1)
        return events[:limit]

    def batch(n: int) -> None:
        for _ in range(n):
            catch_up(read_page, after_id)

    return batch


def reliable_publishes(
    loop: asyncio.AbstractEventLoop, publisher: Publisher, channel: str, in_flight: int = 1
) -> Batch:
    """``publisher.publish_reliable``: append to the history, then publish with its id."""

    async def publish() -> None:
        await publisher.publish_reliable(channel, json.dumps(MESSAGE))

    return on_loop(loop, publish, in_flight)


def plain_publishes(
    loop: asyncio.AbstractEventLoop, publisher: Publisher, channel: str, in_flight: int = 1
) -> Batch:
    """``publisher.publish_text``: the same message to the same kinds of subscriber
    (WebSocket, stream and SSE, long-poll) as a reliable publish reaches, with no history."""

    async def publish() -> None:
        await publisher.publish_text(channel, json.dumps(MESSAGE))

    return on_loop(loop, publish, in_flight)


# --- Recovery ---------------------------------------------------------------------------------


def recovery_app(publisher: Publisher) -> Starlette:
    """The examples' recoverable SSE endpoint, ``GET /events/{channel}``, on ``publisher``'s
    history (the caller closes the publisher)."""

    async def events(request: Request) -> Response:
        return await get_events(request).sse(request.path_params["channel"])

    return Starlette(
        routes=[Route("/events/{channel}", events)],
        middleware=[Middleware(GripMiddleware, grip=GRIP_URL, publisher=publisher)],
    )


def recovery_requests(channel: str, last_id: int, missed: int = MISSED) -> dict[str, AsgiRequest]:
    """The proxy's requests of a subscriber that has every event, and of one that missed
    ``missed`` of them (``Last-Event-ID``, as ``EventSource`` sends it on a reconnect)."""
    sig = (b"grip-sig", make_grip_sig(GRIP_KEY).encode())

    def request(have: int) -> AsgiRequest:
        return AsgiRequest(
            "GET",
            f"/events/{channel}",
            [
                sig,
                (b"accept", b"text/event-stream"),
                (b"last-event-id", f"{channel}:{have}".encode()),
            ],
        )

    return {"none": request(last_id), "missed": request(last_id - missed)}


def check_recovery(
    loop: asyncio.AbstractEventLoop,
    app: Starlette,
    requests: dict[str, AsgiRequest],
    last_id: int,
    missed: int = MISSED,
) -> None:
    """Raise unless the subscriber with every event is held with no event replayed, and the
    one that missed ``missed`` gets exactly those, up to ``last_id``."""
    status, headers, body = loop.run_until_complete(call(app, requests["none"]))
    if status != 200 or headers.get("grip-hold") != "stream" or b"\ndata:" in b"\n" + body:
        raise AssertionError(f"nothing missed: unexpected reply {status} {headers} {body[:200]!r}")
    status, headers, body = loop.run_until_complete(call(app, requests["missed"]))
    ids = [line for line in body.decode().splitlines() if line.startswith("id: ")]
    if status != 200 or len(ids) != missed or not ids[-1].endswith(f":{last_id}"):
        raise AssertionError(f"{missed} missed: got {len(ids)} events ({status}, {ids[-1:]})")


# --- Yardsticks -------------------------------------------------------------------------------


def _sqlite_floor(conn: sqlite3.Connection) -> Batch:
    """One INSERT in its own ``BEGIN IMMEDIATE`` transaction on a WAL file: the least any
    durable SQLite append costs on this disk."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")

    def batch(n: int) -> None:
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor (data) VALUES (?)", (json.dumps(MESSAGE),))
            conn.execute("COMMIT")

    return batch


def _redis_round_trip(client: redis.Redis) -> Batch:
    """A ``PING``: one round trip to Redis, the least any Redis append costs."""

    def batch(n: int) -> None:
        for _ in range(n):
            client.ping()

    return batch


# --- The run ----------------------------------------------------------------------------------


def run(settings: Settings) -> list[Result]:
    """Measure in a fresh interpreter (Django's settings are once per process)."""
    with tempfile.TemporaryDirectory(prefix="grip-bench-history-") as directory:
        out = Path(directory, "results.json")
        command = [
            sys.executable,
            "-m",
            "benchmarks.history",
            f"--rounds={settings.rounds}",
            f"--batch-seconds={settings.batch_seconds}",
            f"--results={out}",
        ]
        root = Path(__file__).resolve().parent.parent
        finished = subprocess.run(command, cwd=root, stdin=subprocess.DEVNULL, timeout=3600)
        if finished.returncode != 0:
            raise RuntimeError(f"the history benchmark exited with {finished.returncode}")
        return [Result(**row) for row in json.loads(out.read_text())]


def _configure_django(database: str, redis_port: int) -> None:
    """Django for django-eventstream: its app, a SQLite database, its Redis connection."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        SECRET_KEY="grip-asgi-benchmarks",
        INSTALLED_APPS=["django_eventstream"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": database,
                # The journal and sync settings of our store: neither pays for more durability.
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
            }
        },
        USE_TZ=True,
        EVENTSTREAM_STORAGE_CONNECTION={"host": _LOOPBACK, "port": redis_port, "db": 0},
    )
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)


def _their_storages() -> tuple[Any, Any]:
    # Installed by benchmarks/run in benchmarks/.venv only, where mypy does not run.
    storage = importlib.import_module("django_eventstream.storage")
    return storage.DjangoModelStorage(), storage.RedisStorage()


def _close(loop: asyncio.AbstractEventLoop, store: HistoryStore) -> None:
    loop.run_until_complete(store.aclose())


def _fill(append: Callable[[str], object], count: int) -> None:
    for i in range(count):
        append(json.dumps({**MESSAGE, "n": i}))


def measure(settings: Settings) -> list[Result]:
    """Every comparison, in this process; configures Django, so call it once per process."""
    settings = replace(settings, batch_seconds=settings.batch_seconds * 4, clock="wall")
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        stack.callback(loop.close)
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="grip-bench-history-"))
        port = stack.enter_context(redis_server())
        _configure_django(os.path.join(directory, "django.db"), port)
        their_sqlite, their_redis = _their_storages()
        stores = {
            "SQLite": open_history(f"sqlite:///{directory}/ours.db"),
            "Redis": open_history(f"redis://{_LOOPBACK}:{port}/0"),
        }
        for store in stores.values():
            stack.callback(_close, loop, store)
        theirs = {"SQLite": their_sqlite, "Redis": their_redis}
        floors = {
            "SQLite": _sqlite_floor(
                stack.enter_context(
                    contextlib.closing(
                        sqlite3.connect(os.path.join(directory, "floor.db"), isolation_level=None)
                    )
                )
            ),
            "Redis": _redis_round_trip(
                stack.enter_context(contextlib.closing(redis.Redis(host=_LOOPBACK, port=port)))
            ),
        }
        results: list[Result] = []
        for kind, store in stores.items():
            print(f"  history: {kind} appends ...", file=sys.stderr, flush=True)
            results += _appends(loop, settings, kind, store, theirs[kind], floors[kind])
        for kind, store in stores.items():
            print(f"  history: {kind} catch-up ...", file=sys.stderr, flush=True)
            results += _catch_ups(loop, settings, kind, store, theirs[kind])
        print("  history: publish_reliable ...", file=sys.stderr, flush=True)
        results += _publishing(loop, settings, directory)
        print("  history: recovery ...", file=sys.stderr, flush=True)
        results.append(_recovery(loop, settings, directory))
    return results


def _appends(
    loop: asyncio.AbstractEventLoop,
    settings: Settings,
    kind: str,
    store: HistoryStore,
    storage: Any,
    floor: Batch,
) -> list[Result]:
    # Both number a new channel's events 1, 2, 3: they store the same thing.
    for name, append in (
        ("ours", lambda: store.sync.append("check", json.dumps(MESSAGE)).id),
        ("django-eventstream", lambda: storage.append_event("check", "message", MESSAGE).id),
    ):
        if [append(), append()] != [1, 2]:
            raise AssertionError(f"{kind}: {name} did not number a new channel's events 1, 2")
    channel = "appends"
    times = interleave(
        {
            "sync": ours_sync_appends(store, channel),
            "async": ours_async_appends(loop, store, channel),
            "in flight": ours_async_appends(loop, store, channel, IN_FLIGHT),
            "theirs": _their_appends(storage, channel),
            "floor": floor,
        },
        settings,
    )
    rate = {name: 1e9 / statistics.median(values) for name, values in times.items()}
    anchor = f"django-eventstream {'DjangoModelStorage' if kind == 'SQLite' else 'RedisStorage'}"
    floor_what = "a bare BEGIN IMMEDIATE/INSERT/COMMIT" if kind == "SQLite" else "a PING round trip"
    floor_us = statistics.median(times["floor"]) / 1000
    note = (
        f"per append: ours {1e6 / rate['sync']:.0f} us (sync), django-eventstream "
        f"{1e6 / rate['theirs']:.0f} us; {floor_what} takes {floor_us:.0f} us here"
    )
    rows = [
        ("sync, one at a time", "sync", 10.0, note),
        ("async, one at a time", "async", 10.0, ""),
        (f"async, {IN_FLIGHT} in flight", "in flight", None, ""),
    ]
    return [
        Result(
            "history",
            f"{kind} appends, {workload}",
            rate[key],
            rate["theirs"],
            "appends/s",
            higher_is_better=True,
            target=target,
            anchor_name=anchor,
            note=row_note,
        )
        for workload, key, target, row_note in rows
    ]


def _catch_ups(
    loop: asyncio.AbstractEventLoop,
    settings: Settings,
    kind: str,
    store: HistoryStore,
    storage: Any,
) -> list[Result]:
    channel = "catch-up"
    # More than one catch-up's worth, so the read starts past the channel's first event.
    fill = CATCH_UP + PAGE
    _fill(lambda data: store.sync.append(channel, data), fill)
    _fill(lambda data: storage.append_event(channel, "message", json.loads(data)), fill)
    ours_events = store.sync.read(channel, fill - CATCH_UP, limit=CATCH_UP)
    their_events = storage.get_events(channel, fill - CATCH_UP, limit=CATCH_UP)
    if [(e.id, json.loads(e.data)) for e in ours_events] != [(e.id, e.data) for e in their_events]:
        raise AssertionError(f"{kind}: the two stores hold different events")
    after = fill - CATCH_UP
    times = interleave(
        {
            "sync": ours_catch_up(store, channel, after),
            "async": ours_async_catch_up(loop, store, channel, after),
            "theirs": _their_catch_up(storage, channel, after),
        },
        settings,
    )
    ms = {name: statistics.median(values) / 1e6 for name, values in times.items()}
    anchor = f"django-eventstream {'DjangoModelStorage' if kind == 'SQLite' else 'RedisStorage'}"
    workload = f"{kind} catch-up of {CATCH_UP} events, {PAGE} a page"
    return [
        Result("history", f"{workload}, sync", ms["sync"], ms["theirs"], "ms", anchor_name=anchor),
        Result(
            "history", f"{workload}, async", ms["async"], ms["theirs"], "ms", anchor_name=anchor
        ),
    ]


def _publishing(
    loop: asyncio.AbstractEventLoop, settings: Settings, directory: str
) -> list[Result]:
    from grip_asgi.pushpin import Pushpin

    store = open_history(f"sqlite:///{directory}/publish.db")
    try:
        # Publishing needs no backend; Pushpin's readiness probe does not use one either.
        with Pushpin("127.0.0.1:9") as pushpin:
            publisher = Publisher(pushpin.control_url, history=store)
            try:
                stored = loop.run_until_complete(publisher.publish_reliable("check", "hello"))
                if stored.id != 1:
                    raise AssertionError(f"the first reliable publish got id {stored.id}")
                times = interleave(
                    {
                        "reliable": reliable_publishes(loop, publisher, "bench"),
                        "plain": plain_publishes(loop, publisher, "bench"),
                        "reliable in flight": reliable_publishes(
                            loop, publisher, "bench", IN_FLIGHT
                        ),
                        "plain in flight": plain_publishes(loop, publisher, "bench", IN_FLIGHT),
                    },
                    settings,
                )
            finally:
                loop.run_until_complete(publisher.aclose())
    finally:
        loop.run_until_complete(store.aclose())
    rate = {name: 1e9 / statistics.median(values) for name, values in times.items()}
    anchor = "plain publish_text"
    return [
        Result(
            "history",
            "publish_reliable, one at a time",
            rate["reliable"],
            rate["plain"],
            "items/s",
            higher_is_better=True,
            target=0.5,
            anchor_name=anchor,
        ),
        Result(
            "history",
            f"publish_reliable, {IN_FLIGHT} in flight",
            rate["reliable in flight"],
            rate["plain in flight"],
            "items/s",
            higher_is_better=True,
            target=0.5,
            anchor_name=f"{anchor}, {IN_FLIGHT} in flight",
        ),
    ]


def _recovery(loop: asyncio.AbstractEventLoop, settings: Settings, directory: str) -> Result:
    channel = "recovery"
    store = open_history(f"sqlite:///{directory}/recovery.db")
    publisher = Publisher(GRIP_URL, history=store)
    try:
        _fill(lambda data: store.sync.append(channel, data), CATCH_UP)
        app = recovery_app(publisher)
        requests = recovery_requests(channel, CATCH_UP)
        check_recovery(loop, app, requests, CATCH_UP)
        times = interleave(
            {
                "none": asgi_batch(loop, app, [requests["none"]]),
                "missed": asgi_batch(loop, app, [requests["missed"]]),
            },
            settings,
        )
    finally:
        loop.run_until_complete(publisher.aclose())
        loop.run_until_complete(store.aclose())
    added_ms = median_difference(times["missed"], times["none"]) / 1e6
    none_ms, missed_ms = (statistics.median(times[k]) / 1e6 for k in ("none", "missed"))
    return Result(
        "history",
        f"recovery of {MISSED} missed events: time added",
        added_ms,
        RECOVERY_BUDGET_MS,
        "ms",
        target=1.0,
        anchor_name="the issue's budget",
        note=(
            f"GET /events/{{channel}} through GripMiddleware, SQLite history: {none_ms:.2f} ms "
            f"with nothing missed, {missed_ms:.2f} ms with {MISSED} missed"
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history",
        description="The history benchmark, run by `python -m benchmarks` in a process of its own.",
    )
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--batch-seconds", type=float, default=Settings.batch_seconds)
    parser.add_argument("--results", required=True, help="write the results here, as JSON")
    args = parser.parse_args(argv)
    results = measure(Settings(rounds=args.rounds, batch_seconds=args.batch_seconds))
    Path(args.results).write_text(json.dumps([dataclasses.asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
