"""The publishers and the stats watcher on real ZeroMQ sockets, in one process (no Pushpin).

The test holds the other end, as Pushpin would: a PULL socket for ``push_in_spec``, a SUB
socket for ``push_in_sub_specs``, a PUB socket for ``stats_spec``. What arrives is checked
frame by frame; the end-to-end tests (``tests/e2e/test_zmq.py``) prove Pushpin reads it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import zmq

from grip_asgi import (
    GripConfigError,
    Item,
    PublishConnectionError,
    Publisher,
    PublishError,
    PublishTimeoutError,
    SyncPublisher,
    WebSocketMessageFormat,
)
from grip_asgi._cli import main as cli_main
from grip_asgi.pushpin import _free_ports
from grip_asgi.zmq import SubscriberCounts, ZmqSendTimeoutError
from grip_asgi.zmq._tnetstring import dumps, loads

TIMEOUT = 5.0  # seconds any one wait may take


class Sockets:
    """The test's own ends of the sockets, all closed when the test ends."""

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.open: list[zmq.Socket[bytes]] = []

    def socket(self, kind: int, **options: int) -> zmq.Socket[bytes]:
        sock = self.context.socket(kind)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        sock.rcvtimeo = round(TIMEOUT * 1000)
        self.open.append(sock)
        return sock

    def bound(self, kind: int, **options: int) -> tuple[zmq.Socket[bytes], str]:
        """A socket bound to a free port on 127.0.0.1, and its address."""
        sock = self.socket(kind, **options)
        sock.bind("tcp://127.0.0.1:*")
        return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self) -> None:
        for sock in self.open:
            sock.close(linger=0)
        self.context.term()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    made = Sockets()
    try:
        yield made
    finally:
        made.close()


def items_of(frames: list[bytes]) -> list[dict[str, Any]]:
    assert all(frame[:1] == b"J" for frame in frames), frames
    return [json.loads(frame[1:]) for frame in frames]


def ws(text: str) -> Item:
    return Item(WebSocketMessageFormat(text))


# --- PUSH ------------------------------------------------------------------------------------


def test_sync_push_sends_one_j_json_frame_per_item(sockets: Sockets) -> None:
    pull, address = sockets.bound(zmq.PULL)
    with SyncPublisher(f"zmq+{address}", prefix="app-") as publisher:
        publisher.publish_many([("a", ws("one")), ("b", ws("two"))])
        publisher.publish_websocket("c", b"\x00\x01", id="3")
        frames = [pull.recv() for _ in range(3)]
    assert items_of(frames) == [
        {"channel": "app-a", "formats": {"ws-message": {"content": "one"}}},
        {"channel": "app-b", "formats": {"ws-message": {"content": "two"}}},
        {"channel": "app-c", "id": "3", "formats": {"ws-message": {"content-bin": "AAE="}}},
    ]


@pytest.mark.anyio
async def test_async_push_sends_the_same_frames(sockets: Sockets) -> None:
    pull, address = sockets.bound(zmq.PULL)
    async with Publisher(f"zmq+{address}") as publisher:
        await publisher.publish_text("news", "hi")
        await publisher.publish_many([("news", ws(str(n))) for n in range(100)])
    (first,) = items_of([pull.recv()])
    assert first["channel"] == "news"
    assert set(first["formats"]) == {"ws-message", "http-stream", "http-response"}
    rest = items_of([pull.recv() for _ in range(100)])
    assert [item["formats"]["ws-message"]["content"] for item in rest] == [
        str(n) for n in range(100)
    ]


def test_with_no_pushpin_connected_a_push_fails_after_the_timeout(sockets: Sockets) -> None:
    (port,) = _free_ports(1)
    publisher = SyncPublisher(f"zmq+tcp://127.0.0.1:{port}", timeout=0.2)
    items = [("news", ws("one")), ("news", ws("two"))]
    with pytest.raises(ZmqSendTimeoutError) as caught:
        publisher.publish_many(items)
    error = caught.value
    assert error.proxy == f"zmq+tcp://127.0.0.1:{port}"
    assert error.delivered_items == ()
    assert error.failed_items == tuple(items)
    assert error.unsure_items == ()
    assert "no Pushpin is connected" in str(error) and "confirms nothing" in str(error)
    # Once a Pushpin listens there, retry() sends exactly what failed.
    pull = sockets.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{port}")
    publisher.retry(error)
    assert [
        i["formats"]["ws-message"]["content"] for i in items_of([pull.recv(), pull.recv()])
    ] == [
        "one",
        "two",
    ]
    publisher.close()


