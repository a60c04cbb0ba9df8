"""Nothing lost over reliable WebSockets, end to end: real Pushpin 1.36, real app servers,
and a few dozen ``grip_asgi.client.ReliableClient`` on one asyncio loop, counted by id.

Each run publishes a few hundred messages to two fresh reliable channels through the app's
``POST /publish/{channel}`` (``publish_reliable``; the texts hold ``%``, multi-line and
non-ASCII text), while 30 clients follow ``ws://.../ws/{channels}`` through Pushpin (two of
every three on both channels). While messages flow, each client has its connection dropped
at random, by the test, half the time with a clean close and half the time by aborting the
TCP connection with no close frame; the client reconnects by itself and resumes with
``?last_event_id=``. On top of that:

- ``chaos``: nothing more;
- ``restart``: Pushpin is restarted mid-run: every connection is cut, reconnects are refused
  until it is back, and a publish made meanwhile is retried by the publisher (or, if it
  still fails, stored all the same and recovered by the clients);
- ``hwm``: Pushpin's ``message_hwm`` is so small that it drops most live deliveries, so
  the clients see gaps and repair them with syncs.

Every client must end with every message of its channels exactly once, in order, each with
the id the history gave it, and with no reset (the default retention keeps everything).
The end relies on the library alone: a gap shows when the next message arrives; a lost
*last* message shows when the app tells the client the tip, on Pushpin's call on an idle
connection or on the client's own ping (each every 20 s). So each run waits up to
``SETTLE_SECONDS`` for the last messages, in a bounded loop. The matrix covers each app
stack (Starlette on uvicorn, Django under ASGI on uvicorn and under WSGI on gunicorn) and
both stores (SQLite shared by two worker processes, and Redis). ``GRIP_SOAK_SECONDS=600``
publishes for that long instead of the short CI run.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from websockets.asyncio.client import connect as websockets_connect

from grip_asgi.client import ClientStats, Event, ReliableClient, Reset
from grip_asgi.history import open_history

from .reliable_clients import (
    PUBLISH_RATE,
    RESULTS,
    SOAK_SECONDS,
    STACKS,
    Chaos,
    Delivery,
    Published,
    PublishStats,
    Received,
    Scenario,
    Subscriber,
    check_delivery,
    hwm_drops,
    publish_all,
)
from .servers import ProcessServer, ProxiedApp, log_tail

#: How long the publisher publishes (at PUBLISH_RATE messages a second, both channels).
PUBLISH_SECONDS = SOAK_SECONDS or 7.5
CLIENTS = 30
#: Seconds every client has, after the last publish, to get the last messages: more than
#: the 20 s between two tips on a quiet connection.
SETTLE_SECONDS = 60.0
#: Small pages: a client away for a second already catches up over several syncs.
PAGE_SIZE = 10
#: How long each connection lives before the test drops it (while messages flow).
LIFETIME = (0.5, 3.0)
#: The clients' reconnection backoff: short, so that a dropped client is soon back.
BACKOFF = (0.2, 2.0)

WS_RUNS = [
    Scenario("chaos", "starlette", "sqlite", workers=2, transport="ws"),
    Scenario("restart", "django-asgi", "redis", transport="ws"),
    # Four deliveries queued at most, for 30 clients: most live messages are dropped.
    Scenario("hwm", "django-wsgi", "sqlite", workers=2, transport="ws", message_hwm=4),
]


@dataclass
class SocketSubscriber:
    """One ``ReliableClient``: what it delivered (``subscriber.received``), its own counts,
    and how often the test dropped its connection."""

    subscriber: Subscriber
    client: ReliableClient | None = None
    #: Drops by the test: a clean close (close frame and handshake), or the TCP connection
    #: aborted with no close frame (as a network or a killed process would).
    closed: int = 0
    aborted: int = 0
    resets: list[Reset] = field(default_factory=list)
    #: Items other than events and resets (none is expected: no presence, no app messages).
    others: list[Any] = field(default_factory=list)

    @property
    def stats(self) -> ClientStats:
        return ClientStats() if self.client is None else self.client.stats

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def describe(self) -> str:
        stats = self.stats
        return (
            f"{self.subscriber.name}: received={len(self.subscriber.received)}"
            f" drops[clean={self.closed} abort={self.aborted}] reconnects={stats.reconnects}"
            f" repairs={stats.repairs} duplicates_dropped={stats.duplicates}"
            f" resets={stats.resets} positions={self.client and self.client.positions}"
            f" complete={self.subscriber.complete}"
        )


async def run_socket(socket: SocketSubscriber, url: str, chaos: Chaos, stop: anyio.Event) -> None:
    """Follow ``url`` with a ReliableClient until ``stop``, while a second task drops its
    connection at random; then close the client (outside any cancelled scope, so that it
    closes its connection in full)."""
    subscriber = socket.subscriber
    # Subscribed before the first publish, each starts from id 0: a client that drops before
    # it learns the tip must not start "from now".
    client = ReliableClient(
        url,
        subscriber.channels,
        backoff_min=BACKOFF[0],
        backoff_max=BACKOFF[1],
        positions=dict.fromkeys(subscriber.channels, 0),
    )
    async with client:
        socket.client = client
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(collect, socket, client)
            tasks.start_soon(drop_at_random, socket, chaos, random.Random(subscriber.seed))
            await stop.wait()
            tasks.cancel_scope.cancel()


async def collect(socket: SocketSubscriber, client: ReliableClient) -> None:
    async for item in client:
        if isinstance(item, Event):
            socket.subscriber.add(Received(item.channel, item.id, item.data))
        elif isinstance(item, Reset):
            socket.resets.append(item)
        else:
            socket.others.append(item)


async def drop_at_random(socket: SocketSubscriber, chaos: Chaos, rng: random.Random) -> None:
    """While ``chaos`` is active, drop the client's live connection after a random time:
    a clean close or an abort, at random. The client must notice and reconnect by itself."""
    assert socket.client is not None
    while chaos.active():
        await anyio.sleep(rng.uniform(*chaos.lifetime))
        # No public API drops a connection: reach the client's live one.
        ws = socket.client._ws
        if ws is None or not chaos.active():  # reconnecting now, or the run is over
            continue
        if rng.random() < 0.5:
            socket.closed += 1
            await ws.close()
        else:
            socket.aborted += 1
            ws.transport.abort()


@pytest.fixture
def deployment(
    scenario: Scenario, history_url: str, proxied_app: Callable[..., ProxiedApp]
) -> ProxiedApp:
    env = {"GRIP_HISTORY_URL": history_url, "RELIABLE_PAGE_SIZE": str(PAGE_SIZE)}

    def server(port: int, app_env: dict[str, str]) -> ProcessServer:
        return STACKS[scenario.stack](port, app_env, scenario.workers)

    return proxied_app(server, env=env, message_hwm=scenario.message_hwm)


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", WS_RUNS, ids=[s.id for s in WS_RUNS], indirect=True)
async def test_every_websocket_client_gets_every_message_once_in_order(
    scenario: Scenario, deployment: ProxiedApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="grip_asgi.client")
    tag = uuid.uuid4().hex[:6]
    published = Published((f"news-{tag}", f"alerts-{tag}"))
    count = int(PUBLISH_SECONDS * PUBLISH_RATE)
    chaos = Chaos(active=lambda: not published.done, lifetime=LIFETIME)
    pushpin = deployment.pushpin
    seed = random.randrange(1_000_000)
    sockets = [
        SocketSubscriber(
            Subscriber(
                name=f"ws-{index}",
                base_url=deployment.ws_url,
                # Two of every three follow both channels, the third one only.
                channels=published.channels if index % 3 != 2 else published.channels[:1],
                seed=seed + index,
            )
        )
        for index in range(CLIENTS)
    ]
    stats = PublishStats()
    dropped_before_restart = 0

    def restart() -> None:  # a restart starts a new, empty Pushpin log
        nonlocal dropped_before_restart
        dropped_before_restart = hwm_drops([pushpin])
        pushpin.restart()

    trouble = {count // 3: restart} if scenario.trouble == "restart" else {}
    subscribers = [socket.subscriber for socket in sockets]
    stop = anyio.Event()
    started = time.monotonic()
    with anyio.fail_after(PUBLISH_SECONDS * 3 + 60 + SETTLE_SECONDS):
        async with anyio.create_task_group() as tasks:
            for socket in sockets:
                channels = ",".join(socket.subscriber.channels)
                url = f"{deployment.ws_url}/ws/{channels}"
                tasks.start_soon(run_socket, socket, url, chaos, stop)
            try:
                await _until(lambda: all(s.connected for s in sockets), timeout=30)
                await publish_all(deployment.server, published, count, stats, trouble)
                # Pushpin is up again now; one that exits (crashes) ends the wait.
                with anyio.move_on_after(SETTLE_SECONDS):
                    await _until(
                        lambda: (
                            all(s.has_all(published) for s in subscribers) or not pushpin.running
                        ),
                        SETTLE_SECONDS,
                    )
            finally:
                stop.set()
    elapsed = time.monotonic() - started

    for subscriber in subscribers:
        subscriber.complete = subscriber.has_all(published)
    report = check_delivery(subscribers, published)
    client_log = [r.getMessage() for r in caplog.records if r.name == "grip_asgi.client"]
    failed_reconnects = sum(1 for line in client_log if "reconnecting to" in line)
    dropped_by_pushpin = dropped_before_restart + hwm_drops([pushpin])
    summary = _summary(
        scenario, published, sockets, stats, dropped_by_pushpin, failed_reconnects, report
    )
    RESULTS.append(f"{summary} in {elapsed:.1f} s")
    print(f"{summary} in {elapsed:.1f} s")
    for socket in sockets:
        print(socket.describe())
    server_log = deployment.server.read_log()
    details = "\n".join(
        [
            summary,
            *(str(line) for line in report if not line.exact),
            *(socket.describe() for socket in sockets if not socket.subscriber.complete),
            *(line for line in client_log if "reconnecting to" not in line),
            *([] if pushpin.running else [f"{pushpin!r} exited:\n{log_tail(pushpin.read_log())}"]),
        ]
    )
    assert pushpin.running, details
    assert all(line.exact for line in report), details
    assert all(subscriber.complete for subscriber in subscribers), details
    assert not [s.resets for s in sockets if s.resets or s.stats.resets], details
    assert not [s.others for s in sockets if s.others], details
    # The server never refused a protocol message, and no client's loop failed.
    assert [line for line in client_log if "reconnecting to" not in line] == [], details
    assert "Traceback" not in server_log, f"{details}\n{log_tail(server_log, 80)}"

    assert stats.stored + stats.not_taken == count, details
    drops = sum(s.closed + s.aborted for s in sockets)
    assert sum(s.closed for s in sockets) > 0 and sum(s.aborted for s in sockets) > 0, details
    reconnects = sum(s.stats.reconnects for s in sockets)
    if scenario.trouble == "restart":
        # The restart cut connections the test did not drop, and the clients came back.
        assert reconnects > drops, details
    else:
        assert stats.not_taken == 0, f"{stats.errors[:3]}\n{details}"
    if scenario.trouble == "hwm":
        # Pushpin dropped live deliveries; the clients saw the gaps and repaired them.
        assert dropped_by_pushpin > 0, details
        assert sum(s.stats.repairs for s in sockets) > 0, details


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


def _summary(
    scenario: Scenario,
    published: Published,
    sockets: Sequence[SocketSubscriber],
    stats: PublishStats,
    dropped_by_pushpin: int,
    failed_reconnects: int,
    report: Sequence[Delivery],
) -> str:
    messages = sum(len(texts) for texts in published.messages.values())
    counts = [socket.stats for socket in sockets]
    return (
        f"reliable {scenario.id}: messages={messages} (not taken by a proxy: {stats.not_taken})"
        f" clients={len(sockets)}"
        f" drops[clean={sum(s.closed for s in sockets)} abort={sum(s.aborted for s in sockets)}]"
        f" reconnects={sum(c.reconnects for c in counts)}"
        f" (failed attempts: {failed_reconnects})"
        f" pushpin_dropped={dropped_by_pushpin}"
        f" delivered={sum(c.delivered for c in counts)}"
        f" repairs={sum(c.repairs for c in counts)}"
        f" duplicates_dropped={sum(c.duplicates for c in counts)}"
        f" duplicates={sum(line.duplicates for line in report)}"
        f" gaps={sum(line.gaps for line in report)}"
        f" resets={sum(c.resets for c in counts)}"
    )


# --- Step by step -------------------------------------------------------------------------------

STEPS = Scenario("steps", "starlette", "sqlite", transport="ws", chaos=False)
#: Pushpin's keep-alive call comes after 20 s without a request on the connection.
KEEP_ALIVE = 20.0


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
@pytest.mark.parametrize(
    "ping_interval", [None, 5.0], ids=["client-never-pings", "client-pings-every-5s"]
)
async def test_a_client_that_missed_the_last_messages_of_a_quiet_channel_learns_the_tip(
    deployment: ProxiedApp, history_url: str, ping_interval: float | None
) -> None:
    """Nothing but the tip tells a client that it lost the last messages of a channel that
    then stays quiet. The server sends it on Pushpin's keep-alive call, which Pushpin makes
    after 20 s without a request on the connection; a client's own pings are requests too
    (``websockets`` pings every 20 s by default, here every 5 s), and must not keep the tip
    from it. The messages are stored without being published, as when no proxy took them."""
    channel = f"quiet-{uuid.uuid4().hex[:6]}"
    query = urlencode({"last_event_id": f"{channel}:0"})
    url = f"{deployment.ws_url}/ws/{channel}?{query}"
    tips: list[dict[str, Any]] = []
    async with websockets_connect(url, ping_interval=ping_interval) as ws:
        with anyio.fail_after(10):
            opened = json.loads(await ws.recv())
        assert opened == {"grip": "tip", "ids": {channel: 0}}
        async with open_history(history_url) as history:
            for number in range(1, 4):
                await history.append(channel, f"{channel} {number} never published")
        with anyio.move_on_after(KEEP_ALIVE + 10):
            async for text in ws:
                message = json.loads(text)
                if message.get("grip") == "tip":
                    tips.append(message)
                    break
    assert tips == [{"grip": "tip", "ids": {channel: 3}}]
