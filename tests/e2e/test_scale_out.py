"""Scale-out: two Pushpins in front of the same app workers, and a publish that reaches both.

The layout of docs/scaling.md: clients are split between two Pushpin instances (as a load
balancer would split them), both route to one app (two workers), and the app is configured
with both proxies through ``GRIP_PROXIES``. Each Pushpin signs ``Grip-Sig`` with its own key;
each proxy entry carries the key that verifies it. A publish must go to every Pushpin, since
each one holds only its own clients.

Plain publishes reach the example's HTTP streams and, for WebSocket clients, the hand-written
``tests/e2e/rawapp.py`` (the example's chat is a reliable WebSocket, on its own channel): each
Pushpin routes ``/ws`` to it. The chat itself crosses the Pushpins through the app's publisher.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from grip_asgi.client import Event, ReliableClient
from grip_asgi.pushpin import Pushpin, _free_ports

from .servers import REPO_ROOT, ProcessServer, UvicornServer, log_tail, publish_until
from .test_examples import django_asgi, fastapi

TIMEOUT = 15  # seconds any one test may take, start-up excluded
SIG_ISS = "pushpin"
# One key per instance (32+ bytes, as HS256 wants): the app must accept either proxy.
SIG_KEYS = ("first pushpin signs with this key!", "second pushpin signs with this one")
# Clients of each kind on each Pushpin.
CLIENTS_PER_KIND = 2

ServerFactory = Callable[[int, dict[str, str]], ProcessServer]
#: A WebSocket-over-HTTP app whose ``POST /ws`` subscribes to the channel a client names.
RAWAPP = "tests.e2e.rawapp:app"


@dataclass(frozen=True)
class ScaledOut:
    """One app server with two Pushpins in front of it."""

    pushpins: tuple[Pushpin, Pushpin]
    server: ProcessServer

    @property
    def grip_urls(self) -> list[str]:
        return [pushpin.grip_url for pushpin in self.pushpins]


def grip_proxies(pushpins: Sequence[Pushpin]) -> str:
    """``GRIP_PROXIES`` for the app: one django-grip style entry per Pushpin."""
    entries = [
        {"control_uri": pushpin.control_url, "verify_iss": SIG_ISS, "verify_key": key}
        for pushpin, key in zip(pushpins, SIG_KEYS, strict=True)
    ]
    return json.dumps(entries)


@contextlib.contextmanager
def plain_websocket_app() -> Iterator[str]:
    """``tests/e2e/rawapp.py`` running; yields the Pushpin route that sends ``/ws`` to it.

    Started before a test picks its other ports: a port it listens on is never picked."""
    server = UvicornServer(RAWAPP, ready_path="/health")
    try:
        with server:
            yield f"*,path_beg=/ws 127.0.0.1:{server.port},over_http"
    finally:
        _print_log(server)


@pytest.fixture(params=[fastapi, django_asgi], ids=["fastapi", "django"])
def scaled_out(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScaledOut]:
    factory: ServerFactory = request.param
    with contextlib.ExitStack() as stack:
        websocket_route = stack.enter_context(plain_websocket_app())
        # All five ports at once, so no two of them can be the same.
        app_port, *pushpin_ports = _free_ports(5)
        first, second = (
            Pushpin(
                f"127.0.0.1:{app_port}",
                http_port=pushpin_ports[2 * index],
                control_port=pushpin_ports[2 * index + 1],
                sig_iss=SIG_ISS,
                sig_key=key,
                extra_routes=[websocket_route],
            )
            for index, key in enumerate(SIG_KEYS)
        )
        # GRIP_URL is emptied so that only GRIP_PROXIES configures the app (an empty one is
        # unset). The chat's history and members: in this test's directory.
        env = {
            "GRIP_URL": "",
            "GRIP_PROXIES": grip_proxies([first, second]),
            "GRIP_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite3",
        }
        server = factory(app_port, env)
        # Exits run in reverse: the Pushpins stop, then the servers, then the logs are printed.
        for process in (server, first, second):
            stack.callback(_print_log, process)
        server.launch()
        stack.callback(server.stop)
        stack.enter_context(first)
        stack.enter_context(second)
        server.wait_ready()
        yield ScaledOut((first, second), server)


def _print_log(process: Pushpin | ProcessServer) -> None:
    print(f"--- log of {process!r} ---\n{log_tail(process.read_log())}")


class Inbox:
    """Everything one client received so far, and whether its connection has ended."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.text = ""
        self.closed = False
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"<Inbox {self.label} closed={self.closed} text={self.text!r}>"

    def add(self, text: str) -> None:
        self.text += text
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, marker: str) -> None:
        """Wait until ``marker`` was received; fail if the connection ends first."""
        while marker not in self.text:
            assert not self.closed, f"{self!r} was disconnected before it got {marker!r}"
            await self._changed.wait()

    async def wait_closed(self) -> None:
        while not self.closed:
            await self._changed.wait()


