"""Publishing: items per second to a real Pushpin, against gripcontrol's GripPubControl.

Pushpin 1.36 closes the connection after every publish, so every request pays for a new
connection. The channel has no subscribers: what is timed is the publishing side.

It also times the direct path's reply reader against the same reader built on h11
(:class:`H11Buffer`), in the same rounds (:func:`compare_reply_parsers`); run that part
alone, without the anchors, with ``python -m benchmarks.publish [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import timeit
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import h11

from grip_asgi import Item, Publisher, SyncPublisher, WebSocketMessageFormat, _transport
from grip_asgi._transport import MAX_REPLY_BODY, Reply, ReplyParseError

from ._harness import Batch, Result, Settings, interleave, machine_summary, render_table

__all__ = (
    "CONCURRENCY",
    "MANY",
    "H11Buffer",
    "compare_reply_parsers",
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
    return _against_gripcontrol(settings) + compare_reply_parsers(settings)


def _against_gripcontrol(settings: Settings) -> list[Result]:
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


# --- The direct path's reply reader: hand-written parser against h11 ---------------------------

# h11 frames a reply by the request it answers: a POST, whose own bytes are not used.
_H11_REQUEST = h11.Request(
    method="POST", target="/", headers=[("Host", "h"), ("Content-Length", "0")]
)


class H11Buffer:
    """``grip_asgi._transport``'s reply reader (``_Buffer``) as it would be on h11.

    Same contract: ``feed`` returns a :class:`Reply` once the reply is whole, its body passed
    ``MAX_REPLY_BODY`` or it broke off after the status line, and raises
    :class:`ReplyParseError` before that; ``cut_short`` keeps what arrived.
    """

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        self._conn.send(_H11_REQUEST)
        self._conn.send(h11.EndOfMessage())
        self._response: h11.Response | None = None
        self._body = bytearray()

    def _reply(self, broken: str | None = None) -> Reply:
        assert self._response is not None
        headers = list(self._response.headers.raw_items())
        return Reply(
            self._response.status_code, headers, bytes(self._body[:MAX_REPLY_BODY]), broken
        )

    def feed(self, chunk: bytes) -> Reply | None:
        self._conn.receive_data(chunk)
        try:
            while True:
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.Response):
                    self._response = event
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) >= MAX_REPLY_BODY:
                        return self._reply()
                elif isinstance(event, h11.EndOfMessage):
                    return self._reply()
        except h11.RemoteProtocolError as exc:
            if self._response is None:
                raise ReplyParseError(str(exc)) from exc
            return self._reply(str(exc))

    def cut_short(self, why: str) -> Reply | None:
        return None if self._response is None else self._reply(why)


@contextlib.contextmanager
def _reader(buffer: type[Any]) -> Iterator[None]:
    """Publish with ``buffer`` as the direct path's reply reader."""
    original = _transport._Buffer
    _transport._Buffer = buffer  # type: ignore[misc]
    try:
        yield
    finally:
        _transport._Buffer = original  # type: ignore[misc]


def _with_reader(buffer: type[Any], batch: Batch) -> Batch:
    def run(n: int) -> None:
        with _reader(buffer):
            batch(n)

    return run


# A reply as Pushpin 1.36 writes it.
_PUSHPIN_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nPublished\n"
)


def _parse_us(buffer: type[Any]) -> float:
    """Microseconds to read one Pushpin reply, the best of several timings."""
    number = 2000
    times = timeit.repeat(lambda: buffer().feed(_PUSHPIN_REPLY), number=number, repeat=7)
    return min(times) / number * 1e6


def compare_reply_parsers(settings: Settings, *, clock: str = "wall") -> list[Result]:
    """The direct publish path with its hand-written reply parser, and with h11, to Pushpin.

    Both readers run in the same rounds, alternating, on the same publishers; the rows give
    items/s (ours: the hand-written parser; anchor: h11) and the time to read one reply.
    ``clock="cpu"`` counts this process's CPU time instead of wall time: the parser's cost
    alone, steadier on a busy machine (Pushpin's work is in other processes).
    """
    from grip_asgi.pushpin import Pushpin

    # Both read the same reply alike, so the comparison is of the same work.
    hand_reply, h11_reply = (
        _transport._Buffer().feed(_PUSHPIN_REPLY),
        H11Buffer().feed(_PUSHPIN_REPLY),
    )
    assert hand_reply is not None and hand_reply == h11_reply, (hand_reply, h11_reply)
    network = replace(settings, batch_seconds=settings.batch_seconds * 4, clock=clock)
    loop = asyncio.new_event_loop()
    with Pushpin("127.0.0.1:9") as pushpin:
        publisher = Publisher(pushpin.control_url)
        sync_publisher = SyncPublisher(pushpin.control_url)
        assert publisher._direct_http and sync_publisher._direct_http, "unset HTTP_PROXY"
        workloads = {
            "sequential": ours_sequential(loop, publisher),
            "concurrent": ours_concurrent(loop, publisher),
            "sync": ours_blocking(sync_publisher),
        }
        candidates = {}
        for name, batch in workloads.items():
            candidates[f"{name} hand-written"] = _with_reader(_transport._Buffer, batch)
            candidates[f"{name} h11"] = _with_reader(H11Buffer, batch)
        try:
            times = interleave(candidates, network)
        finally:
            sync_publisher.close()
            loop.run_until_complete(publisher.aclose())
            loop.close()
    rate = {name: 1e9 / statistics.median(values) for name, values in times.items()}
    per = "" if clock == "wall" else f" ({clock} time)"
    titles = {
        "sequential": f"reply parser: one item at a time{per}",
        "concurrent": f"reply parser: {CONCURRENCY} in flight{per}",
        "sync": f"reply parser: SyncPublisher{per}",
    }
    results = [
        Result(
            "publish",
            title,
            rate[f"{name} hand-written"],
            rate[f"{name} h11"],
            "items/s",
            higher_is_better=True,
            anchor_name="h11",
        )
        for name, title in titles.items()
    ]
    hand, on_h11 = _parse_us(_transport._Buffer), _parse_us(H11Buffer)
    results.append(
        Result("publish", "reply parser: read one reply", hand, on_h11, "us", anchor_name="h11")
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.publish",
        description="The direct publish path's reply parser against h11, to a real Pushpin.",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (3 rounds)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="time in wall or CPU time"
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    results = compare_reply_parsers(settings, clock=args.clock)
    print(machine_summary())
    print(render_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
