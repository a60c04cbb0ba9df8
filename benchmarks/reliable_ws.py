"""Reliable WebSockets (issue 13): what the rules cost, end to end and in-process, in one run.

- **A chat message, end to end**: N members in a room behind a real Pushpin (uvicorn, one
  worker); one of them sends, and the time runs until every member has the message. The
  plain chat publishes each message with ``publish_websocket(room, text)``; the reliable one
  serves the room with ``get_events(request).websocket(room)`` and publishes with
  ``publish_reliable(room, text)`` (a history append, then the event envelope), and its
  members read the envelopes through the client's algorithm (``grip_asgi.client.ClientState``).
  The seed article's echo, one client, is the floor. The issue's target: a reliable message
  costs at most 1.5x a plain one.
- **Resume**: an OPEN with ``?last_event_id=resume:<n-100>`` replays 100 events; what that
  adds to a plain OPEN of the same endpoint, in-process (raw ASGI messages through
  GripMiddleware) and end to end (connect until the 100th replayed event, against connect
  until a plain OPEN's tip). The issue's budget: 10 ms.
- **The rules per request, in-process**: a reliable endpoint that echoes its messages, for a
  TEXT message, a sync of 100 and Pushpin's keep-alive call, against the plain echo.

Everything uses the SQLite history (the default store). Figures are wall time: the SQLite
store's async face waits on its threads, and end to end the work is in three processes.
Run ``python -m benchmarks.reliable_ws`` (or ``python -m benchmarks --only reliable_ws``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect

from grip_asgi import (
    GripMiddleware,
    Publisher,
    WebSocketEvent,
    decode_websocket_events,
    encode_websocket_events,
)
from grip_asgi.client import ClientState, Event
from grip_asgi.events import get_events
from grip_asgi.history import open_history
from grip_asgi.middleware import get_grip_context, get_publisher
from grip_asgi.pushpin import Pushpin, _free_ports

from ._harness import Result, Settings, interleave, median_difference
from .asgi import GRIP_URL, AsgiRequest, asgi_batch, call, echo, grip_token
from .e2e import SIG_KEY, ServerProcess, percentile

__all__ = (
    "MISSED",
    "RESUME_BUDGET_MS",
    "ChatRoom",
    "Workload",
    "app",
    "check_replies",
    "inprocess_requests",
    "make_app",
    "run",
)

#: Events a resuming client missed, and the issue's budget for replaying them, in ms.
MISSED = 100
RESUME_BUDGET_MS = 10.0
#: The most a reliable chat message may cost, as a multiple of a plain one.
RELIABLE_COST_LIMIT = 1.5
ROOM = "bench"
RESUME_CHANNEL = "resume"
#: Events in the resume channel: more than the replay, so it starts past the first event.
RESUME_FILL = MISSED + 50
#: A page small enough that Pushpin 1.36 delivers a whole answer at once (see the README).
SMALL_PAGE = 50
#: A replay not complete after this long is stalled in the proxy; a ping flushes it.
_STALL_SECONDS = 1.0
_TIMEOUT = 30.0


@dataclass(frozen=True)
class Workload:
    """How much the end-to-end parts do: room size, messages per stack, connects per kind."""

    members: int = 10
    messages: int = 400
    connects: int = 40

    @classmethod
    def quick(cls) -> Workload:
        return cls(members=10, messages=60, connects=8)


# --- The app: plain chat, reliable chat, the echo --------------------------------------------


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def plain_chat(request: Request) -> Response:
    """Every text message goes to the room's members with ``publish_websocket``."""
    room = request.path_params["room"]
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse("Not a WebSocket-over-HTTP request\n", status_code=400)
    if ws.is_opening():
        ws.accept()
        ws.subscribe(room)
    publisher = get_publisher(request)
    async for message in ws:
        if isinstance(message, str):
            await publisher.publish_websocket(room, message)
    return Response()


async def reliable_chat(request: Request) -> Response:
    """The same chat on a reliable channel: ``websocket()``, then ``publish_reliable``."""
    return await _reliable_chat(request, page_size=100)