async def all_receive(inboxes: Sequence[Inbox], marker: str, timeout: float = 5) -> None:
    """Wait until every inbox has ``marker``; fail naming those that do not."""
    with anyio.move_on_after(timeout):
        for inbox in inboxes:
            await inbox.wait_for(marker)
    missing = [inbox for inbox in inboxes if marker not in inbox.text]
    assert not missing, f"no {marker!r} after {timeout} s in {missing}"


async def pump_websocket(websocket: ClientConnection, inbox: Inbox) -> None:
    try:
        async for message in websocket:
            inbox.add(f"{message!s}\n")
    except ConnectionClosed:  # an abnormal close: its proxy went away
        pass
    inbox.close()


async def pump_reliable(client: ReliableClient, inbox: Inbox) -> None:
    """Each event's data, a line each (the client's iteration ends when it is closed)."""
    async for item in client:
        if isinstance(item, Event):
            inbox.add(f"{item.data}\n")
    inbox.close()


async def subscribe_plain(
    stack: contextlib.AsyncExitStack, pushpin: Pushpin, channel: str
) -> ClientConnection:
    """A WebSocket client of ``channel`` on ``pushpin`` (rawapp's ``/ws``, told to subscribe)."""
    websocket = await stack.enter_async_context(connect(f"{pushpin.ws_url}/ws", open_timeout=5))
    await websocket.send(f"subscribe:{channel}")
    return websocket


async def pump_stream(response: httpx.Response, inbox: Inbox) -> None:
    try:
        async for chunk in response.aiter_text():
            inbox.add(chunk)
    except httpx.HTTPError:  # the stream broke off: its proxy went away
        pass
    inbox.close()


@contextlib.asynccontextmanager
async def clients_of(
    deployment: ScaledOut, channel: str
) -> AsyncIterator[dict[Pushpin, list[Inbox]]]:
    """WebSocket and HTTP stream clients of ``channel`` on each Pushpin, each with an inbox.

    WebSocket clients subscribe to ``channel`` (rawapp); stream clients hold ``/stream/channel``.
    """
    inboxes: dict[Pushpin, list[Inbox]] = {}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as http,
        contextlib.AsyncExitStack() as stack,
        anyio.create_task_group() as tasks,
    ):
        for number, pushpin in enumerate(deployment.pushpins, 1):
            inboxes[pushpin] = []
            for index in range(CLIENTS_PER_KIND):
                websocket = await subscribe_plain(stack, pushpin, channel)
                inbox = Inbox(f"websocket {index} on pushpin {number}")
                tasks.start_soon(pump_websocket, websocket, inbox)
                inboxes[pushpin].append(inbox)

                url = f"{pushpin.http_url}/stream/{channel}"
                response = await stack.enter_async_context(http.stream("GET", url))
                assert response.status_code == 200
                inbox = Inbox(f"stream {index} on pushpin {number}")
                tasks.start_soon(pump_stream, response, inbox)
                inboxes[pushpin].append(inbox)
        yield inboxes
        tasks.cancel_scope.cancel()


async def warm_up(deployment: ScaledOut, channel: str, inboxes: dict[Pushpin, list[Inbox]]) -> None:
    """Publish a warm-up item to each Pushpin until all its clients have it.

    A publish can race the subscription it is meant for (spec §6.1); once every client got a
    warm-up item, every subscription is in place and one publish must reach them all.
    """
    item = {
        "channel": channel,
        "formats": {"ws-message": {"content": "warm-up"}, "http-stream": {"content": "warm-up\n"}},
    }

    async def warm(client: httpx.AsyncClient, pushpin: Pushpin) -> None:
        warmed = anyio.Event()
        async with anyio.create_task_group() as tasks:

            async def all_warm() -> None:
                for inbox in inboxes[pushpin]:
                    await inbox.wait_for("warm-up")
                warmed.set()

            tasks.start_soon(all_warm)
            await publish_until(client, pushpin.publish_url, [item], warmed, timeout=TIMEOUT)

    async with httpx.AsyncClient(timeout=5) as client, anyio.create_task_group() as tasks:
        for pushpin in deployment.pushpins:
            tasks.start_soon(warm, client, pushpin)


