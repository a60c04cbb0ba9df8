"""A Python client for reliable WebSocket endpoints: every event once and in order, across drops.

:class:`ReliableClient` connects with `websockets`_ and reconnects by itself, resuming with
``?last_event_id=`` at its positions. The protocol rules live in :class:`ClientState`, which
does no I/O (text in, items and messages to send out), so other transports can reuse it::

    async with ReliableClient("ws://127.0.0.1:7999/chat/room", channels=["room"]) as client:
        await client.send("hello")
        async for item in client:  # Event | Reset | Presence | Message
            ...

.. _websockets: https://websockets.readthedocs.io/
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Close

from ._recovery import LAST_EVENT_ID_PARAM, format_positions

__all__ = (
    "Backoff",
    "ClientState",
    "ClientStats",
    "Event",
    "Item",
    "Message",
    "Presence",
    "ReliableClient",
    "Reset",
)

logger = logging.getLogger("grip_asgi.client")


@dataclass(frozen=True)
class Event:
    """An event of a reliable channel, delivered once and in id order."""

    channel: str
    id: int
    data: str
    event: str | None = None


@dataclass(frozen=True)
class Reset:
    """What this client missed on ``channel`` is no longer stored; it goes on after ``id``."""

    channel: str
    id: int


@dataclass(frozen=True)
class Presence:
    """``members`` (everyone, on open), or one member's ``join`` or ``leave``.

    Each member is a dict: ``{"client": ..., "user": ..., "info": ...}``.
    """

    kind: Literal["join", "leave", "members"]
    channel: str
    members: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Message:
    """A message of the application's own (not part of the protocol)."""

    text: str | bytes


Item = Event | Reset | Presence | Message


@dataclass
class ClientStats:
    """Counters: events delivered, duplicates dropped, syncs sent to repair a gap or catch up
    with a tip, reconnections, and resets reported."""

    delivered: int = 0
    duplicates: int = 0
    repairs: int = 0
    reconnects: int = 0
    resets: int = 0