async def reliable_chat_paged(request: Request) -> Response:
    """The reliable chat replaying at most ``SMALL_PAGE`` events per answer."""
    return await _reliable_chat(request, page_size=SMALL_PAGE)


async def _reliable_chat(request: Request, page_size: int) -> Response:
    room = request.path_params["room"]
    socket = await get_events(request).websocket(room, page_size=page_size)
    publisher = get_publisher(request)
    for message in socket.messages:
        if isinstance(message, str):
            await publisher.publish_reliable(room, message)
    return Response()


async def reliable_echo(request: Request) -> Response:
    """A reliable endpoint that echoes its messages: the plain echo plus the rules alone."""
    socket = await get_events(request).websocket(request.path_params["room"])
    for message in socket.messages:
        if isinstance(message, bytes):
            socket.ws.send_binary(message)
        else:
            socket.ws.send(message)
    return Response()


def make_app(grip: str | None = None, publisher: Publisher | None = None) -> Starlette:
    """The benchmark's endpoints behind GripMiddleware (None: configured from the env)."""
    return Starlette(
        routes=[
            Route("/", _health),
            Route("/echo", echo, methods=["POST"]),
            Route("/plain/{room}", plain_chat, methods=["POST"]),
            Route("/reliable/{room}", reliable_chat, methods=["POST"]),
            Route("/reliable-paged/{room}", reliable_chat_paged, methods=["POST"]),
            Route("/reliable-echo/{room}", reliable_echo, methods=["POST"]),
        ],
        middleware=[Middleware(GripMiddleware, grip=grip, publisher=publisher)],
    )


#: For uvicorn: GRIP_URL and GRIP_HISTORY_URL come from the environment.
app = make_app()


# --- End to end: clients -----------------------------------------------------------------------


@dataclass
class ChatRoom:
    """``size`` WebSocket clients of one endpoint, and when each got the message being timed.

    Reliable members feed every message to a :class:`ClientState`, as the Python client does,
    and send what it asks for (a sync, should a gap appear); the text compared is the event's
    data. Plain members compare the message itself.
    """

    url: str
    size: int
    reliable: bool
    expected: str | None = None
    arrived_at: list[float | None] = field(default_factory=list)
    heard: set[int] = field(default_factory=set)
    states: list[ClientState] = field(default_factory=list)
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    connections: list[ClientConnection] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        self.arrived_at = [None] * self.size
        for index in range(self.size):
            ws = await connect(self.url, compression=None, ping_interval=None, open_timeout=30)
            self.connections.append(ws)
            self.states.append(ClientState())
            self.readers.append(asyncio.create_task(self._read(index, ws)))

    async def _read(self, index: int, ws: ClientConnection) -> None:
        state = self.states[index]
        async for message in ws:
            now = time.perf_counter()
            if self.reliable:
                texts = [item.data for item in state.receive(message) if isinstance(item, Event)]
                for sync in state.outgoing():
                    await ws.send(sync)
            else:
                texts = [message] if isinstance(message, str) else []
            for text in texts:
                self.heard.add(index)
                if text == self.expected and self.arrived_at[index] is None:
                    self.arrived_at[index] = now
                    if all(at is not None for at in self.arrived_at):
                        self.all_arrived.set()

    async def wait_subscribed(self) -> None:
        """Send until every member heard a message (a subscription races the first send)."""
        deadline = time.monotonic() + _TIMEOUT
        attempt = 0
        while len(self.heard) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}: {self.size - len(self.heard)} never subscribed")
            attempt += 1
            await self.connections[0].send(f"warm-up {attempt}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # let late warm-ups drain

    async def deliver(self, text: str) -> float:
        """Seconds from member 0's send of ``text`` until every member has it."""
        self.expected = text
        self.arrived_at = [None] * self.size
        self.all_arrived.clear()
        start = time.perf_counter()
        await self.connections[0].send(text)
        await asyncio.wait_for(self.all_arrived.wait(), _TIMEOUT)
        return max(at for at in self.arrived_at if at is not None) - start

    def repairs(self) -> int:
        return sum(state.stats.repairs + state.stats.duplicates for state in self.states)

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)


