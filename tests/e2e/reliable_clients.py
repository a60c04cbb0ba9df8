"""The machinery of the reliable-delivery runs: the app stacks, a counting publisher, and
counting subscribers: SSE as a browser's EventSource, and long-poll, both on httpx, both
dropping their connection at random while messages flow (the WebSocket subscribers, on
``grip_asgi.client``, are in ``test_reliable_ws.py``).

Every subscriber keeps what it received, per channel, with the id it came with;
:func:`check_delivery` compares that with what was published and counts duplicates, gaps and
misplaced messages. Messages name their channel first (``"news 0042 ..."``), so a subscriber
of several channels can sort them without trusting the ids it checks.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import anyio
import httpx

from grip_asgi.pushpin import Pushpin

from .servers import GunicornServer, ProcessServer, UvicornServer

#: Summary lines of the scenarios run in this session, for the terminal summary.
RESULTS: list[str] = []

#: ``GRIP_SOAK_SECONDS=600``: the chaos runs publish for that long instead of a short CI run.
SOAK_SECONDS = float(os.environ.get("GRIP_SOAK_SECONDS", "0"))
#: Messages a second the chaos runs publish (both channels together).
PUBLISH_RATE = 40.0
#: What Pushpin 1.36 logs for each delivery it drops past message_hwm.
HWM_DROPPED = "exceeded publish hwm"


# An SSE stream ends a line at CRLF, CR or LF (WHATWG HTML §9.2.6).
_LINE_END = re.compile(r"\r\n|\r|\n")


# --- Messages -------------------------------------------------------------------------------


def message_text(channel: str, number: int) -> str:
    """The ``number``-th message of ``channel``: its channel first, then a text of one of
    the kinds that must survive the trip unchanged."""
    head = f"{channel} {number:05d}"
    kind = number % 5
    if kind == 0:  # build-id renders %I and %(name)s in templates: these must stay literal
        return f"{head} 100% sure: %I %(reliable:{channel})s %% %s"
    if kind == 1:  # SSE multi-line data, with an empty line and a trailing line break
        return f"{head} line one\nline two\n\nline four\n"
    if kind == 2:
        return f"{head} non-ASCII: héllo wörld, 日本語, ✓ 🚀"
    if kind == 3:
        return f'{head} {{"json": [1, 2, 3], "quote": "a, b; c"}}'
    return f"{head} plain"


def channel_of(text: str) -> str:
    return text.split(" ", 1)[0]


def parse_positions(text: str) -> dict[str, int]:
    """``news:12,alerts:3`` as ``{"news": 12, "alerts": 3}`` (the client's own reading)."""
    positions = {}
    for part in text.split(","):
        channel, _, last = part.rpartition(":")
        positions[channel] = int(last)
    return positions


def format_positions(positions: Mapping[str, int]) -> str:
    return ",".join(f"{channel}:{last}" for channel, last in positions.items())


# --- What the publisher sent, and when subscribers may stop ---------------------------------


@dataclass
class Published:
    """The messages stored per channel, in order; ``done`` once the publisher has finished."""

    channels: tuple[str, ...]
    messages: dict[str, list[str]] = field(default_factory=dict)
    done: bool = False

    def __post_init__(self) -> None:
        self.messages = {channel: [] for channel in self.channels}

    def last_messages(self) -> dict[str, str]:
        return {channel: texts[-1] for channel, texts in self.messages.items() if texts}


@dataclass
class Chaos:
    """When and how a subscriber drops its connection: while ``active()``, each connection
    lives a random time in ``lifetime`` seconds, and the next one opens after a random
    pause in ``pause`` seconds (EventSource's reconnection time, shortened)."""

    active: Callable[[], bool]
    lifetime: tuple[float, float] = (0.3, 2.0)
    pause: tuple[float, float] = (0.0, 0.3)

    def next_lifetime(self, rng: random.Random) -> float:
        return rng.uniform(*self.lifetime) if self.active() else math.inf

    def next_pause(self, rng: random.Random) -> float:
        return rng.uniform(*self.pause)


NO_CHAOS = Chaos(active=lambda: False)


# --- The apps, their servers, and the publisher -------------------------------------------


def starlette(port: int, env: dict[str, str], workers: int) -> ProcessServer:
    return UvicornServer("tests.e2e.reliableapp:app", port=port, env=env, workers=workers)


def django_asgi(port: int, env: dict[str, str], workers: int) -> ProcessServer:
    env = {**env, "RELIABLE_DJANGO_VIEWS": "async"}
    app = "tests.e2e.reliable_django:application"
    return UvicornServer(app, port=port, env=env, workers=workers, extra_args=["--lifespan", "off"])


def django_wsgi(port: int, env: dict[str, str], workers: int) -> ProcessServer:
    env = {**env, "RELIABLE_DJANGO_VIEWS": "sync"}
    app = "tests.e2e.reliable_django:application"
    return GunicornServer(app, port=port, workers=workers, env=env)


STACKS: dict[str, Callable[[int, dict[str, str], int], ProcessServer]] = {
    "starlette": starlette,
    "django-asgi": django_asgi,
    "django-wsgi": django_wsgi,
}


@dataclass(frozen=True)
class Scenario:
    """One deployment, and for a chaos run what goes wrong."""

    trouble: str  # chaos | restart | outage | hwm | steps (the step-by-step tests)
    stack: str
    store: str  # sqlite | redis
    workers: int = 1
    transport: str = "sse"  # sse | poll | ws
    #: Subscribers drop their connections at random while messages flow.
    chaos: bool = True
    #: Pushpin's per-route delivery queue; past it, deliveries are dropped.
    message_hwm: int = 25000

    @property
    def id(self) -> str:
        workers = f"-{self.workers}workers" if self.workers > 1 else ""
        return f"{self.transport}-{self.trouble}-{self.stack}-{self.store}{workers}"

    @property
    def pushpins(self) -> int:
        return 2 if self.trouble == "outage" else 1


@dataclass
class PublishStats:
    stored: int = 0
    #: Publishes that a proxy did not take (502): stored, so subscribers recover them.
    not_taken: int = 0
    errors: list[str] = field(default_factory=list)


async def publish_all(
    server: ProcessServer,
    published: Published,
    count: int,
    stats: PublishStats,
    trouble: dict[int, Callable[[], None]],
) -> None:
    """POST ``count`` messages to the app, alternating channels, at about PUBLISH_RATE a
    second; before message ``n``, start ``trouble[n]`` in a thread (publishing goes on).
    A proxy that does not take a publish (502) is counted: the message is stored all the same."""
    rng = random.Random(count)
    channels = published.channels
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=15) as http,
        anyio.create_task_group() as tasks,
    ):
        for number in range(count):
            if number in trouble:
                tasks.start_soon(anyio.to_thread.run_sync, trouble[number])
            channel = channels[number % len(channels)]
            stored_id = len(published.messages[channel]) + 1
            text = message_text(channel, stored_id)
            response = await http.post(f"/publish/{channel}", content=text.encode())
            if response.status_code == 200:
                answer = response.json()["id"]
                assert answer == stored_id, f"{text!r} stored as {answer}, not {stored_id}"
                stats.stored += 1
            elif response.status_code == 502:
                stats.not_taken += 1
                stats.errors.append(response.json()["error"])
            else:
                raise AssertionError(f"publishing {text!r}: {response.status_code} {response.text}")
            published.messages[channel].append(text)
            await anyio.sleep(rng.uniform(0, 2 / PUBLISH_RATE))
    published.done = True


