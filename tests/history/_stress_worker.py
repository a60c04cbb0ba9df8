"""Processes for the multi-process stress test (run with multiprocessing's "spawn")."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from grip_asgi.history import HistoryStore, Retention, SQLiteHistory

UNBOUNDED = Retention(max_events=None, max_age=None)


def open_store(spec: tuple[str, ...]) -> HistoryStore:
    """("sqlite", path) or ("redis", url, key_prefix)."""
    if spec[0] == "sqlite":
        # A generous wait for the write lock: this test is about order, not latency.
        return SQLiteHistory(spec[1], retention=UNBOUNDED, busy_timeout=60)
    from grip_asgi.history.redis import RedisHistory

    return RedisHistory(spec[1], retention=UNBOUNDED, key_prefix=spec[2])


def appender(
    spec: tuple[str, ...],
    channel: str,
    name: str,
    count: int,
    use_async: bool,
    start: Barrier,
    results: Queue[tuple[str, Any]],
) -> None:
    """Append ``name:0`` ... ``name:<count-1>`` and report the ids received, in order."""
    try:
        store = open_store(spec)
        start.wait()
        if use_async:
            ids = asyncio.run(_append_async(store, channel, name, count))
        else:
            ids = [store.sync.append(channel, f"{name}:{n}").id for n in range(count)]
            store.sync.close()
        results.put((name, ids))
    except BaseException as exc:
        results.put((name, f"failed: {exc!r}"))
        raise


async def _append_async(store: HistoryStore, channel: str, name: str, count: int) -> list[int]:
    async with store:
        return [(await store.append(channel, f"{name}:{n}")).id for n in range(count)]


def reader(
    spec: tuple[str, ...],
    channel: str,
    total: int,
    seconds: float,
    start: Barrier,
    results: Queue[tuple[str, Any]],
) -> None:
    """Poll ``read(after_id=last seen)`` until id ``total`` is seen; report every id seen."""
    try:
        store = open_store(spec)
        start.wait()
        seen: list[int] = []
        reads = 0
        deadline = time.monotonic() + seconds
        while (not seen or seen[-1] < total) and time.monotonic() < deadline:
            reads += 1
            seen.extend(
                event.id for event in store.sync.read(channel, seen[-1] if seen else 0, limit=50)
            )
        store.sync.close()
        results.put(("reader", {"seen": seen, "reads": reads}))
    except BaseException as exc:
        results.put(("reader", f"failed: {exc!r}"))
        raise
