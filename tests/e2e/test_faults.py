"""Faults through a real Pushpin: failing handlers, bad client frames, a proxy restart.

- A handler that raises ends its own client's connection, promptly; every other connection
  and the next request on the same worker are unaffected.
- Pushpin stopped and started again in the middle of a publish loop: every publish either
  succeeds or raises, clients that reconnect receive the later messages, and every item id
  is accounted for: received by every subscriber, or reported as a failed publish.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from grip_asgi import Publisher, PublishError

from .servers import ProxiedApp

FAULTAPP = "tests.e2e.faultapp:app"
TIMEOUT = 30  # seconds any one test may take, start-up excluded
ProxiedAppFactory = Callable[..., ProxiedApp]


@pytest.fixture
def app(proxied_app: ProxiedAppFactory) -> ProxiedApp:
    return proxied_app(FAULTAPP, ready_path="/health")


async def echo(websocket: ClientConnection, text: str) -> None:
    await websocket.send(text)
    assert await websocket.recv() == text


async def ends(websocket: ClientConnection) -> int | None:
    """Wait until the connection ends; its close code (1006 when it was dropped)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await websocket.recv()
    return websocket.close_code


@pytest.mark.anyio
async def test_a_failing_handler_ends_only_its_own_connection(
    app: ProxiedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    faults: list[str] = []
    url = f"{app.ws_url}/ws/echo"
    with anyio.fail_after(TIMEOUT):
        async with (
            connect(url, open_timeout=5) as bystander,
            httpx.AsyncClient(timeout=5) as client,
        ):
            await echo(bystander, "before")

            async with connect(url, open_timeout=5) as victim:
                await echo(victim, "hello")
                await victim.send("raise")
                # The middleware turns the failure into a clean close, 1011, not a dropped
                # connection (1006, which Pushpin gives a WebSocket whose backend answered 500).
                assert await ends(victim) == 1011
            faults.append("WebSocket handler raised")

            with pytest.raises(InvalidStatus) as rejected:
                async with connect(f"{app.ws_url}/ws/raise-on-open", open_timeout=5):
                    pass  # pragma: no cover - the handshake fails
            assert rejected.value.response.status_code == 500
            faults.append("WebSocket handler raised on open")

            response = await client.get(f"{app.http_url}/boom")
            assert response.status_code == 500
            faults.append("HTTP handler raised")

            # Pushpin relays a text frame that is not UTF-8; the app answers 400 (not 500).
            async with connect(url, open_timeout=5) as liar:
                await liar.send(b"\xff\xfe not UTF-8", text=True)
                assert await ends(liar) in (1006, 1007, 1011)
            faults.append("text frame not UTF-8")

            # The connection that was open all along, a new one, and plain HTTP still work.
            await echo(bystander, "after")
            async with connect(url, open_timeout=5) as fresh:
                await echo(fresh, "fresh")
            seen = (await client.get(f"{app.http_url}/seen")).json()
            assert (seen["proxied"], seen["signed"]) == (True, True)

    log = app.server.read_log()
    assert log.count("Started server process") == 1  # the same worker served everything
    assert log.count("HandlerFailed") >= 3
    assert '"POST /ws/echo HTTP/1.1" 400' in log
    with capsys.disabled():
        print(f"\n[faults] survived {len(faults)} faults on one worker: {', '.join(faults)}")


# --- Pushpin restarted during a publish loop ------------------------------------------------


@dataclass
class Subscriber:
    """A WebSocket client of the channel that reconnects whenever its connection ends."""

    url: str
    items: list[str] = field(default_factory=list)
    #: The round of the last probe received: proves the subscription is live.
    probe_round: int = -1
    connections: int = 0
    websocket: ClientConnection | None = None
    stopping: bool = False

    async def run(self) -> None:
        while not self.stopping:
            try:
                async with connect(self.url, open_timeout=3) as websocket:
                    assert await websocket.recv() == "subscribed"
                    self.websocket = websocket
                    self.connections += 1
                    async for message in websocket:
                        assert isinstance(message, str)
                        if message.startswith("probe-"):
                            self.probe_round = int(message.split("-")[1])
                        else:
                            self.items.append(message)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
                pass  # Pushpin is down, or went down: try again
            await anyio.sleep(0.1)

    async def stop(self) -> None:
        self.stopping = True
        if self.websocket is not None:
            await self.websocket.close()


@dataclass
class PublishLoop:
    """Publishes ``item-0``, ``item-1``, ... while ``phase`` is steady or down.

    The orchestrator holds ``lock`` while it stops or starts Pushpin, so a publish never
    races the stop itself: Pushpin delivers at most once, and an item it accepted just
    before it stopped would be lost by Pushpin, not by this library.
    """

    publisher: Publisher
    channel: str
    phase: str = "idle"
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    #: item id -> the phase it was published in, for those the proxy accepted.
    accepted: dict[str, str] = field(default_factory=dict)
    #: item id -> the error's type, for those whose publish raised.
    failed: dict[str, str] = field(default_factory=dict)
    attempted: int = 0

    async def run(self) -> None:
        while self.phase != "done":
            async with self.lock:
                if self.phase in ("steady", "down"):
                    item_id = f"item-{self.attempted}"
                    self.attempted += 1
                    try:
                        await self.publisher.publish_websocket(self.channel, item_id, id=item_id)
                    except PublishError as exc:
                        self.failed[item_id] = type(exc).__name__
                    else:
                        self.accepted[item_id] = self.phase
            await anyio.sleep(0.02)

    async def set_phase(self, phase: str, action: Callable[[], None] | None = None) -> None:
        async with self.lock:
            if action is not None:
                await anyio.to_thread.run_sync(action)
            self.phase = phase


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.05)