def test_a_full_queue_stops_the_push_where_it_is_and_retry_sends_the_rest(sockets: Sockets) -> None:
    # A Pushpin that stopped reading: its queue, the socket's and the kernel's fill up.
    pull, address = sockets.bound(zmq.PULL, RCVHWM=1)
    items = [("news", ws("x" * 1000 + str(n))) for n in range(20_000)]
    with SyncPublisher(f"zmq+{address}", timeout=0.3) as publisher:
        with pytest.raises(ZmqSendTimeoutError) as caught:
            publisher.publish_many(items)
        error = caught.value
        sent = len(error.delivered_items)
        assert 0 < sent < len(items)
        assert error.delivered_items + error.failed_items == tuple(items)
        assert f"item {sent + 1} of 20000" in str(error)

        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.extend(pull.recv() for _ in items))
        reader.start()
        publisher.retry(error)
        reader.join(TIMEOUT * 4)
    contents = [item["formats"]["ws-message"]["content"] for item in items_of(received)]
    assert contents == ["x" * 1000 + str(n) for n in range(20_000)]


@pytest.mark.anyio
async def test_async_push_waits_for_room_without_blocking_the_loop(sockets: Sockets) -> None:
    pull, address = sockets.bound(zmq.PULL, RCVHWM=1)
    items = [("news", ws("y" * 1000 + str(n))) for n in range(20_000)]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(pull.recv() for _ in items))

    def start_reading_later() -> None:
        time.sleep(0.3)  # the publisher has filled the queue by then, and waits for room
        reader.start()

    async with (
        Publisher(f"zmq+{address}", timeout=TIMEOUT) as publisher,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(tick)
        # Scheduled from the event loop: a publisher that blocked it would never be read.
        tasks.start_soon(anyio.to_thread.run_sync, start_reading_later)
        await publisher.publish_many(items)
        tasks.cancel_scope.cancel()
    reader.join(TIMEOUT)
    assert len(received) == len(items)
    assert ticks > 1  # the event loop ran while the publisher waited


# --- PUB -------------------------------------------------------------------------------------


def test_pub_sends_the_channel_then_the_item_to_subscribers(sockets: Sockets) -> None:
    (port,) = _free_ports(1)
    with SyncPublisher(f"zmq+tcp://127.0.0.1:{port}?mode=pub") as publisher:
        publisher.publish_many([])  # nothing to send: nothing opens
        publisher.publish_websocket("warm-up", "bind")  # binds; nobody listens yet
        sub = sockets.socket(zmq.SUB)
        sub.connect(f"tcp://127.0.0.1:{port}")
        sub.subscribe(b"news")
        # A subscription takes a moment to reach the publisher: publish until one arrives.
        deadline = time.monotonic() + TIMEOUT
        while not sub.poll(50):
            assert time.monotonic() < deadline, "the subscription never arrived"
            publisher.publish_websocket("news", "warm-up")
        while sub.poll(50):
            sub.recv_multipart()
        publisher.publish_many([("sport", ws("not for news")), ("news", ws("hello"))])
        topic, frame = sub.recv_multipart()
    assert topic == b"news"
    assert items_of([frame]) == [
        {"channel": "news", "formats": {"ws-message": {"content": "hello"}}}
    ]


def test_two_publishers_cannot_bind_one_address() -> None:
    (port,) = _free_ports(1)
    uri = f"zmq+tcp://127.0.0.1:{port}?mode=pub"
    with SyncPublisher(uri) as first, SyncPublisher(uri) as second:
        first.publish_websocket("c", "bound")
        with pytest.raises(PublishConnectionError, match=f"could not bind tcp://127.0.0.1:{port}"):
            second.publish_websocket("c", "refused")


def test_a_bad_zmq_uri_fails_at_construction() -> None:
    with pytest.raises(GripConfigError, match="mode must be push, pub or command"):
        SyncPublisher("zmq+tcp://127.0.0.1:5560?mode=pull")


def test_publish_and_stats_share_one_grip_url_with_verify_keys() -> None:
    publisher = SyncPublisher("zmq+tcp://127.0.0.1:5560?verify-iss=pushpin&verify-key=changeme")
    (config,) = publisher.settings.proxies
    assert (config.control_uri, config.verify_iss, config.verify_key) == (
        "zmq+tcp://127.0.0.1:5560",
        "pushpin",
        "changeme",
    )
    assert config.publish_url == "tcp://127.0.0.1:5560"


# --- SubscriberCounts ------------------------------------------------------------------------


def sub_packet(channel: str, count: int, *, mode: str = "ws", source: str = "h1") -> bytes:
    fields: dict[str, Any] = {"from": source, "mode": mode, "channel": channel}
    fields.update({"ttl": 60, "subscribers": count} if count else {"unavailable": True})
    return b"sub T" + dumps(fields)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stats_pub(sockets: Sockets) -> tuple[zmq.Socket[bytes], str]:
    return sockets.bound(zmq.PUB)


def send_until(pub: zmq.Socket[bytes], packet: bytes, seen: Callable[[], bool]) -> None:
    """Send ``packet`` until ``seen()``: a SUB socket misses what is sent before it subscribed."""
    deadline = time.monotonic() + TIMEOUT
    while not seen():
        assert time.monotonic() < deadline, f"never seen: {packet!r}"
        pub.send(packet)
        time.sleep(0.02)


def test_subscriber_counts_follow_the_stats_socket(stats_pub: Any, caplog: Any) -> None:
    pub, address = stats_pub
    clock = Clock()
    changes: list[tuple[str, int]] = []
    with SubscriberCounts(address, clock=clock, on_change=lambda *c: changes.append(c)) as counts:
        counts.wait_connected(TIMEOUT)
        assert counts.connected
        assert not counts.complete
        assert counts.has_subscribers("news")  # cannot know yet: never skip work
        send_until(pub, sub_packet("news", 2), lambda: counts.count("news") == 2)
        with caplog.at_level(logging.WARNING, logger="grip_asgi.zmq"):
            pub.send(b"sub Tnot a tnetstring")
            pub.send(b"report T" + dumps({"from": "h1", "connections": 9}))
            pub.send(sub_packet("news", 1, mode="stream"))
            counts.wait_for("news", lambda n: n == 3, timeout=TIMEOUT)
        assert "malformed stats packet" in caplog.text
        assert counts.by_mode("news") == {"ws": 2, "stream": 1}
        assert counts.counts() == {"news": 3}

        clock.now += 60  # one TTL later: complete, and the counts not sent again expire
        assert counts.complete
        counts.wait_for("news", lambda n: n == 0, timeout=TIMEOUT)
        assert not counts.has_subscribers("news")
        pub.send(sub_packet("news", 4))
        counts.wait_for("news", lambda n: n == 4, timeout=TIMEOUT)
        assert counts.has_subscribers("news")
        pub.send(sub_packet("news", 0))
        counts.wait_for("news", lambda n: n == 0, timeout=TIMEOUT)
    assert changes[-4:] == [("news", 3), ("news", 0), ("news", 4), ("news", 0)]
    with pytest.raises(TimeoutError, match="'news' has 0 subscriber"):
        counts.wait_for("news", lambda n: n > 0, timeout=0.05)


def test_subscriber_counts_report_a_socket_that_never_connects() -> None:
    (port,) = _free_ports(1)
    with SubscriberCounts(f"tcp://127.0.0.1:{port}") as counts:
        with pytest.raises(
            TimeoutError, match=f"not connected after 0.2 s: tcp://127.0.0.1:{port}"
        ):
            counts.wait_connected(0.2)
        assert not counts.connected


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5564", "ipc://relative", "tcp://"])
def test_subscriber_counts_refuse_what_is_not_a_stats_socket(uri: str) -> None:
    with pytest.raises(ValueError, match="stats socket"):
        SubscriberCounts(uri)


def test_the_stats_command_prints_each_change(stats_pub: Any, capsys: Any) -> None:
    pub, address = stats_pub
    code: list[int] = []
    command = threading.Thread(
        target=lambda: code.append(
            cli_main(["stats", "--duration", "1.5", "--channel", "news", address])
        )
    )
    command.start()
    deadline = time.monotonic() + TIMEOUT
    while command.is_alive() and time.monotonic() < deadline:
        for packet in (
            sub_packet("other", 5),
            sub_packet("news", 2),
            sub_packet("news", 1, mode="stream"),
        ):
            pub.send(packet)
        time.sleep(0.05)
    command.join(TIMEOUT)
    assert code == [0]
    out, err = capsys.readouterr()
    assert f"watching {address}" in err
    assert out.splitlines()[:2] == ["news: 2 (ws 2)", "news: 3 (stream 1, ws 2)"]
    assert "other" not in out


# --- The command socket (ZRPC publish) ---------------------------------------------------------


def answer(router: zmq.Socket[bytes], reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read one request as Pushpin's command socket does, answer it (success unless
    ``reply`` says otherwise, with the request's id), and return the request."""
    identity, empty, data = router.recv_multipart()
    assert empty == b""
    request: dict[str, Any] = loads(data)
    packet = {"id": request["id"], "success": True, "value": None, **(reply or {})}
    router.send_multipart([identity, b"", dumps(packet)])
    return request


def test_command_publishes_are_zrpc_requests_with_tnetstring_items(sockets: Sockets) -> None:
    router, address = sockets.bound(zmq.ROUTER)
    requests: list[dict[str, Any]] = []
    server = threading.Thread(target=lambda: requests.extend(answer(router) for _ in range(2)))
    server.start()
    with SyncPublisher(f"zmq+{address}?mode=command", prefix="p-") as publisher:
        publisher.publish_stream("news", b"\xff\n", id="1")
        publisher.publish_many([("a", ws("one")), ("b", Item(WebSocketMessageFormat(b"\x00")))])
    server.join(TIMEOUT)
    first, second = requests
    assert first["method"] == b"publish" and first["id"] != second["id"]
    assert first["args"] == {
        "items": [
            {"channel": b"p-news", "id": b"1", "formats": {"http-stream": {"content": b"\xff\n"}}}
        ]
    }
    assert second["args"]["items"] == [
        {"channel": b"p-a", "formats": {"ws-message": {"content": b"one"}}},
        {"channel": b"p-b", "formats": {"ws-message": {"content-bin": b"\x00"}}},
    ]


def test_a_refused_command_publish_raises_with_pushpins_reason(sockets: Sockets) -> None:
    router, address = sockets.bound(zmq.ROUTER)
    refusal = {
        "success": False,
        "condition": b"bad-request",
        "value": b"Invalid format: no formats",
    }
    server = threading.Thread(target=answer, args=(router, refusal))
    server.start()
    items = [("news", ws("one"))]
    with (
        SyncPublisher(f"zmq+{address}?mode=command") as publisher,
        pytest.raises(PublishError) as caught,
    ):
        publisher.publish_many(items)
    server.join(TIMEOUT)
    error = caught.value
    assert type(error) is PublishError
    assert str(error) == (
        f"zmq+{address} refused the items (bad-request): Invalid format: no formats"
    )
    assert (error.body, error.failed_items, error.unsure_items) == (
        "Invalid format: no formats",
        tuple(items),
        (),
    )


@pytest.mark.anyio
async def test_an_unanswered_command_publish_is_unsure_and_a_late_answer_is_skipped(
    sockets: Sockets,
) -> None:
    router, address = sockets.bound(zmq.ROUTER)
    async with Publisher(f"zmq+{address}?mode=command", timeout=0.3) as publisher:
        with pytest.raises(PublishTimeoutError) as caught:
            await publisher.publish_websocket("news", "lost?", id="1")
        assert "may have been published" in str(caught.value)
        assert caught.value.unsure_items == caught.value.failed_items
        # The late answer to that request arrives first; the next publish waits for its own.
        identity, _, late = router.recv_multipart()
        router.send_multipart([identity, b"", dumps({"id": loads(late)["id"], "success": True})])
        server = threading.Thread(target=answer, args=(router,))
        server.start()
        await publisher.retry(caught.value)
        server.join(TIMEOUT)


def test_with_no_pushpin_connected_a_command_publish_is_not_sent() -> None:
    (port,) = _free_ports(1)
    uri = f"zmq+tcp://127.0.0.1:{port}?mode=command"
    with (
        SyncPublisher(uri, timeout=0.2) as publisher,
        pytest.raises(ZmqSendTimeoutError, match="no Pushpin is connected") as caught,
    ):
        publisher.publish_websocket("news", "nobody")
    assert caught.value.unsure_items == ()