def _event(message: dict[str, Any]) -> Event | None:
    channel, id, data, name = (message.get(k) for k in ("channel", "id", "data", "event"))
    named = name is None or isinstance(name, str)
    if isinstance(channel, str) and _is_id(id) and isinstance(data, str) and named:
        return Event(channel, id, data, name)
    return None


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class ClientState:
    """The client side of the reliable WebSocket protocol, without I/O.

    Feed each text message the server sends to :meth:`receive`, which returns the items for the
    application; then send what :meth:`outgoing` returns. Call :meth:`connection_lost` when the
    connection ends, and open the next one at :meth:`resume_url`.
    """

    def __init__(self, positions: Mapping[str, int] | None = None) -> None:
        #: The last id delivered per channel (what this client has).
        self.positions: dict[str, int] = dict(positions or {})
        #: Presence: per channel, the members by connection id.
        self.members: dict[str, dict[str, dict[str, Any]]] = {}
        self.stats = ClientStats()
        self._early: dict[str, dict[int, Event]] = {}  # per channel: events past a gap, by id
        self._syncing: set[str] = set()
        self._outgoing: list[str] = []

    @staticmethod
    def is_final_close(code: int) -> bool:
        """Whether the server's close ``code`` ends the connection for good: the application's
        codes (4000-4999, e.g. 4000 "left the room") and 1008 (policy violation). Any other
        close is a drop: reconnect and resume."""
        return 4000 <= code <= 4999 or code == 1008

    def resume_query(self) -> str:
        """The query parameter that resumes at the positions (``""`` with none)."""
        if not self.positions:
            return ""
        return urlencode({LAST_EVENT_ID_PARAM: format_positions(self.positions)})

    def resume_url(self, url: str) -> str:
        """``url`` with its ``last_event_id`` parameter set to the positions."""
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != LAST_EVENT_ID_PARAM]
        query_text = "&".join(q for q in (urlencode(query), self.resume_query()) if q)
        return urlunsplit(parts._replace(query=query_text))

    def connection_lost(self) -> None:
        """Forget early events and syncs in flight: the resume replays them."""
        self._early.clear()
        self._syncing.clear()
        self._outgoing.clear()

    def outgoing(self) -> list[str]:
        """The messages to send now (syncs), oldest first."""
        out, self._outgoing = self._outgoing, []
        return out

    def sync(self, channels: Iterable[str] | None = None, *, repair: bool = False) -> None:
        """Queue a sync for ``channels`` (default: every known one) not already syncing."""
        wanted = {
            channel: self.positions[channel]
            for channel in (self.positions if channels is None else channels)
            if channel in self.positions and channel not in self._syncing
        }
        if wanted:
            self._syncing.update(wanted)
            self.stats.repairs += repair
            message = {"grip": "sync", LAST_EVENT_ID_PARAM: format_positions(wanted)}
            self._outgoing.append(json.dumps(message))

    def receive(self, message: str | bytes) -> list[Item]:
        """The items a message from the server gives the application (maybe none)."""
        try:
            parsed = json.loads(message)
        except ValueError:
            return [Message(message)]
        if not isinstance(parsed, dict):
            return [Message(message)]
        kind = parsed.get("grip")
        if kind is None:
            event = _event(parsed)
            return [Message(message)] if event is None else self._on_event(event)
        try:
            return self._on_control(kind, parsed)
        except (KeyError, TypeError, ValueError, AttributeError):
            logger.warning("malformed %r message from the server: %.200s", kind, message)
            return []

    def _on_control(self, kind: object, message: dict[str, Any]) -> list[Item]:
        if kind == "events":
            return self._on_batch(message["events"])
        if kind == "tip":
            self._on_tip({str(c): _checked_id(i) for c, i in message["ids"].items()})
            return []
        if kind == "reset":
            return self._on_reset(str(message["channel"]), _checked_id(message["id"]))
        if kind == "members":
            channel = str(message["channel"])
            members = tuple(dict(m) for m in message["members"])
            self.members[channel] = {str(m["client"]): m for m in members}
            return [Presence("members", channel, members)]
        if kind in ("join", "leave"):
            channel = str(message["channel"])
            member = {k: message.get(k) for k in ("client", "user", "info")}
            joined = self.members.setdefault(channel, {})
            if kind == "join":
                joined[str(member["client"])] = member
            else:
                joined.pop(str(member["client"]), None)
            return [Presence(kind, channel, (member,))]
        if kind == "error":
            logger.warning("the server refused a message: %s", message.get("message"))
        else:  # a newer server's message: nothing this client must do
            logger.debug("unknown protocol message %r ignored", kind)
        return []

    def _on_batch(self, entries: object) -> list[Item]:
        """Each event of a batch (a replay packed into one message), as if sent alone."""
        if not isinstance(entries, list):
            raise TypeError(f"events is {type(entries).__name__}, not a list")
        items: list[Item] = []
        for entry in entries:
            event = _event(entry) if isinstance(entry, dict) else None
            if event is None:  # skip it: a gap it leaves is repaired like any other
                logger.warning("malformed event in a batch skipped: %.200r", entry)
            else:
                items += self._on_event(event)
        return items

    def _on_event(self, event: Event) -> list[Item]:
        channel, position = event.channel, self.positions.get(event.channel)
        early = self._early.setdefault(channel, {})
        if position is not None and (event.id <= position or event.id in early):
            self.stats.duplicates += 1
            return []
        if position is not None and event.id > position + 1:
            early[event.id] = event
            self.sync([channel], repair=True)
            return []
        return self._deliver(event)

    def _deliver(self, event: Event | None) -> list[Item]:
        """``event`` and the early events that follow it without a gap."""
        delivered: list[Item] = []
        while event is not None:
            delivered.append(event)
            self.positions[event.channel] = event.id
            self.stats.delivered += 1
            event = self._early.get(event.channel, {}).pop(event.id + 1, None)
        return delivered

    def _on_tip(self, tips: dict[str, int]) -> None:
        self._syncing.clear()  # a sync's reply ends with a tip
        behind = [channel for channel, early in self._early.items() if early]
        for channel, tip in tips.items():
            # A new channel starts at the tip: the server subscribed this client from there.
            position = self.positions.setdefault(channel, tip)
            if position < tip and channel not in behind:
                behind.append(channel)
        self.sync(behind, repair=True)

    def _on_reset(self, channel: str, current: int) -> list[Item]:
        position = self.positions.get(channel)
        if position is not None and current <= position:
            self.stats.duplicates += 1  # a repeat: nothing was missed since
            return []
        self.positions[channel] = current
        self.stats.resets += 1
        early = self._early.get(channel, {})
        for id in [id for id in early if id <= current]:
            del early[id]
        return [Reset(channel, current), *self._deliver(early.pop(current + 1, None))]


def _checked_id(value: object) -> int:
    if not _is_id(value):
        raise ValueError(f"{value!r} is not an event id")
    return value


