"""The point of GRIP, end to end: N WebSocket clients in a chat room, then one publish.

Three stacks run side by side, each in its own processes, and every round publishes to each
of them in turn (so they share the machine's noise):

- ours: ``examples.fastapi_app`` (GripMiddleware) under uvicorn, behind its own Pushpin;
- gripcontrol: the same chat hand-written on gripcontrol (``benchmarks.chat_apps``), behind
  its own Pushpin;
- native: the same chat on native Starlette WebSockets, where uvicorn holds the connections.

Measured: the time from the publish call until each client has the message (p50, p99, max)
and how much the backend's memory (RSS) grew to hold the clients, plus Pushpin's own growth:
behind a GRIP proxy the connections cost memory in the proxy tier instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from grip_asgi import Publisher
from grip_asgi.pushpin import Pushpin, _free_ports

from ._harness import Result

__all__ = ("Room", "ServerProcess", "percentile", "rss_kib", "run", "tree_rss_kib")

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOM = "bench"
#: 32 bytes or more: gripcontrol's PyJWT check warns on every request with a short key.
SIG_KEY = "benchmark-grip-sig-key-0123456789"
_CONNECT_CONCURRENCY = 50
_DELIVERY_TIMEOUT = 60.0


# --- Processes and their memory --------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The fields after the command name, which may hold spaces and parentheses.
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def tree_rss_kib(pid: int) -> int:
    """The RSS of ``pid`` and all its descendants, in KiB (Pushpin runs five processes)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += rss_kib(current)
        pending.extend(_children(current))
    return total


class ServerProcess:
    """uvicorn serving ``app`` on 127.0.0.1, in its own session, stopped by process group."""

    def __init__(self, app: str, port: int, env: dict[str, str] | None = None) -> None:
        self.app = app
        self.port = port
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30) -> None:
        argv = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"uvicorn {self.app} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- Clients -------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 is p99) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


@dataclass
class Room:
    """N WebSocket clients in one chat room, and when each got the message being timed."""

    url: str
    size: int
    expected: str | None = None
    received_at: list[float | None] = field(default_factory=list)
    heard: set[int] = field(default_factory=set)
    arrived: int = 0
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    connections: list[ClientConnection] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        self.received_at = [None] * self.size
        gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

        async def open_one(index: int) -> None:
            async with gate:
                ws = await connect(self.url, compression=None, ping_interval=None, open_timeout=60)
            self.connections.append(ws)
            self.readers.append(asyncio.create_task(self._read(index, ws)))

        await asyncio.gather(*(open_one(i) for i in range(self.size)))

    async def _read(self, index: int, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for message in ws:
                now = time.perf_counter()
                self.heard.add(index)
                if message == self.expected and self.received_at[index] is None:
                    self.received_at[index] = now
                    self.arrived += 1
                    if self.arrived == self.size:
                        self.all_arrived.set()

    async def wait_subscribed(self, publish: Callable[[str], Awaitable[None]]) -> int:
        """Publish until every client heard something (a subscription races its publish)."""
        attempts = 0
        deadline = time.monotonic() + _DELIVERY_TIMEOUT
        while len(self.heard) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.size - len(self.heard)} clients never subscribed")
            attempts += 1
            await publish(f"warm-up {attempts}")
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.3)  # let late warm-ups drain
        return attempts

    async def time_delivery(
        self, payload: str, publish: Callable[[str], Awaitable[None]]
    ) -> list[float]:
        """Seconds from the publish call to each client's receipt of ``payload``."""
        self.expected = payload
        self.received_at = [None] * self.size
        self.arrived = 0
        self.all_arrived.clear()
        start = time.perf_counter()
        await publish(payload)
        await asyncio.wait_for(self.all_arrived.wait(), _DELIVERY_TIMEOUT)
        return [at - start for at in self.received_at if at is not None]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)


# --- The stacks ----------------------------------------------------------------------------