@dataclass(frozen=True)
class _Opened:
    seconds: float
    #: The OPEN response stalled in the proxy and a ping of ours flushed it.
    stalled: bool


async def _open_and_read(url: str, replayed: int) -> _Opened:
    """From connect until the client has the ``replayed`` events it resumes with (syncing for
    more when the server pages), or with none expected, the OPEN response's tip.

    A replay that stops for ``_STALL_SECONDS`` is stalled in the proxy: a ping makes Pushpin
    send the rest (else it waits for its keep-alive call, 20 s). Raises unless exactly the
    expected ids came.
    """
    after = RESUME_FILL - replayed
    state = ClientState({RESUME_CHANNEL: after} if replayed else None)
    ids: list[int] = []
    stalled = False
    start = time.perf_counter()
    async with connect(url, compression=None, ping_interval=None, open_timeout=30) as ws:
        async with asyncio.timeout(_TIMEOUT):
            while len(ids) < replayed or RESUME_CHANNEL not in state.positions:
                try:
                    message = await asyncio.wait_for(ws.recv(), _STALL_SECONDS)
                except TimeoutError:
                    stalled = True
                    await ws.ping()
                    continue
                arrived = time.perf_counter()
                ids += [item.id for item in state.receive(message) if isinstance(item, Event)]
                for sync in state.outgoing():
                    await ws.send(sync)
    if ids != list(range(after + 1, RESUME_FILL + 1)):
        raise AssertionError(f"{url}: got ids {ids[:2]}...{ids[-1:]}, wanted {after + 1} on")
    return _Opened(arrived - start, stalled)


# --- End to end: the run ---------------------------------------------------------------------


@dataclass
class _Stack:
    name: str
    room: ChatRoom
    times: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _served(directory: str) -> Iterator[Pushpin]:
    """This module's app under uvicorn behind a Pushpin, on a SQLite history in
    ``directory`` whose resume channel holds ``RESUME_FILL`` events."""
    history_url = f"sqlite:///{directory}/e2e.db"
    store = open_history(history_url)
    try:
        for i in range(1, RESUME_FILL + 1):
            store.sync.append(RESUME_CHANNEL, _chat_text(i))
    finally:
        store.sync.close()
    with contextlib.ExitStack() as cleanup:
        port = _free_ports(1)[0]
        # The stock message_rate (2500/s, every copy counted) would pace the room's fan-out.
        pushpin = Pushpin(f"127.0.0.1:{port}", message_rate=None, sig_key=SIG_KEY, log_level=1)
        env = {"GRIP_URL": pushpin.grip_url, "GRIP_HISTORY_URL": history_url}
        server = ServerProcess("benchmarks.reliable_ws:app", port, env)
        server.start()
        cleanup.callback(server.stop)
        pushpin.start()
        cleanup.callback(pushpin.stop)
        yield pushpin


def _chat_text(number: int) -> str:
    return f"message {number:06d}: hello from the reliable WebSocket benchmark"