def hwm_drops(pushpins: Sequence[Pushpin]) -> int:
    return sum(pushpin.read_log().count(HWM_DROPPED) for pushpin in pushpins)


# --- Subscribers ----------------------------------------------------------------------------


@dataclass
class Received:
    """One message as a subscriber got it: its text and the id it came with."""

    channel: str
    id: int | None
    text: str


@dataclass
class Subscriber:
    """What one subscriber did and got."""

    name: str
    base_url: str
    channels: tuple[str, ...]
    seed: int
    received: list[Received] = field(default_factory=list)
    #: Connections (SSE) or polls (long-poll) attempted.
    requests: int = 0
    #: Connections (SSE) or polls (long-poll) answered.
    connects: int = 0
    #: Connections this client dropped on purpose (chaos).
    dropped: int = 0
    #: Connections the server or the network ended (a Pushpin going away, ...).
    cut: int = 0
    #: Answers that were not a 200 (an EventSource would give up): status and body start.
    refused: list[str] = field(default_factory=list)
    #: SSE events of another type than ``message`` (a ``stream-reset`` would be one).
    other_events: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    complete: bool = False
    _texts: set[str] = field(default_factory=set, repr=False)

    def add(self, message: Received) -> None:
        self.received.append(message)
        self._texts.add(message.text)

    def has_all(self, published: Published) -> bool:
        """The publisher is done, and this subscriber got the last message of each of its
        channels (whatever it got before: :func:`check_delivery` says)."""
        if not published.done:
            return False
        last = published.last_messages()
        return all(last[channel] in self._texts for channel in self.channels if channel in last)

    def describe(self) -> str:
        counts = Counter(message.channel for message in self.received)
        return (
            f"{self.name} (seed {self.seed}): received {dict(counts)}, connects={self.connects}"
            f" dropped={self.dropped} cut={self.cut} refused={len(self.refused)}"
            f" other_events={dict(self.other_events)} last_error={self.last_error!r}"
        )