class Backoff:
    """Reconnection delays: ``minimum`` doubling up to ``maximum``, each times a random factor
    between 0.5 and 1, so that many clients dropped at once do not return at once."""

    def __init__(
        self, minimum: float, maximum: float, rand: Callable[[], float] = random.random
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum, self.maximum = minimum, maximum
        self._rand = rand
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.minimum * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return delay * (0.5 + self._rand() / 2)

    def ended(self, open_for: float) -> None:
        """A connection ended after ``open_for`` seconds: one that stayed up at least
        ``maximum`` seconds makes the next drop a fresh one, retried after ``minimum``."""
        if open_for >= self.maximum:
            self._attempt = 0


class ReliableClient:
    """A reliable WebSocket client: an async context manager and an async iterator of items.

    ``channels``: the channels the endpoint serves; when given, only their ``positions`` are
    resumed. ``positions``: where to resume (e.g. a previous run's :attr:`positions`).
    Entering connects once (errors raise); afterwards a dropped connection is reopened with
    backoff between ``backoff_min`` and ``backoff_max`` seconds, resuming where it was. Items
    wait in memory until iterated.

    A close from the server with a final code (:meth:`ClientState.is_final_close`) is not a
    drop: the iteration ends after the items received before it, :attr:`close_code` and
    :attr:`close_reason` say why, and :meth:`send` raises ``ConnectionError``.
    """

    def __init__(
        self,
        url: str,
        channels: Iterable[str] = (),
        *,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        open_timeout: float = 10.0,
        positions: Mapping[str, int] | None = None,
    ) -> None:
        self.url = url
        self.channels = tuple(channels)
        if positions is not None and self.channels:
            positions = {c: i for c, i in positions.items() if c in self.channels}
        self.state = ClientState(positions)
        self.open_timeout = open_timeout
        self._backoff = Backoff(backoff_min, backoff_max)
        self._items: asyncio.Queue[Item | None] = asyncio.Queue()
        #: The code and reason of the server's final close, once it has closed for good.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while connected, and for good once the loop ends
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def positions(self) -> dict[str, int]:
        return dict(self.state.positions)

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (False while reconnecting)."""
        return self._ws is not None

    @property
    def stats(self) -> ClientStats:
        return self.state.stats

    @property
    def members(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.state.members

    async def __aenter__(self) -> ReliableClient:
        ws = await connect(self.state.resume_url(self.url), open_timeout=self.open_timeout)
        self._opened(ws)
        self._task = asyncio.create_task(self._run(ws))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._items.put_nowait(None)

    def __aiter__(self) -> ReliableClient:
        return self

    async def __anext__(self) -> Item:
        item = await self._items.get()
        if item is None:
            self._items.put_nowait(None)  # every later call ends too
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        return item

    async def send(self, text: str) -> None:
        """Send an application message. Waits up to ``open_timeout`` for a connection; raises
        ``ConnectionError`` without one, after the server's final close, or when the connection
        drops during the send (a message sent as the connection drops may be lost: only the
        server's events are replayed)."""
        try:
            await (await self._connection()).send(text)
        except ConnectionClosed as exc:
            raise ConnectionError(f"connection to {self.url} lost: {exc}") from exc

    async def sync(self) -> None:
        """Ask the server for everything after the current positions (e.g. before a final check)."""
        ws = await self._connection()
        self.state.sync()
        await self._flush(ws)

    async def _connection(self) -> ClientConnection:
        try:
            await asyncio.wait_for(self._ready.wait(), self.open_timeout)
        except TimeoutError:
            raise ConnectionError(
                f"not connected to {self.url} after {self.open_timeout} s"
            ) from None
        if self.close_code is not None:
            raise ConnectionError(
                f"{self.url} closed the connection for good "
                f"(code {self.close_code}: {self.close_reason!r})"
            )
        if self._ws is None:
            raise ConnectionError(f"the client of {self.url} has stopped")
        return self._ws

    async def _flush(self, ws: ClientConnection) -> None:
        for message in self.state.outgoing():
            await ws.send(message)

    async def _run(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                opened = loop.time()
                close = await self._read(ws)
                if close is not None and self.state.is_final_close(close.code):
                    logger.info("%s closed the connection for good: %s", self.url, close)
                    self.close_code, self.close_reason = close.code, close.reason
                    break
                self._backoff.ended(loop.time() - opened)
                ws = await self._reconnect()
                self.state.stats.reconnects += 1
                self._opened(ws)
        except Exception as exc:  # a bug: end the iteration with it rather than hang
            logger.exception("the connection loop of %s failed", self.url)
            self._failure = exc
        finally:
            self._items.put_nowait(None)
            self._ready.set()  # senders waiting for a connection: there will be none

    def _opened(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ready.set()

    async def _read(self, ws: ClientConnection) -> Close | None:
        """Hand on the server's messages until the connection ends; the close frame the
        server sent, if any (None when the connection just dropped)."""
        try:
            while True:
                for item in self.state.receive(await ws.recv()):
                    self._items.put_nowait(item)
                await self._flush(ws)
        except ConnectionClosed as exc:
            logger.info("connection to %s lost: %s", self.url, exc)
            return exc.rcvd
        finally:
            self._ready.clear()
            self._ws = None
            self.state.connection_lost()
            await ws.close()

    async def _reconnect(self) -> ClientConnection:
        while True:
            await asyncio.sleep(self._backoff.next_delay())
            url = self.state.resume_url(self.url)
            try:
                return await connect(url, open_timeout=self.open_timeout)
            except (OSError, TimeoutError, WebSocketException) as exc:
                logger.warning("reconnecting to %s failed: %r", self.url, exc)