async def confirm_subscribed(
    publisher: Publisher, channel: str, clients: list[Subscriber], probe_round: int
) -> int:
    """Publish probes until every client got one of this round: their subscriptions are live.

    Probes are not counted: a subscription made by a (re)connection becomes live a moment
    after the client is told (spec §6.1), and a probe published before that reaches no one.
    """
    probes = 0
    while any(client.probe_round < probe_round for client in clients):
        with contextlib.suppress(PublishError):  # Pushpin still starting
            await publisher.publish_websocket(channel, f"probe-{probe_round}-{probes}")
        probes += 1
        await anyio.sleep(0.1)
    return probes


@pytest.mark.anyio
async def test_pushpin_restart_during_a_publish_loop_loses_nothing_silently(
    app: ProxiedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    pushpin, channel = app.pushpin, "restart"
    clients = [Subscriber(f"{app.ws_url}/ws/sub/{channel}") for _ in range(3)]
    async with Publisher(app.grip_url, retries=1, backoff=0.05, timeout=2) as publisher:
        loop = PublishLoop(publisher, channel)
        with anyio.fail_after(TIMEOUT + 30):
            async with anyio.create_task_group() as tasks:
                for client in clients:
                    tasks.start_soon(client.run)
                tasks.start_soon(loop.run)
                probes = await confirm_subscribed(publisher, channel, clients, 0)

                await loop.set_phase("steady")
                await wait_until(lambda: len(loop.accepted) >= 30)
                # Pushpin delivers at most once: what it accepted but had not sent yet when it
                # stops is lost by Pushpin. Let it deliver, so the count measures the library.
                await loop.set_phase("draining")
                await wait_until(lambda: all(len(c.items) >= len(loop.accepted) for c in clients))
                await loop.set_phase("down", pushpin.stop)
                await wait_until(lambda: len(loop.failed) >= 5)
                await loop.set_phase("restarting", pushpin.start)
                probes += await confirm_subscribed(publisher, channel, clients, 1)
                await loop.set_phase("steady")
                await wait_until(lambda: len(loop.accepted) >= 60)
                await loop.set_phase("done")

                # Every accepted item reaches every subscriber.
                await wait_until(lambda: all(len(c.items) >= len(loop.accepted) for c in clients))
                await anyio.sleep(0.5)  # time for a duplicate or a stray item to show up
                for client in clients:
                    await client.stop()

    accepted = list(loop.accepted)
    assert loop.attempted == len(loop.accepted) + len(loop.failed)
    assert set(loop.accepted.values()) == {"steady"}  # not one publish succeeded while down
    assert set(loop.failed.values()) == {"PublishConnectionError"}
    assert all(client.connections == 2 for client in clients)  # each reconnected once
    for client in clients:
        assert client.items == accepted  # all of them, once each, in order
        assert not set(client.items) & set(loop.failed)
    lost = sum(len(set(accepted) - set(client.items)) for client in clients)
    assert lost == 0
    with capsys.disabled():
        print(
            f"\n[restart] {loop.attempted} items published through a Pushpin restart: "
            f"{len(accepted)} accepted and received by all {len(clients)} reconnected clients, "
            f"{len(loop.failed)} reported failed (PublishConnectionError), 0 lost "
            f"({probes} uncounted probes)"
        )
