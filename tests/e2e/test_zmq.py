"""Publishing over Pushpin's ZeroMQ sockets, and subscriber counts from its stats socket.

Real Pushpins, the FastAPI example app behind them under uvicorn (its HTTP streams and SSE),
``tests/e2e/rawapp.py`` for WebSocket clients of a plain channel (each Pushpin routes ``/ws``
to it: the example's chat is a reliable WebSocket, on its own channel), and real WebSocket,
HTTP stream and SSE clients:

- PUSH to one Pushpin's ``push_in_spec`` (``zmq+ipc://`` and ``zmq+tcp://``), and answered
  ``publish`` requests to its ``command_spec``, reach every kind of client, from the
  ``Publisher`` and from ``python -m grip_asgi publish``;
- a PUB publisher that binds its own address reaches two Pushpins that connect to it
  (``push_in_sub_connect``): it is configured with neither;
- ``SubscriberCounts`` counts the clients connected, then none once they leave.

The counts are the readiness signal: Pushpin sends a count when a connection subscribes,
so once the watcher has it, a PUSHed item finds the subscription. A PUB subscription also
travels from each Pushpin to the publisher, so PUB tests warm up with an item id that each
Pushpin delivers once, however often it is sent.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import anyio
import httpx
import pytest

from grip_asgi import Item, Publisher, text_formats
from grip_asgi.pushpin import Pushpin, _free_ports
from grip_asgi.zmq import SubscriberCounts

from .servers import REPO_ROOT, ProcessServer, ProxiedApp, log_tail
from .test_examples import fastapi
from .test_scale_out import (
    Inbox,
    all_receive,
    plain_websocket_app,
    pump_stream,
    pump_websocket,
    subscribe_plain,
)

TIMEOUT = 20  # seconds any one test may take, start-up excluded
ProxiedAppFactory = Callable[..., ProxiedApp]


@pytest.fixture
def history_env(tmp_path: Path) -> dict[str, str]:
    """The example app's channel history, should anything open it: in this test's directory,
    not the repository's."""
    return {"GRIP_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite3"}


@pytest.fixture
def websocket_route() -> Iterator[str]:
    """The Pushpin route of ``/ws`` to a running ``tests/e2e/rawapp.py``."""
    with plain_websocket_app() as route:
        yield route


@contextlib.asynccontextmanager
async def clients(pushpins: Sequence[Pushpin], channel: str) -> AsyncIterator[list[Inbox]]:
    """On each Pushpin: a WebSocket client (rawapp's ``/ws``), an HTTP stream and an SSE stream
    of ``channel``; their inboxes. Leaving the block disconnects them all."""
    inboxes: list[Inbox] = []
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as http,
        contextlib.AsyncExitStack() as stack,
        anyio.create_task_group() as tasks,
    ):
        for number, pushpin in enumerate(pushpins, 1):
            websocket = await subscribe_plain(stack, pushpin, channel)
            inboxes.append(Inbox(f"websocket on pushpin {number}"))
            tasks.start_soon(pump_websocket, websocket, inboxes[-1])
            for kind in ("stream", "sse"):
                url = f"{pushpin.http_url}/{kind}/{channel}"
                response = await stack.enter_async_context(http.stream("GET", url))
                assert response.status_code == 200
                inboxes.append(Inbox(f"{kind} on pushpin {number}"))
                tasks.start_soon(pump_stream, response, inboxes[-1])
        yield inboxes
        tasks.cancel_scope.cancel()


async def wait_for_count(counts: SubscriberCounts, channel: str, expected: dict[str, int]) -> None:
    """Wait until the watcher counts ``expected`` connections per mode on ``channel``."""

    def reached() -> None:
        counts.wait_for(channel, lambda total: total == sum(expected.values()), timeout=TIMEOUT)

    await anyio.to_thread.run_sync(reached)
    assert counts.by_mode(channel) == expected


def cli_publish(grip_url: str, channel: str, message: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "grip_asgi", "publish", "--grip-url", grip_url, channel, message]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("socket", ["ipc push", "tcp push", "tcp command"])
@pytest.mark.anyio
async def test_push_reaches_websocket_stream_and_sse_clients_and_counts_follow_them(
    proxied_app: ProxiedAppFactory,
    history_env: dict[str, str],
    websocket_route: str,
    socket: str,
) -> None:
    app = proxied_app(
        fastapi, env=history_env, zmq_tcp=socket.startswith("tcp"), extra_routes=[websocket_route]
    )
    pushpin = app.pushpin
    grip_url = pushpin.zmq_grip_url
    assert grip_url is not None and grip_url.startswith("zmq+" + socket[:3])
    if socket.endswith("command"):  # answered requests to the command socket instead
        grip_url = f"zmq+{pushpin.command_spec}?mode=command"
    assert pushpin.stats_spec is not None
    with SubscriberCounts(pushpin.stats_spec) as counts, anyio.fail_after(TIMEOUT):
        await anyio.to_thread.run_sync(counts.wait_connected, TIMEOUT)
        async with clients([pushpin], "zmq-push") as inboxes, Publisher(grip_url) as publisher:
            # SSE is a stream too: one WebSocket, two streams.
            await wait_for_count(counts, "zmq-push", {"ws": 1, "stream": 2})
            assert counts.has_subscribers("zmq-push")
            assert counts.count("nobody-here") == 0

            await publisher.publish_text("zmq-push", "over zmq")
            await all_receive(inboxes, "over zmq")

            done = await anyio.to_thread.run_sync(cli_publish, grip_url, "zmq-push", "from the cli")
            assert (done.returncode, done.stderr) == (0, "")
            await all_receive(inboxes, "from the cli")
        # The clients left: Pushpin says so at once for WebSockets and streams.
        await wait_for_count(counts, "zmq-push", {})
    websocket, stream, sse = inboxes
    assert websocket.text.endswith("over zmq\nfrom the cli\n")
    assert stream.text.endswith("data: over zmq\n\ndata: from the cli\n\n")
    assert sse.text.endswith("data: over zmq\n\ndata: from the cli\n\n")