async def _end_to_end(ws_url: str, workload: Workload, rounds: int) -> list[Result]:
    stacks = [
        _Stack("echo", ChatRoom(f"{ws_url}/echo", 1, reliable=False)),
        _Stack("plain", ChatRoom(f"{ws_url}/plain/{ROOM}", workload.members, reliable=False)),
        _Stack("reliable", ChatRoom(f"{ws_url}/reliable/{ROOM}", workload.members, reliable=True)),
    ]
    try:
        for stack in stacks:
            await stack.room.connect()
            await stack.room.wait_subscribed()
        per_round = max(1, workload.messages // rounds)
        number = 0
        for round_index in range(rounds):
            for stack in stacks if round_index % 2 == 0 else reversed(stacks):
                for _ in range(per_round):
                    number += 1
                    stack.times.append(await stack.room.deliver(_chat_text(number)))
        repairs = stacks[2].room.repairs()
    finally:
        for stack in stacks:
            await stack.room.close()
    resume = await _resume_end_to_end(ws_url, workload.connects)
    return _chat_results({s.name: s.times for s in stacks}, workload, repairs) + resume


async def _resume_end_to_end(ws_url: str, connects: int) -> list[Result]:
    """A plain OPEN against a resuming one, with the default page (100: one answer) and
    with ``SMALL_PAGE`` (the OPEN answer, then a sync), interleaved."""
    query = f"?last_event_id={RESUME_CHANNEL}:{RESUME_FILL - MISSED}"
    urls = {
        "plain": (f"{ws_url}/reliable/{RESUME_CHANNEL}", 0),
        "resume": (f"{ws_url}/reliable/{RESUME_CHANNEL}{query}", MISSED),
        "paged": (f"{ws_url}/reliable-paged/{RESUME_CHANNEL}{query}", MISSED),
    }
    for url, replayed in urls.values():
        await _open_and_read(url, replayed)  # warm-up, untimed
    opened: dict[str, list[_Opened]] = {name: [] for name in urls}
    for index in range(connects):
        for name in urls if index % 2 == 0 else reversed(urls):
            opened[name].append(await _open_and_read(*urls[name]))
    ms = {name: [o.seconds * 1000 for o in values] for name, values in opened.items()}
    stalls = {name: sum(o.stalled for o in values) for name, values in opened.items()}
    plain = statistics.median(ms["plain"])
    results = []
    for name, workload, target in (
        ("resume", f"resume replaying {MISSED} events: time added, through Pushpin", 1.0),
        (
            "paged",
            f"resume replaying {MISSED} events, {SMALL_PAGE} a page (OPEN + 1 sync): time "
            "added, through Pushpin",
            None,
        ),
    ):
        note = (
            f"connect until the {MISSED}th replayed event: {statistics.median(ms[name]):.2f} ms,"
            f" a plain OPEN until its tip {plain:.2f} ms (medians of {connects})"
        )
        if stalls[name]:
            note += (
                f"; {stalls[name]} of {connects} replays STALLED in Pushpin for "
                f"{_STALL_SECONDS:.0f} s until the client pinged (without a ping: until "
                "Pushpin's keep-alive call, 20 s)"
            )
        results.append(
            Result(
                "reliable ws",
                workload,
                median_difference(ms[name], ms["plain"]),
                RESUME_BUDGET_MS,
                "ms",
                target=target,
                anchor_name="the issue's budget",
                note=note,
            )
        )
    if stalls["plain"]:
        raise AssertionError(f"{stalls['plain']} plain OPENs stalled: the proxy is not well")
    return results


def _chat_results(times: dict[str, list[float]], workload: Workload, repairs: int) -> list[Result]:
    members = workload.members
    results = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        ms = {name: percentile(values, fraction) * 1000 for name, values in times.items()}
        results.append(
            Result(
                "reliable ws",
                f"chat message to {members} members through Pushpin, {label}",
                ms["reliable"],
                ms["plain"],
                "ms",
                target=1 / RELIABLE_COST_LIMIT,
                anchor_name="plain publish_websocket chat",
                note=(
                    f"history store: SQLite (the default); {len(times['reliable'])} messages a"
                    f" stack; the reliable members repaired or dropped {repairs} events"
                )
                if label == "p50"
                else "",
            )
        )
        for name in ("reliable", "plain"):
            results.append(
                Result(
                    "reliable ws",
                    f"{name} chat message to {members} members through Pushpin, {label}",
                    ms[name],
                    ms["echo"],
                    "ms",
                    anchor_name="the plain echo (floor), 1 client",
                )
            )
    return results


# --- In-process: raw ASGI messages through GripMiddleware --------------------------------------


def _socket_request(
    token: str,
    path: str,
    *events: WebSocketEvent,
    query: str = "",
    channels: str | None = None,
) -> AsgiRequest:
    """A WebSocket-over-HTTP request as Pushpin sends it; ``channels`` is the connection's
    meta that the reliable endpoint set at open."""
    headers = [
        (b"grip-sig", token.encode()),
        (b"content-type", b"application/websocket-events"),
        (b"connection-id", b"bench-1"),
    ]
    if channels is not None:
        headers.append((b"meta-grip-channels", channels.encode()))
        # Told the tip "just now" for the whole run (the request is replayed for minutes):
        # the timed request is the message itself, not the periodic tip.
        headers.append((b"meta-grip-tipped", str(int(time.time()) + 3600).encode()))
    request = AsgiRequest("POST", path, headers, encode_websocket_events(events))
    # AsgiRequest builds its scope with no query; the scope dict itself is ours to set.
    request.scope["query_string"] = query.encode()
    return request


def inprocess_requests(token: str, last_id: int) -> dict[str, AsgiRequest]:
    """The in-process requests: echo and reliable echo of one TEXT, a sync of ``MISSED``, a
    keep-alive call, and a plain and a resuming OPEN (the channel's latest id: ``last_id``)."""
    reliable = f"/reliable-echo/{RESUME_CHANNEL}"
    text = WebSocketEvent("TEXT", b"hello")
    sync = json.dumps({"grip": "sync", "last_event_id": f"{RESUME_CHANNEL}:{last_id - MISSED}"})
    opening = WebSocketEvent("OPEN")
    return {
        "echo": _socket_request(token, "/echo", text),
        "text": _socket_request(token, reliable, text, channels=RESUME_CHANNEL),
        "sync": _socket_request(
            token, reliable, WebSocketEvent("TEXT", sync.encode()), channels=RESUME_CHANNEL
        ),
        "keep-alive": _socket_request(token, reliable, channels=RESUME_CHANNEL),
        "open": _socket_request(token, reliable, opening),
        "resume": _socket_request(
            token,
            reliable,
            opening,
            query=f"last_event_id={RESUME_CHANNEL}:{last_id - MISSED}",
        ),
    }


def _messages(body: bytes) -> list[str]:
    """The text messages of a WebSocket-over-HTTP reply (``m:`` stripped; control left out)."""
    texts = [
        event.content or b"" for event in decode_websocket_events(body) if event.type == "TEXT"
    ]
    return [text.decode()[2:] for text in texts if text.startswith(b"m:")]


def check_replies(
    loop: asyncio.AbstractEventLoop, app: Starlette, requests: dict[str, AsgiRequest], last: int
) -> None:
    """Raise unless every request gets the answer it is timed for."""

    def reply(name: str) -> tuple[list[str], list[str]]:
        status, _, body = loop.run_until_complete(call(app, requests[name]))
        if status != 200:
            raise AssertionError(f"{name}: status {status} {body[:200]!r}")
        types = [event.type for event in decode_websocket_events(body)]
        return _messages(body), types

    def ids(messages: list[str]) -> list[int]:
        """The ids replayed, single or in batches (``{"grip": "events", ...}``)."""
        out = []
        for text in messages:
            message = json.loads(text)
            if message.get("grip") == "events":
                out += [event["id"] for event in message["events"]]
            elif "grip" not in message:
                out.append(message["id"])
        return out

    replayed = list(range(last - MISSED + 1, last + 1))
    tip = json.dumps({"grip": "tip", "ids": {RESUME_CHANNEL: last}}, separators=(",", ":"))
    checks = {
        "echo": lambda m, t: m == ["hello"],
        "text": lambda m, t: m == ["hello"],
        "sync": lambda m, t: ids(m) == replayed and m[-1] == tip,
        "keep-alive": lambda m, t: m == [tip] and "PING" in t,
        "open": lambda m, t: m == [tip] and t[0] == "OPEN",
        "resume": lambda m, t: ids(m) == replayed and m[-1] == tip and t[0] == "OPEN",
    }
    for name, check in checks.items():
        messages, types = reply(name)
        if not check(messages, types):
            raise AssertionError(f"{name}: unexpected reply {types} {messages[:2]}...")


def _in_process(settings: Settings, directory: str) -> list[Result]:
    loop = asyncio.new_event_loop()
    store = open_history(f"sqlite:///{directory}/in-process.db")
    publisher = Publisher(GRIP_URL, history=store)  # nothing here publishes
    try:
        for i in range(1, RESUME_FILL + 1):
            store.sync.append(RESUME_CHANNEL, _chat_text(i))
        app = make_app(grip=GRIP_URL, publisher=publisher)
        requests = inprocess_requests(grip_token(), RESUME_FILL)
        check_replies(loop, app, requests, RESUME_FILL)
        batches = {name: asgi_batch(loop, app, [request]) for name, request in requests.items()}
        rules = interleave(
            {k: batches[k] for k in ("echo", "text", "sync", "keep-alive")}, settings
        )
        opens = interleave({k: batches[k] for k in ("open", "resume")}, settings)
    finally:
        loop.run_until_complete(publisher.aclose())
        loop.run_until_complete(store.aclose())
        loop.close()
    results = []
    echo_us = statistics.median(rules["echo"]) / 1000
    for key, workload in (
        ("text", "TEXT message: the rules + the echo"),
        ("sync", f"sync of {MISSED}: reply with {MISSED} events + tip"),
        ("keep-alive", "keep-alive call: ping + tip"),
    ):
        us = statistics.median(rules[key]) / 1000
        added = median_difference(rules[key], rules["echo"]) / 1000
        results.append(
            Result(
                "reliable ws",
                f"in-process, {workload}",
                us,
                echo_us,
                "us",
                anchor_name="plain echo of one TEXT",
                note=f"{added:,.1f} us more than the plain echo of one TEXT message",
            )
        )
    added_ms = median_difference(opens["resume"], opens["open"]) / 1e6
    results.append(
        Result(
            "reliable ws",
            f"resume replaying {MISSED} events: time added, in-process",
            added_ms,
            RESUME_BUDGET_MS,
            "ms",
            target=1.0,
            anchor_name="the issue's budget",
            note=(
                f"an OPEN through GripMiddleware takes {statistics.median(opens['open']) / 1e6:.2f}"
                f" ms plain, {statistics.median(opens['resume']) / 1e6:.2f} ms resuming {MISSED}"
            ),
        )
    )
    return results


def run(settings: Settings, workload: Workload | None = None) -> list[Result]:
    """Every part, in this process (plus uvicorn and Pushpin for the end-to-end ones)."""
    workload = workload or Workload()
    # Wall time always (see the module's docstring); the store's calls want longer batches.
    settings = replace(settings, clock="wall", batch_seconds=settings.batch_seconds * 2)
    with tempfile.TemporaryDirectory(prefix="grip-bench-reliable-ws-") as directory:
        print("  reliable_ws: in-process ...", file=sys.stderr, flush=True)
        results = _in_process(settings, directory)
        print("  reliable_ws: end to end ...", file=sys.stderr, flush=True)
        with _served(directory) as pushpin:
            rounds = max(2, settings.rounds)
            results = asyncio.run(_end_to_end(pushpin.ws_url, workload, rounds)) + results
    return results


def main(argv: Sequence[str] | None = None) -> int:
    from .__main__ import print_report

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reliable_ws",
        description="Reliable WebSockets against plain ones: end to end through Pushpin and "
        "in-process, with the SQLite history.",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (3 rounds)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per comparison")
    parser.add_argument("--members", type=int, default=None, help="clients in the chat room")
    parser.add_argument("--messages", type=int, default=None, help="messages timed per chat")
    parser.add_argument("--connects", type=int, default=None, help="connects timed per kind")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    settings = Settings.quick() if args.quick else Settings()
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    workload = Workload.quick() if args.quick else Workload()
    for name in ("members", "messages", "connects"):
        if getattr(args, name) is not None:
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be 1 or more")
            workload = replace(workload, **{name: getattr(args, name)})
    started = time.monotonic()
    results = run(settings, workload)
    command = ["python", "-m", "benchmarks.reliable_ws", *(argv or sys.argv[1:])]
    print_report(results, [], command, time.monotonic() - started, markdown=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
