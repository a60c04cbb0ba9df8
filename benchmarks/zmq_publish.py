"""Publishing over ZeroMQ against the HTTP path, to the same real Pushpin, in the same rounds.

The same ``Publisher`` and ``SyncPublisher`` publish the same ``ws-message`` item to a
channel without subscribers, with Pushpin's HTTP control URL, with its ``push_in_spec``
(``zmq+tcp://``, PUSH) and with its ``command_spec`` (``?mode=command``, ZRPC ``publish``
requests, answered). An HTTP or command publish returns when Pushpin answered; a PUSH one
when the item is queued, and queues can hold thousands of items. So that a
ZeroMQ batch is not timed as done before Pushpin read it, each one ends with a marker item,
on the same socket, to a channel that a stream holds: the batch ends when the stream gets
the marker, that is when Pushpin has handled every item before it.

CPU per item is this process's CPU time (every thread, libzmq's I/O thread included) per
item; Pushpin's own work happens in its processes and is not in it. Run it alone with
``python -m benchmarks.zmq_publish [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import httpx

from grip_asgi import Item, Publisher, SyncPublisher, WebSocketMessageFormat

from ._harness import Batch, Result, Settings, interleave, machine_summary, render_table

__all__ = ("MANY", "Drained", "many", "one_at_a_time", "one_at_a_time_blocking", "run")

CHANNEL = "bench"
PAYLOAD = "hello"
#: Items per publish_many() call.
MANY = 100
#: Where each ZeroMQ batch ends: a channel that one stream, held by Pushpin's built-in
#: test route (``grip_asgi.pushpin``'s readiness probe), subscribes to.
END_CHANNEL = "bench-end"
_TEST_ROUTE_HOST = "pushpin-ready.invalid"


class Drained:
    """A stream on :data:`END_CHANNEL`: :meth:`wait` returns once Pushpin delivered a marker."""

    def __init__(self, http_url: str) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        url = f"{http_url}/stream?channel={END_CHANNEL}"
        self._response = self._client.send(
            self._client.build_request("GET", url, headers={"Host": _TEST_ROUTE_HOST}),
            stream=True,
        )
        self._chunks: Iterator[bytes] = self._response.iter_raw()
        self._seen = b""
        self._count = 0
        self.wait(b"[stream opened]\n")

    def next_marker(self) -> str:
        self._count += 1
        return f"end-{self._count}\n"

    def wait(self, marker: bytes) -> None:
        while marker not in self._seen:
            self._seen = self._seen[-64:] + next(self._chunks)
        self._seen = self._seen.partition(marker)[2]

    def close(self) -> None:
        self._response.close()
        self._client.close()


def _batch(
    loop: asyncio.AbstractEventLoop | None,
    publish: Callable[[int], object],
    end: Callable[[str], object] | None,
    drained: Drained | None,
) -> Batch:
    """Run ``publish(n)`` (a coroutine on ``loop``), then, for ZeroMQ, ``end(marker)`` on the
    same socket and wait until the stream has the marker."""

    def run(n: int) -> None:
        if loop is not None:
            loop.run_until_complete(publish(n))  # type: ignore[arg-type]
        else:
            publish(n)
        if end is not None and drained is not None:
            marker = drained.next_marker()
            if loop is not None:
                loop.run_until_complete(end(marker))  # type: ignore[arg-type]
            else:
                end(marker)
            drained.wait(marker.encode())

    return run


def one_at_a_time(
    loop: asyncio.AbstractEventLoop, publisher: Publisher, drained: Drained | None = None
) -> Batch:
    """``Publisher``, one item at a time, each awaited before the next."""

    async def publish(n: int) -> None:
        for _ in range(n):
            await publisher.publish_websocket(CHANNEL, PAYLOAD)

    async def end(marker: str) -> None:
        await publisher.publish_stream(END_CHANNEL, marker)

    return _batch(loop, publish, end if drained else None, drained)


def one_at_a_time_blocking(publisher: SyncPublisher, drained: Drained | None = None) -> Batch:
    """``SyncPublisher``, one item at a time."""

    def publish(n: int) -> None:
        for _ in range(n):
            publisher.publish_websocket(CHANNEL, PAYLOAD)

    def end(marker: str) -> None:
        publisher.publish_stream(END_CHANNEL, marker)

    return _batch(None, publish, end if drained else None, drained)


def many(
    loop: asyncio.AbstractEventLoop, publisher: Publisher, drained: Drained | None = None
) -> Batch:
    """``Publisher.publish_many`` with :data:`MANY` items per call (whole calls)."""
    entries = [(CHANNEL, Item(WebSocketMessageFormat(PAYLOAD)))] * MANY

    async def publish(n: int) -> None:
        for _ in range(-(-n // MANY)):
            await publisher.publish_many(entries)

    async def end(marker: str) -> None:
        await publisher.publish_stream(END_CHANNEL, marker)

    return _batch(loop, publish, end if drained else None, drained)


class _CpuMeter:
    """This process's CPU time per item of each candidate's batches."""

    def __init__(self) -> None:
        self.per_item: dict[str, list[float]] = {}

    def wrap(self, name: str, batch: Batch) -> Batch:
        def run(n: int) -> None:
            start = time.process_time_ns()
            batch(n)
            self.per_item.setdefault(name, []).append((time.process_time_ns() - start) / n)

        return run


WORKLOADS = (
    ("sequential", "Publisher, one at a time", 10.0),
    ("sync", "SyncPublisher, one at a time", 10.0),
    ("many", f"publish_many, {MANY} per call", 2.0),
)


def run(settings: Settings) -> list[Result]:
    from grip_asgi.pushpin import Pushpin

    # Wall time, in long batches: Pushpin's side runs in other processes, and each ZeroMQ
    # batch ends with a round trip through a stream.
    settings = replace(settings, batch_seconds=settings.batch_seconds * 8, clock="wall")
    meter = _CpuMeter()
    loop = asyncio.new_event_loop()
    with Pushpin("127.0.0.1:9", zmq_tcp=True) as pushpin:
        assert pushpin.zmq_grip_url is not None
        drained = Drained(pushpin.http_url)
        http, zmq = Publisher(pushpin.control_url), Publisher(pushpin.zmq_grip_url)
        http_sync = SyncPublisher(pushpin.control_url)
        zmq_sync = SyncPublisher(pushpin.zmq_grip_url)
        command_url = f"zmq+{pushpin.command_spec}?mode=command"
        command, command_sync = Publisher(command_url), SyncPublisher(command_url)
        candidates = {
            "http sequential": one_at_a_time(loop, http),
            "zmq sequential": one_at_a_time(loop, zmq, drained),
            "http sync": one_at_a_time_blocking(http_sync),
            "zmq sync": one_at_a_time_blocking(zmq_sync, drained),
            "http many": many(loop, http),
            "zmq many": many(loop, zmq, drained),
            # Answered: each call returns once Pushpin accepted the items.
            "command sequential": one_at_a_time(loop, command),
            "command sync": one_at_a_time_blocking(command_sync),
            "command many": many(loop, command),
        }
        try:
            times = interleave(
                {name: meter.wrap(name, batch) for name, batch in candidates.items()}, settings
            )
        finally:
            drained.close()
            for sync_publisher in (http_sync, zmq_sync, command_sync):
                sync_publisher.close()
            for publisher in (http, zmq, command):
                loop.run_until_complete(publisher.aclose())
            loop.close()
    rate = {name: 1e9 / statistics.median(values) for name, values in times.items()}
    # The timed rounds only: the first batches calibrated and warmed up.
    cpu_us = {
        name: statistics.median(values[-settings.rounds :]) / 1000
        for name, values in meter.per_item.items()
    }
    results = []
    for kind, label in (("zmq", "PUSH"), ("command", "command socket")):
        for key, title, target in WORKLOADS:
            results.append(
                Result(
                    "zmq",
                    f"{label}: {title}",
                    rate[f"{kind} {key}"],
                    rate[f"http {key}"],
                    "items/s",
                    higher_is_better=True,
                    target=target,
                    anchor_name="ours over HTTP",
                )
            )
    for kind, label in (("zmq", "PUSH"), ("command", "command socket")):
        for key, title, _ in WORKLOADS:
            results.append(
                Result(
                    "zmq",
                    f"{label}: CPU per item, {title}",
                    cpu_us[f"{kind} {key}"],
                    cpu_us[f"http {key}"],
                    "us",
                    anchor_name="ours over HTTP",
                )
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.zmq_publish",
        description="Publishing over ZeroMQ against HTTP, to a real Pushpin.",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (3 rounds)")
    args = parser.parse_args(argv)
    results = run(Settings.quick() if args.quick else Settings())
    print(machine_summary())
    print(render_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