class SseParser:
    """An event stream parser that follows WHATWG HTML §9.2.6, as EventSource does.

    Feed it text as it arrives; it returns the dispatched events as ``(type, data, last
    event id)``. An event cut off before its blank line is never dispatched, and the last
    event id changes only when an event is dispatched.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self._pending = ""
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = last_event_id

    def feed(self, text: str) -> list[tuple[str, str, str]]:
        text = self._pending + text
        # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
        held = "\r" if text.endswith("\r") else ""
        *lines, rest = _LINE_END.split(text.removesuffix(held))
        self._pending = rest + held
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> tuple[str, str, str] | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        return None

    def _dispatch(self) -> tuple[str, str, str] | None:
        self.last_event_id = self._id_buffer
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        return kind, "\n".join(data), self.last_event_id


async def run_sse(
    subscriber: Subscriber,
    http: httpx.AsyncClient,
    published: Published,
    chaos: Chaos,
    first_id: str,
) -> None:
    """Follow ``GET /events/{channels}`` until every message arrived, reconnecting as an
    EventSource does: with ``Last-Event-ID`` set to the last id it saw.

    The first URL carries ``?last_event_id=`` (``first_id``): a subscriber that is there
    before the first publish and drops before its first event must not start "from now".
    """
    rng = random.Random(subscriber.seed)
    query = f"?last_event_id={quote(first_id)}"
    url = f"{subscriber.base_url}/events/{','.join(subscriber.channels)}{query}"
    last_event_id = ""
    while not subscriber.has_all(published):
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        subscriber.requests += 1
        with anyio.move_on_after(chaos.next_lifetime(rng)) as lifetime:
            try:
                async with http.stream("GET", url, headers=headers) as response:
                    subscriber.connects += 1
                    if response.status_code != 200:
                        body = (await response.aread())[:200]
                        subscriber.refused.append(f"{response.status_code} {body!r}")
                    else:
                        parser = SseParser(last_event_id)
                        async for chunk in response.aiter_text():
                            for kind, data, event_id in parser.feed(chunk):
                                _record_sse(subscriber, kind, data, event_id)
                            last_event_id = parser.last_event_id
                            if subscriber.has_all(published):
                                subscriber.complete = True
                                return
                        subscriber.cut += 1
            except httpx.HTTPError as exc:
                subscriber.cut += 1
                subscriber.last_error = repr(exc)
        if lifetime.cancelled_caught:
            subscriber.dropped += 1
        await anyio.sleep(chaos.next_pause(rng) if chaos.active() else 0.1)
    subscriber.complete = True


def _record_sse(subscriber: Subscriber, kind: str, data: str, event_id: str) -> None:
    if kind != "message":
        subscriber.other_events[kind] += 1
        return
    channel = channel_of(data)
    position = parse_positions(event_id).get(channel) if event_id else None
    subscriber.add(Received(channel, position, data))


async def run_longpoll(
    subscriber: Subscriber,
    http: httpx.AsyncClient,
    published: Published,
    chaos: Chaos,
) -> None:
    """Poll ``GET /poll/{channels}?last_event_id=`` until every message arrived, abandoning
    polls at random. Positions advance only with what an answer carried: each event's own
    ``channel`` and ``id`` (a live publish's body has only ``events``), and the answer's
    ``last_event_id`` when it has one."""
    rng = random.Random(subscriber.seed)
    positions = dict.fromkeys(subscriber.channels, 0)
    path = f"{subscriber.base_url}/poll/{','.join(subscriber.channels)}"
    while not subscriber.has_all(published):
        url = f"{path}?last_event_id={quote(format_positions(positions))}"
        subscriber.requests += 1
        with anyio.move_on_after(chaos.next_lifetime(rng)) as lifetime:
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                subscriber.cut += 1
                subscriber.last_error = repr(exc)
                await anyio.sleep(0.1)
                continue
            subscriber.connects += 1
            if response.status_code != 200:
                subscriber.refused.append(f"{response.status_code} {response.text[:200]!r}")
                await anyio.sleep(0.1)
                continue
            body = response.json()
            for event in body["events"]:
                if "data" not in event:  # a stream-reset entry
                    subscriber.other_events[event.get("event", "?")] += 1
                else:
                    channel = event["channel"]
                    subscriber.add(Received(channel, event["id"], event["data"]))
                positions[event["channel"]] = event["id"]
            if "last_event_id" in body:
                positions.update(parse_positions(body["last_event_id"]))
        if lifetime.cancelled_caught:
            subscriber.dropped += 1
            await anyio.sleep(chaos.next_pause(rng))
    subscriber.complete = True


# --- The verdict ----------------------------------------------------------------------------


@dataclass
class Delivery:
    """How one subscriber's messages of one channel compare with the published ones."""

    subscriber: str
    channel: str
    published: int
    received: int
    duplicates: int
    gaps: int
    out_of_order: bool
    wrong_ids: int
    first_missing: list[str]

    @property
    def exact(self) -> bool:
        return (
            not self.duplicates and not self.gaps and not self.out_of_order and not self.wrong_ids
        )

    def __str__(self) -> str:
        return (
            f"{self.subscriber} on {self.channel}: {self.received}/{self.published} received,"
            f" duplicates={self.duplicates} gaps={self.gaps} out_of_order={self.out_of_order}"
            f" wrong_ids={self.wrong_ids} first missing={self.first_missing[:3]}"
        )


def check_delivery(subscribers: Sequence[Subscriber], published: Published) -> list[Delivery]:
    """Compare every subscriber's messages, per channel, with the published list.

    The n-th message of a channel was stored with id n (one publisher, fresh channels), so
    each message must also have come with that id.
    """
    report = []
    for subscriber in subscribers:
        for channel in subscriber.channels:
            sent = published.messages[channel]
            got = [message for message in subscriber.received if message.channel == channel]
            texts = [message.text for message in got]
            counts = Counter(texts)
            stored_id = {text: number for number, text in enumerate(sent, 1)}
            report.append(
                Delivery(
                    subscriber=subscriber.name,
                    channel=channel,
                    published=len(sent),
                    received=len(got),
                    duplicates=sum(count - 1 for count in counts.values()),
                    gaps=sum(1 for text in sent if text not in counts),
                    out_of_order=list(counts) != [text for text in sent if text in counts],
                    wrong_ids=sum(1 for m in got if m.id != stored_id.get(m.text)),
                    first_missing=[text[:24] for text in sent if text not in counts],
                )
            )
    return report


class SseStream:
    """One SSE connection, kept open: what it got, and whether it ended."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.url = url
        self.last_event_id = last_event_id
        #: ``(type, data, id)`` of each event, in order.
        self.events: list[tuple[str, str, str]] = []
        self.opened = anyio.Event()
        self.ended = False
        self.status = 0

    @property
    def texts(self) -> list[str]:
        return [data for _, data, _ in self.events]

    async def run(self, http: httpx.AsyncClient) -> None:
        """Read until the stream ends (or the task is cancelled)."""
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        async with http.stream("GET", self.url, headers=headers) as response:
            self.status = response.status_code
            self.opened.set()
            parser = SseParser(self.last_event_id or "")
            try:
                async for chunk in response.aiter_text():
                    self.events.extend(parser.feed(chunk))
            except httpx.HTTPError:
                pass
        self.ended = True

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until ``count`` events arrived or the stream ended; at most ``timeout`` s."""
        with anyio.move_on_after(timeout):
            while len(self.events) < count and not self.ended:
                await anyio.sleep(0.02)
