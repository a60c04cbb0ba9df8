"""Publishing: items per second to a real Pushpin, against gripcontrol's GripPubControl.

Pushpin 1.36 closes the connection after every publish, so every request pays for a new
connection. The channel has no subscribers: what is timed is the publishing side.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from grip_asgi import Item, Publisher, SyncPublisher, WebSocketMessageFormat

from ._harness import Batch, Result, Settings, interleave

__all__ = (
    "CONCURRENCY",
    "MANY",
    "ours_batches",
    "ours_blocking",
    "ours_concurrent",
    "ours_nowait",
    "ours_sequential",
    "run",
)

CHANNEL = "bench"
PAYLOAD = "hello"
#: Publishes in flight at once for "concurrent single items".
CONCURRENCY = 32
#: Items per publish_many() call.
MANY = 100


def _on_loop(loop: asyncio.AbstractEventLoop, run: Callable[[int], Awaitable[None]]) -> Batch:
    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


def ours_sequential(loop: asyncio.AbstractEventLoop, publisher: Publisher) -> Batch:
    """One item at a time: each publish awaited before the next."""

    async def run(n: int) -> None:
        for _ in range(n):
            await publisher.publish_websocket(CHANNEL, PAYLOAD)

    return _on_loop(loop, run)


def ours_concurrent(loop: asyncio.AbstractEventLoop, publisher: Publisher) -> Batch:
    """Single items, ``CONCURRENCY`` publishes in flight (as concurrent requests would)."""

    async def run(n: int) -> None:
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await publisher.publish_websocket(CHANNEL, PAYLOAD)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    return _on_loop(loop, run)


def ours_batches(loop: asyncio.AbstractEventLoop, publisher: Publisher) -> Batch:
    """``publish_many`` with ``MANY`` items per call (``n`` is rounded up to whole calls)."""
    entries = [(CHANNEL, Item(WebSocketMessageFormat(PAYLOAD)))] * MANY

    async def run(n: int) -> None:
        for _ in range(-(-n // MANY)):
            await publisher.publish_many(entries)

    return _on_loop(loop, run)


def ours_blocking(publisher: SyncPublisher) -> Batch:
    """``SyncPublisher``, one item at a time: what a sync view or a script does."""

    def run(n: int) -> None:
        for _ in range(n):
            publisher.publish_websocket(CHANNEL, PAYLOAD)

    return run


def ours_nowait(loop: asyncio.AbstractEventLoop, publisher: Publisher) -> Batch:
    """``publish_nowait`` for every item, then ``flush``; a full queue is flushed first."""

    async def run(n: int) -> None:
        for _ in range(n):
            try:
                publisher.publish_nowait(CHANNEL, WebSocketMessageFormat(PAYLOAD))
            except asyncio.QueueFull:
                await publisher.flush()
                publisher.publish_nowait(CHANNEL, WebSocketMessageFormat(PAYLOAD))
        await publisher.flush()
        if publisher.failed_count:
            raise AssertionError(f"{publisher.failed_count} queued items failed to publish")

    return _on_loop(loop, run)


def _anchor(control_url: str) -> tuple[Batch, Batch, Any]:
    from gripcontrol import GripPubControl
    from gripcontrol import WebSocketMessageFormat as GcWebSocketMessageFormat
    from pubcontrol import Item as GcItem

    pub = GripPubControl({"control_uri": control_url})
    failures: list[str] = []

    def on_result(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    def blocking(n: int) -> None:
        for _ in range(n):
            pub.publish(CHANNEL, GcItem(GcWebSocketMessageFormat(PAYLOAD)), blocking=True)

    def non_blocking(n: int) -> None:
        for _ in range(n):
            item = GcItem(GcWebSocketMessageFormat(PAYLOAD))
            pub.publish(CHANNEL, item, blocking=False, callback=on_result)
        pub.wait_all_sent()
        if failures:
            raise AssertionError(f"gripcontrol failed to publish: {failures[0]}")

    return blocking, non_blocking, pub


def run(settings: Settings) -> list[Result]:
    from grip_asgi.pushpin import Pushpin

    # Network round trips are noisier than in-process calls: longer batches. Wall time always:
    # Pushpin's side of the work happens in other processes.
    settings = replace(settings, batch_seconds=settings.batch_seconds * 4, clock="wall")
    loop = asyncio.new_event_loop()
    # Publishing needs no backend; Pushpin's readiness probe does not use one either.
    with Pushpin("127.0.0.1:9") as pushpin:
        publisher = Publisher(pushpin.control_url)
        sync_publisher = SyncPublisher(pushpin.control_url)
        blocking, non_blocking, anchor = _anchor(pushpin.control_url)
        try:
            times = interleave(
                {
                    "blocking": blocking,
                    "non-blocking": non_blocking,
                    "sequential": ours_sequential(loop, publisher),
                    "sync": ours_blocking(sync_publisher),
                    "concurrent": ours_concurrent(loop, publisher),
                    "batches": ours_batches(loop, publisher),
                    "nowait": ours_nowait(loop, publisher),
                },
                settings,
            )
        finally:
            anchor.close()
            sync_publisher.close()
            loop.run_until_complete(publisher.aclose())
            loop.close()
    rate = {name: 1e9 / statistics.median(values) for name, values in times.items()}
    gc_blocking = "gripcontrol blocking"
    gc_non_blocking = "gripcontrol non-blocking"
    return [
        _row("one item at a time", rate["sequential"], rate["blocking"], gc_blocking, None),
        _row("SyncPublisher, one at a time", rate["sync"], rate["blocking"], gc_blocking, None),
        _row(
            f"single items, {CONCURRENCY} in flight",
            rate["concurrent"],
            rate["blocking"],
            gc_blocking,
            3.0,
        ),
        _row(
            f"publish_many, {MANY} per call", rate["batches"], rate["blocking"], gc_blocking, 30.0
        ),
        _row(
            f"publish_many, {MANY} per call",
            rate["batches"],
            rate["non-blocking"],
            gc_non_blocking,
            1.0,
        ),
        _row("publish_nowait + flush", rate["nowait"], rate["non-blocking"], gc_non_blocking, 1.0),
    ]


def _row(
    workload: str, ours: float, anchor: float, anchor_name: str, target: float | None
) -> Result:
    return Result(
        "publish",
        workload,
        ours,
        anchor,
        "items/s",
        higher_is_better=True,
        target=target,
        anchor_name=anchor_name,
    )