@pytest.fixture
def two_pushpins_subscribed_to_a_publisher(
    history_env: dict[str, str], websocket_route: str
) -> Iterator[tuple[str, tuple[Pushpin, Pushpin]]]:
    """A PUB address, and two Pushpins in front of one app that connect their SUB sockets to
    it; the publisher that binds it is the test's."""
    app_port, pub_port = _free_ports(2)
    address = f"tcp://127.0.0.1:{pub_port}"
    first, second = (
        Pushpin(
            f"127.0.0.1:{app_port}",
            zmq_tcp=True,
            subscribe_to=[address],
            extra_routes=[websocket_route],
        )
        for _ in range(2)
    )
    # Both sign Grip-Sig with the same key, so the app's GRIP_URL verifies either.
    server = fastapi(app_port, {"GRIP_URL": first.grip_url, **history_env})
    with contextlib.ExitStack() as stack:
        for process in (server, first, second):
            stack.callback(_print_log, process)
        server.launch()
        stack.callback(server.stop)
        stack.enter_context(first)
        stack.enter_context(second)
        server.wait_ready()
        yield f"zmq+{address}?mode=pub", (first, second)


def _print_log(process: Pushpin | ProcessServer) -> None:
    print(f"--- log of {process!r} ---\n{log_tail(process.read_log())}")


async def warm_up(publisher: Publisher, channel: str, inboxes: Sequence[Inbox]) -> None:
    """Publish one item, by id, until every client has it: a PUB send before a Pushpin's
    subscription reached the publisher goes nowhere, and a repeat of the id is dropped."""
    item = Item(text_formats("warm-up"), id="warm-up-1")

    async def everyone_has_it() -> None:
        for inbox in inboxes:
            await inbox.wait_for("warm-up")

    with anyio.move_on_after(TIMEOUT):
        while not all("warm-up" in inbox.text for inbox in inboxes):
            await publisher.publish(channel, item)
            with anyio.move_on_after(0.2):
                await everyone_has_it()
    await all_receive(inboxes, "warm-up", timeout=0)


@pytest.mark.anyio
async def test_a_pub_publisher_reaches_two_pushpins_that_subscribe_to_it(
    two_pushpins_subscribed_to_a_publisher: tuple[str, tuple[Pushpin, Pushpin]],
) -> None:
    grip_url, pushpins = two_pushpins_subscribed_to_a_publisher
    stats = [pushpin.stats_spec for pushpin in pushpins]
    assert all(stats) and grip_url.endswith("?mode=pub")
    with SubscriberCounts([s for s in stats if s]) as counts, anyio.fail_after(TIMEOUT):
        await anyio.to_thread.run_sync(counts.wait_connected, TIMEOUT)
        async with Publisher(grip_url) as publisher, clients(pushpins, "zmq-pub") as inboxes:
            assert len(inboxes) == 6
            await wait_for_count(counts, "zmq-pub", {"ws": 2, "stream": 4})
            await warm_up(publisher, "zmq-pub", inboxes)

            await publisher.publish_text("zmq-pub", "one publish, two pushpins")
            await all_receive(inboxes, "one publish, two pushpins")
        await wait_for_count(counts, "zmq-pub", {})
    for inbox in inboxes:
        assert inbox.text.count("warm-up") == 1, inbox  # each Pushpin dropped the repeats
        assert inbox.text.count("one publish, two pushpins") == 1, inbox


@pytest.mark.anyio
async def test_a_pub_publisher_can_connect_to_a_pushpins_bound_sub_socket(
    proxied_app: ProxiedAppFactory, history_env: dict[str, str], websocket_route: str
) -> None:
    app = proxied_app(fastapi, env=history_env, zmq_tcp=True, extra_routes=[websocket_route])
    spec = app.pushpin.push_in_sub_spec
    assert spec is not None and app.pushpin.stats_spec is not None
    with SubscriberCounts(app.pushpin.stats_spec) as counts, anyio.fail_after(TIMEOUT):
        await anyio.to_thread.run_sync(counts.wait_connected, TIMEOUT)
        async with (
            Publisher(f"zmq+{spec}?mode=pub&bind=false") as publisher,
            clients([app.pushpin], "zmq-sub") as inboxes,
        ):
            await wait_for_count(counts, "zmq-sub", {"ws": 1, "stream": 2})
            await warm_up(publisher, "zmq-sub", inboxes)
            await publisher.publish_text("zmq-sub", "to a bound sub socket")
            await all_receive(inboxes, "to a bound sub socket")