async def cli_publish(
    grip_urls: Sequence[str], channel: str, message: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """``python -m grip_asgi publish`` to every GRIP URL, from a separate process."""
    argv = [sys.executable, "-m", "grip_asgi", "publish", *options]
    for url in grip_urls:
        argv += ["--grip-url", url]
    argv += [channel, message]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)

    return await anyio.to_thread.run_sync(run)


@pytest.mark.anyio
async def test_one_publish_reaches_every_client_on_both_pushpins(scaled_out: ScaledOut) -> None:
    first, second = scaled_out.pushpins
    with anyio.fail_after(TIMEOUT):
        async with clients_of(scaled_out, "scale") as inboxes:
            await warm_up(scaled_out, "scale", inboxes)

            everyone = inboxes[first] + inboxes[second]
            published = await cli_publish(
                scaled_out.grip_urls, "scale", "one publish", "--id", "item-1"
            )
            assert (published.returncode, published.stderr) == (0, "")
            await all_receive(everyone, "one publish")

            # A retried publish (same id) is dropped by each Pushpin; the next item is not.
            for text, item_id in (("the repeat", "item-1"), ("the next item", "item-2")):
                published = await cli_publish(scaled_out.grip_urls, "scale", text, "--id", item_id)
                assert (published.returncode, published.stderr) == (0, "")
            await all_receive(everyone, "the next item")
            assert not [inbox for inbox in everyone if "the repeat" in inbox.text]

            # One instance goes down: its clients are cut off, the other's stay.
            first.stop()
            for inbox in inboxes[first]:
                await inbox.wait_closed()
            published = await cli_publish(scaled_out.grip_urls, "scale", "after the failure")
            assert published.returncode == 1
            [error] = published.stderr.splitlines()
            assert error.startswith("grip-asgi: error: publish failed on 1 of 2 proxies (")
            assert f"could not reach {first.control_url}" in error
            assert second.control_url not in error
            await all_receive(inboxes[second], "after the failure")


@pytest.mark.anyio
async def test_a_chat_message_crosses_from_one_pushpin_to_the_other(scaled_out: ScaledOut) -> None:
    first, second = scaled_out.pushpins
    room = "crossing"
    with anyio.fail_after(TIMEOUT):
        async with (
            ReliableClient(f"{first.ws_url}/chat/{room}?name=alice", channels=[room]) as alice,
            ReliableClient(f"{second.ws_url}/chat/{room}?name=bob", channels=[room]) as bob,
            anyio.create_task_group() as tasks,
        ):
            alice_got, bob_got = Inbox("alice on pushpin 1"), Inbox("bob on pushpin 2")
            tasks.start_soon(pump_reliable, alice, alice_got)
            tasks.start_soon(pump_reliable, bob, bob_got)

            # The first messages may race the subscriptions (spec §6.1): Alice says hi until
            # her own message comes back through her Pushpin and Bob's arrives through his.
            attempt = 0
            with anyio.move_on_after(5):
                while "hi " not in alice_got.text or "hi " not in bob_got.text:
                    await alice.send(f"hi {attempt}")
                    attempt += 1
                    with anyio.move_on_after(0.25):
                        await alice_got.wait_for("hi ")
                        await bob_got.wait_for("hi ")
            assert "hi " in alice_got.text, f"{alice_got!r} after {attempt} messages"
            assert "hi " in bob_got.text, f"{bob_got!r} after {attempt} messages"

            # Both are subscribed: Bob's one message reaches Alice through the other Pushpin,
            # live. Nothing here makes her ask the app for a message she lacks (no sync, no
            # reconnect), so the app's publish to her Pushpin is the only way it comes.
            repairs = alice.stats.repairs
            await bob.send("hello from the second pushpin")
            await all_receive([alice_got], "hello from the second pushpin")
            assert (alice.stats.repairs, alice.stats.reconnects) == (repairs, 0)
            tasks.cancel_scope.cancel()
