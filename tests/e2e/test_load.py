"""Load and isolation: 200 WebSocket clients echoing through Pushpin at the same time.

Each client sends distinct messages (its id, a sequence number and a nonce), a few in
flight at once, to the FastAPI example's ``/echo`` for ``GRIP_LOAD_SECONDS`` (default 10;
``GRIP_LOAD_SECONDS=60`` is the full minute), and must get exactly its own messages back, in
order: no cross-talk between connection contexts, nothing lost, nothing duplicated. The
backend's memory must stay flat: its resident set, read from /proc after a warm-up and at
the end, may grow by less than 20 MiB (a leak check, not a performance figure).
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .servers import ProxiedApp

CLIENTS = 200
SECONDS = float(os.environ.get("GRIP_LOAD_SECONDS", "10"))
#: Messages one client may have in flight.
IN_FLIGHT = 2
#: WebSocket-over-HTTP requests the clients may have in flight together, handshakes included.
#: Pushpin 1.36 drops a WebSocket when its request to the backend finds more than 100 requests
#: queued for zurl (OUT_HWM 100 in src/corelib/zhttpmanager.cpp, ErrorUnavailable in
#: zhttprequest.cpp), as 200 clients sending at the same instant would on 2 busy cores.
PUSHPIN_QUEUE_ROOM = 60
WARM_UP = min(3.0, SECONDS / 4)
MAX_RSS_GROWTH = 20 * 1024 * 1024
ProxiedAppFactory = Callable[..., ProxiedApp]


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class Client:
    number: int
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    sent: int = 0
    received: int = 0
    #: Replies that were not the next message this client sent: (expected, got).
    wrong: list[tuple[str, str]] = field(default_factory=list)

    def message(self, sequence: int) -> str:
        return f"client-{self.number}:{sequence}:{self.nonce}"

    async def run(
        self,
        url: str,
        room: anyio.Semaphore,
        ready: anyio.Event,
        go: anyio.Event,
        stop: anyio.Event,
    ) -> None:
        async with room:
            websocket = await connect(url, open_timeout=60, close_timeout=10)
        try:
            await self.exchange(websocket, room, ready, go, stop)
        finally:
            # A close is a request to the backend too (CLOSE): when the run stops, 200 of
            # them at once would overflow Pushpin's queue and drop the clients still waiting
            # for their last replies, so closes take room like messages do.
            async with room:
                await websocket.close()

    async def exchange(
        self,
        websocket: ClientConnection,
        room: anyio.Semaphore,
        ready: anyio.Event,
        go: anyio.Event,
        stop: anyio.Event,
    ) -> None:
        ready.set()
        await go.wait()
        in_flight: deque[str] = deque()
        while not (stop.is_set() and not in_flight):
            while not stop.is_set() and len(in_flight) < IN_FLIGHT:
                # Wait for room only with nothing in flight: a client waiting for room
                # while its own replies go unread would never give any back.
                if not in_flight:
                    await room.acquire()
                else:
                    try:
                        room.acquire_nowait()
                    except anyio.WouldBlock:
                        break
                message = self.message(self.sent)
                await websocket.send(message)
                in_flight.append(message)
                self.sent += 1
            expected = in_flight.popleft()
            got = await websocket.recv()
            room.release()
            if got == expected:
                self.received += 1
            else:
                self.wrong.append((expected, str(got)))
                return


@pytest.mark.anyio
async def test_200_clients_get_exactly_their_own_messages_back(
    proxied_app: ProxiedAppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = proxied_app("examples.fastapi_app:app")
    pid = app.server.pid
    assert pid is not None
    clients = [Client(number) for number in range(CLIENTS)]
    go, stop = anyio.Event(), anyio.Event()
    room = anyio.Semaphore(PUSHPIN_QUEUE_ROOM)

    with anyio.fail_after(SECONDS + 120):
        async with anyio.create_task_group() as tasks:
            connected = []
            for client in clients:
                ready = anyio.Event()
                tasks.start_soon(client.run, f"{app.ws_url}/echo", room, ready, go, stop)
                connected.append(ready)
            for ready in connected:
                await ready.wait()
            go.set()
            await anyio.sleep(WARM_UP)
            rss_after_warm_up = rss_bytes(pid)
            await anyio.sleep(SECONDS - WARM_UP)
            rss_at_end = rss_bytes(pid)
            stop.set()

    sent = sum(client.sent for client in clients)
    received = sum(client.received for client in clients)
    wrong = [pair for client in clients for pair in client.wrong]
    cross_talk = [
        (expected, got) for expected, got in wrong if got.split(":")[0] != expected.split(":")[0]
    ]
    growth = rss_at_end - rss_after_warm_up
    with capsys.disabled():
        print(
            f"\n[load] {CLIENTS} clients for {SECONDS:g} s: {sent} messages sent, "
            f"{received} echoed to their sender in order, {sent - received} lost or wrong, "
            f"{len(cross_talk)} cross-talk; backend RSS {rss_after_warm_up / 2**20:.1f} MiB "
            f"after warm-up, {rss_at_end / 2**20:.1f} MiB at the end ({growth / 2**20:+.1f} MiB)"
        )
    assert not wrong, wrong[:5]
    assert received == sent
    assert all(client.received > 0 for client in clients)
    assert growth < MAX_RSS_GROWTH