@dataclass
class Stack:
    name: str
    server: ServerProcess
    ws_url: str
    publish: Callable[[str], Awaitable[None]]
    pushpin: Pushpin | None = None
    room: Room | None = None
    backend_kib: int = 0
    pushpin_kib: int = 0
    rounds: list[list[float]] = field(default_factory=list)

    def memory(self) -> tuple[int, int]:
        pushpin = 0 if self.pushpin is None or self.pushpin.pid is None else self.pushpin.pid
        return rss_kib(self.server.pid), tree_rss_kib(pushpin) if pushpin else 0


def _raise_fd_limit(clients: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * clients + 1024
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(
                f"{clients} clients need {needed} file descriptors; the limit is {hard}"
            )
        # The servers inherit it too: native uvicorn holds every connection itself.
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _ours_publish(publisher: Publisher) -> Callable[[str], Awaitable[None]]:
    async def publish(text: str) -> None:
        await publisher.publish_websocket(ROOM, text)

    return publish


def _gripcontrol_publish(control_url: str) -> Callable[[str], Awaitable[None]]:
    from gripcontrol import GripPubControl, WebSocketMessageFormat
    from pubcontrol import Item

    pubcontrol = GripPubControl({"control_uri": control_url})

    async def publish(text: str) -> None:
        item = Item(WebSocketMessageFormat(text))
        # The blocking publish, in a thread, as a sync web app would call it.
        await asyncio.to_thread(pubcontrol.publish, ROOM, item, blocking=True)

    return publish


@contextlib.contextmanager
def _stacks(
    clients: int,
) -> Iterator[tuple[list[Stack], list[Callable[[], Awaitable[None]]]]]:
    """The three stacks, started; the publishers' closers must run on the loop that used them."""

    with contextlib.ExitStack() as cleanup:
        ours_port, gc_port, native_port = _free_ports(3)
        stacks = []
        closers: list[Callable[[], Awaitable[None]]] = []
        for name, app, port in (
            ("ours", "examples.fastapi_app:app", ours_port),
            ("gripcontrol", "benchmarks.chat_apps:gripcontrol_app", gc_port),
        ):
            # condure 1.9 panics when a publish reaches ~90% of client_maxconn: leave room.
            # The stock message_rate (2500/s) would pace every fan-out to N / 2500 s, the
            # same for both stacks; lifted, the time measures the stacks themselves.
            pushpin = Pushpin(
                f"127.0.0.1:{port}",
                max_connections=max(5000, 5 * clients),
                message_rate=None,
                sig_key=SIG_KEY,
                log_level=1,
            )
            server = ServerProcess(app, port, {"GRIP_URL": pushpin.grip_url})
            server.start()
            cleanup.callback(server.stop)
            pushpin.start()
            cleanup.callback(pushpin.stop)
            if name == "ours":
                publisher = Publisher(pushpin.control_url)
                closers.append(publisher.aclose)
                publish = _ours_publish(publisher)
            else:
                publish = _gripcontrol_publish(pushpin.control_url)
            stacks.append(Stack(name, server, f"{pushpin.ws_url}/chat/{ROOM}", publish, pushpin))
        native = ServerProcess("benchmarks.chat_apps:native_app", native_port)
        native.start()
        cleanup.callback(native.stop)
        native_client = httpx.AsyncClient()
        closers.append(native_client.aclose)

        async def native_publish(text: str) -> None:
            response = await native_client.post(
                f"http://127.0.0.1:{native_port}/publish/{ROOM}", content=text
            )
            response.raise_for_status()

        native_url = f"ws://127.0.0.1:{native_port}/chat/{ROOM}"
        stacks.append(Stack("native", native, native_url, native_publish))
        yield stacks, closers


async def _measure(
    stacks: list[Stack], closers: list[Callable[[], Awaitable[None]]], clients: int, rounds: int
) -> None:
    try:
        await _measure_stacks(stacks, clients, rounds)
    finally:
        for stack in stacks:
            if stack.room is not None:
                await stack.room.close()
        for close in closers:
            await close()


async def _measure_stacks(stacks: list[Stack], clients: int, rounds: int) -> None:
    for stack in stacks:
        # Warm the path (imports, caches, pools) with a few clients, then take the baseline.
        warm = Room(stack.ws_url, 5)
        await warm.connect()
        await warm.wait_subscribed(stack.publish)
        await warm.close()
        await asyncio.sleep(0.5)
        backend_before, pushpin_before = stack.memory()
        stack.room = Room(stack.ws_url, clients)
        await stack.room.connect()
        await stack.room.wait_subscribed(stack.publish)
        backend_after, pushpin_after = stack.memory()
        stack.backend_kib = backend_after - backend_before
        stack.pushpin_kib = pushpin_after - pushpin_before
    for round_index in range(rounds):
        for stack in stacks if round_index % 2 == 0 else reversed(stacks):
            assert stack.room is not None
            delays = await stack.room.time_delivery(f"round {round_index}", stack.publish)
            stack.rounds.append(delays)
            await asyncio.sleep(0.2)


def run(clients: int, rounds: int) -> list[Result]:
    _raise_fd_limit(clients)
    with _stacks(clients) as (stacks, closers):
        asyncio.run(_measure(stacks, closers, clients, rounds))
    by_name = {stack.name: stack for stack in stacks}
    return _results(by_name, clients)


def _summary(stack: Stack, fraction: float | None) -> float:
    """The median over rounds of one round's p50/p99 (or max, for None), in ms."""
    per_round = [
        max(delays) if fraction is None else percentile(delays, fraction) for delays in stack.rounds
    ]
    return statistics.median(per_round) * 1000


def _results(stacks: dict[str, Stack], clients: int) -> list[Result]:
    ours, gripcontrol, native = stacks["ours"], stacks["gripcontrol"], stacks["native"]
    results = []
    for label, fraction, target in (
        ("p50", 0.5, None),
        ("p99", 0.99, 1 / 1.2),
        ("max", None, None),
    ):
        results.append(
            Result(
                "e2e",
                f"{clients} clients: publish to all, {label}",
                _summary(ours, fraction),
                _summary(gripcontrol, fraction),
                "ms",
                target=target,
                anchor_name="gripcontrol + Pushpin",
            )
        )
        results.append(
            Result(
                "e2e",
                f"{clients} clients: publish to all, {label}",
                _summary(ours, fraction),
                _summary(native, fraction),
                "ms",
                anchor_name="native Starlette",
            )
        )
    mib = 1024
    results.append(
        Result(
            "e2e",
            f"{clients} clients: backend memory growth",
            ours.backend_kib / mib,
            native.backend_kib / mib,
            "MiB",
            target=10.0,
            anchor_name="native Starlette",
        )
    )
    results.append(
        Result(
            "e2e",
            f"{clients} clients: backend memory growth",
            ours.backend_kib / mib,
            gripcontrol.backend_kib / mib,
            "MiB",
            anchor_name="gripcontrol + Pushpin",
        )
    )
    results.append(
        Result(
            "e2e",
            f"{clients} clients: Pushpin memory growth",
            ours.pushpin_kib / mib,
            gripcontrol.pushpin_kib / mib,
            "MiB",
            anchor_name="gripcontrol's Pushpin",
            note=f"Pushpin holds about {ours.pushpin_kib / clients:.0f} KiB per client",
        )
    )
    results.append(
        Result(
            "e2e",
            f"{clients} clients: backend + Pushpin growth",
            (ours.backend_kib + ours.pushpin_kib) / mib,
            native.backend_kib / mib,
            "MiB",
            anchor_name="native Starlette",
            note="the connections' memory moves to the proxy tier; it does not vanish",
        )
    )
    return results
