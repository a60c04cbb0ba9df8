"""Nothing lost for WebSocket subscribers: resume, gap repair and presence over GRIP.

Pushpin gives WebSockets no ``prev-id`` reliability, so the client takes part (the clients
are ``grip_asgi.client`` and ``grip_asgi/static/grip-client.js``): every reliable publish
reaches a WebSocket as an envelope carrying its channel and id
(``{"channel": "room", "id": 42, "data": ...}``), the client notices a gap or a duplicate by
the id, and asks this endpoint for what it lacks (``{"grip": "sync", "last_event_id":
"room:41"}``). The answer comes from the history store, as every catch-up does.

- **Resume on open**: a reconnecting client names its positions in the query
  (``?last_event_id=room:41``); the OPEN response replays what it missed and subscribes, in
  one answer, so no live message can overtake the replay. Replays go out packed
  (``{"grip": "events", ...}``), a frame at most per message.
- **The tip**: every answer that replays, every call Pushpin makes on an idle connection
  (``Keep-Alive-Interval``), every ping from the client, and any request once the last tip
  is ``keep_alive`` seconds old end with the store's latest ids (``{"grip": "tip", ...}``):
  a client that lost the last message of a quiet channel learns of it there. The
  connection's channels live in its meta (``Set-Meta-Grip-Channels``), set at open: Pushpin
  sends them back with every request, and a client cannot change them.
- **Presence**: a member per connection, joined at open, left at CLOSE or DISCONNECT; an
  idle call also pings the client, and its PONG (or any message) keeps the membership
  alive. One that vanishes without its TCP connection closing expires after
  ``keep_alive + presence_margin`` seconds and is announced gone by the next idle call or
  client ping in its channel. Join and leave notices go to every member.

Sans-IO like :mod:`grip_asgi._recovery`: :func:`websocket_steps` yields store calls, and
:func:`~grip_asgi._recovery.run` / :func:`~grip_asgi._recovery.run_sync` carry them out.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import metrics as _metrics
from ._errors import PublishError
from ._publish import Item, Publisher, SyncPublisher, WebSocketMessageFormat
from ._recovery import (
    LAST_EVENT_ID_PARAM,
    RELIABLE_PREFIX,
    Operation,
    PresenceCall,
    ReadEvents,
    ReadLastId,
    ReadLatest,
    RecoveryRequestError,
    check_channel_name,
    event_json,
    parse_positions,
)
from ._websocket import WebSocketContext
from .history import HistoryGapError, StoredEvent

if TYPE_CHECKING:
    from .presence import Member

__all__ = (
    "CHANNELS_META",
    "SocketOptions",
    "SocketReply",
    "SocketRequest",
    "presence_notice",
    "websocket_steps",
)

logger = logging.getLogger("grip_asgi.reliable_ws")

#: The connection meta that holds the channels granted at open.
CHANNELS_META = "grip-channels"
#: The connection meta that holds when the client last got a tip (Unix seconds).
TIPPED_META = "grip-tipped"
#: The connection meta that says the connection is a member of its channels.
PRESENCE_META = "grip-presence"
#: The most bytes of one batch of replayed events: one message within a 16 KiB frame.
BATCH_BYTES = 15_000
_BATCH_OVERHEAD = len('{"grip":"events","events":[]}')
#: The WebSocket events that show the client is still there.
_SIGNS_OF_LIFE = frozenset(("TEXT", "BINARY", "PING", "PONG"))


@dataclass(frozen=True)
class SocketOptions:
    """How a reliable WebSocket endpoint answers: the arguments of ``websocket()``."""

    channels: tuple[str, ...]
    #: Events a new client gets from the history (the latest ones), e.g. a chat's backlog.
    history: int = 0
    #: Most events replayed in one answer; the client asks again for the rest.
    page_size: int = 100
    #: Keep the channels' member lists (``grip_asgi.presence``).
    presence: bool = False
    #: Who the member is (any string; None for anonymous members) and what others see of it.
    user: str | None = None
    info: Any = None
    #: Seconds of idleness after which Pushpin calls the app (Pushpin raises < 20 to 20).
    keep_alive: int = 20
    #: Seconds a member outlives a missed pong before it counts as gone.
    presence_margin: float = 10.0

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("a reliable WebSocket endpoint needs at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels repeat: {list(self.channels)}")
        if self.history < 0:
            raise ValueError(f"history must be 0 or more, got {self.history}")
        for name in ("page_size", "keep_alive"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.presence_margin) and self.presence_margin > 0):
            raise ValueError(f"presence_margin must be above 0, got {self.presence_margin}")
        json.dumps(self.info)  # the notices carry it: a TypeError here names the problem

    @classmethod
    def of(cls, channels: str | Sequence[str], **options: Any) -> SocketOptions:
        """The options of ``websocket(channels, **options)``: one channel name or several."""
        return cls((channels,) if isinstance(channels, str) else tuple(channels), **options)

    @property
    def ttl(self) -> float:
        return self.keep_alive + self.presence_margin


@dataclass(frozen=True)
class SocketRequest:
    """What an adapter read from the request."""

    ws: WebSocketContext
    #: The query parameters (first value of each).
    query: Mapping[str, str]
    #: The current time, Unix seconds.
    now: float = field(default_factory=time.time)


@dataclass
class SocketReply:
    """What one WebSocket-over-HTTP request of a reliable endpoint came to.

    The answer for the client is already on :attr:`ws`; the adapter publishes
    :attr:`notices`.
    """

    ws: WebSocketContext
    #: The application's messages in this request (text as str, binary as bytes), in order.
    messages: list[str | bytes] = field(default_factory=list)
    #: The members of each channel, read when the connection opened with presence on.
    members: dict[str, list[Member]] = field(default_factory=dict)
    #: Members that joined and left in this request (this client, or expired ones).
    joined: list[Member] = field(default_factory=list)
    left: list[Member] = field(default_factory=list)
    #: Presence notices to publish: (reliable channel name, message text).
    notices: list[tuple[str, str]] = field(default_factory=list)
    #: The channels this connection was granted at open.
    channels: tuple[str, ...] = ()
    #: The client was told the tip in this request.
    tipped: bool = False

    @property
    def opened(self) -> bool:
        """This request opened the connection (and it was accepted)."""
        return self.ws.is_opening() and self.ws.accepted

    @property
    def closed(self) -> bool:
        """The client closed or vanished in this request."""
        return _has_close(self.ws)


def presence_notice(kind: str, member: Member) -> str:
    """The message every member gets when ``member`` joins or leaves (``kind``)."""
    return _dumps({"grip": kind, "channel": member.channel, **member.to_json()})


def websocket_steps(
    request: SocketRequest, options: SocketOptions
) -> Generator[Operation, Any, SocketReply]:
    """The rules of one WebSocket-over-HTTP request to a reliable endpoint.

    A bad channel name or ``last_event_id`` refuses the opening connection with a 400; a bad
    protocol message later gets ``{"grip": "error"}`` and the connection stays.
    """
    ws = request.ws
    reply = SocketReply(ws)
    if ws.is_opening():
        if not ws.accepted and ws._ended_by is not None:  # the handler refused it
            return reply
        try:
            channels = tuple(check_channel_name(channel) for channel in options.channels)
            text = request.query.get(LAST_EVENT_ID_PARAM)
            positions = parse_positions(text) if text else {}
        except RecoveryRequestError as exc:
            ws.reject(exc.status_hint, str(exc))
            return reply
        if not ws.accepted:
            ws.accept()
        reply.channels = channels
        yield from _open(reply, options, {c: positions.get(c) for c in channels}, request.now)
    else:
        reply.channels = _granted_channels(ws, options)
    yield from _read_events(reply, options, request.now)
    return reply


def _granted_channels(ws: WebSocketContext, options: SocketOptions) -> tuple[str, ...]:
    meta = ws.orig_meta.get(CHANNELS_META)
    if meta is None:  # opened before this endpoint was reliable: the handler's channels
        return options.channels
    return tuple(channel for channel in meta.split(",") if channel)


def _open(
    reply: SocketReply, options: SocketOptions, positions: dict[str, int | None], now: float
) -> Generator[Operation, Any, None]:
    ws = reply.ws
    out: list[_Replayed] = []
    for channel, after in positions.items():
        if after is None and options.history:
            backlog: list[StoredEvent] = yield ReadLatest(channel, options.history)
            out.extend(backlog)
    resuming = {channel: after for channel, after in positions.items() if after is not None}
    if resuming:
        yield from _replay(out, resuming, options.page_size)
    _send_replay(ws, out, max(options.page_size, options.history))
    yield from _send_tip(reply, now)
    for channel in reply.channels:
        ws.subscribe(RELIABLE_PREFIX + channel)
    ws.meta[CHANNELS_META] = ",".join(reply.channels)
    ws.keep_alive_interval = options.keep_alive
    if options.presence:
        ws.meta[PRESENCE_META] = "1"
        for channel in reply.channels:
            members = yield from _join(reply, options, channel)
            reply.members[channel] = members
            ws.send(_members_message(channel, members))


@dataclass(frozen=True)
class _Reset:
    channel: str
    id: int


_Replayed = StoredEvent | _Reset


def _members_message(channel: str, members: list[Member]) -> str:
    """The ``members`` message: everyone, with their ``count``. Within one frame: a list
    too long for :data:`BATCH_BYTES` lists the first members that fit, ``"truncated":
    true`` (``members()`` on the server has them all)."""
    listed = [_dumps(member.to_json()) for member in members]
    head = f'{{"grip":"members","channel":{_dumps(channel)},"count":{len(members)},'
    size = len(head.encode()) + len('"members":[],"truncated":true}')
    kept = 0
    for text in listed:
        size += len(text.encode()) + 1
        if size > BATCH_BYTES:
            break
        kept += 1
    tail = "]}" if kept == len(listed) else '],"truncated":true}'
    return head + '"members":[' + ",".join(listed[:kept]) + tail


def _replay(
    out: list[_Replayed], positions: Mapping[str, int], page_size: int
) -> Generator[Operation, Any, None]:
    """Queue the events after each channel's position (a page), or a reset past retention."""
    replayed = resets = 0
    for channel, after in positions.items():
        try:
            events: list[StoredEvent] = yield ReadEvents(channel, after, page_size)
        except HistoryGapError as gap:
            out.append(_Reset(channel, gap.current_id))
            resets += 1
            continue
        out.extend(events)
        replayed += len(events)
    if _metrics._recorder is not None:
        _metrics._recorder.recovery("websocket", replayed, resets, False)


def _send_replay(ws: WebSocketContext, out: list[_Replayed], most: int) -> None:
    """Send resets, then at most ``most`` events in publish order, packed into batches.

    Few messages, each within one frame: Pushpin 1.36 stalls a message larger than a 16 KiB
    frame and the end of a reply of about 93 messages or more, and spends about 0.2 ms on
    each message. Across channels the order is the publish order; the events cut by
    ``most`` are a tail of each channel's, so the client's positions stay gap-free and the
    tip sends it back for them.
    """
    events = sorted((e for e in out if isinstance(e, StoredEvent)), key=lambda e: e.time)
    for reset in out:
        if isinstance(reset, _Reset):
            ws.send(_dumps({"grip": "reset", "channel": reset.channel, "id": reset.id}))
    batch: list[str] = []
    size = 0
    for event in events[:most]:
        text = _dumps(event_json(event))
        length = len(text.encode())
        if batch and size + length + 1 > BATCH_BYTES - _BATCH_OVERHEAD:
            ws.send(_batch(batch))
            batch, size = [], 0
        if length > BATCH_BYTES - _BATCH_OVERHEAD:
            ws.send(text)  # alone, as a live publish sends it
            continue
        batch.append(text)
        size += length + 1
    if batch:
        ws.send(_batch(batch))


def _batch(events: list[str]) -> str:
    return '{"grip":"events","events":[' + ",".join(events) + "]}"


def _join(
    reply: SocketReply, options: SocketOptions, channel: str
) -> Generator[Operation, Any, list[Member]]:
    """Join this connection to ``channel`` (announced if it was not a member); the members."""
    client = reply.ws.connection_id
    new: bool = yield PresenceCall(
        "join", channel, (client,), {"ttl": options.ttl, "user": options.user, "info": options.info}
    )
    members: list[Member] = yield PresenceCall("members", channel)
    if new:
        for member in members:
            if member.client == client:
                _announce(reply, "join", member)
    return members


def _announce(reply: SocketReply, kind: str, member: Member) -> None:
    """Note a join or a leave, and the notice every member gets of it."""
    (reply.joined if kind == "join" else reply.left).append(member)
    reply.notices.append((member.channel, presence_notice(kind, member)))


def _read_events(
    reply: SocketReply, options: SocketOptions, now: float
) -> Generator[Operation, Any, None]:
    ws = reply.ws
    presence = options.presence and (ws.is_opening() or PRESENCE_META in ws.orig_meta)
    alive = any(event.type in _SIGNS_OF_LIFE for event in ws.in_events)
    # Pushpin's call on an idle connection (no events), or a client's own ping: Pushpin
    # counts a relayed ping as activity, so a client that pings (``websockets`` does, every
    # 20 s) never gets the idle call, and its ping must do the idle call's work.
    quiet = all(event.type == "PING" for event in ws.in_events) and not ws.is_opening()
    gone = _has_close(ws)
    while ws.can_recv():
        message = ws.recv()
        if message is None:  # CLOSE or DISCONNECT: nothing after it counts
            break
        if isinstance(message, str) and message.startswith("{"):
            command = _protocol_message(message)
            if command is not None:
                yield from _answer(reply, options, command, now)
                continue
        reply.messages.append(message)
    if quiet:
        # Tell the client the tip and sweep the channels' expired members; ping a client
        # that did not ping itself (its PONG keeps its membership).
        if not ws.in_events:
            ws.ping()
        yield from _send_tip(reply, now)
    elif not gone and not reply.tipped and _tip_is_due(ws, now, options.keep_alive):
        yield from _send_tip(reply, now)
    if not presence:
        return
    for channel in reply.channels:
        if gone:
            member: Member | None = yield PresenceCall("leave", channel, (ws.connection_id,))
            if member is not None:
                _announce(reply, "leave", member)
            continue
        if alive and not ws.is_opening():
            present: bool = yield PresenceCall(
                "touch", channel, (ws.connection_id,), {"ttl": options.ttl}
            )
            if not present:  # it was swept while silent, and is back
                yield from _join(reply, options, channel)
        if quiet:
            expired: list[Member] = yield PresenceCall("expire", channel)
            for member in expired:
                _announce(reply, "leave", member)


def _has_close(ws: WebSocketContext) -> bool:
    return any(event.type in ("CLOSE", "DISCONNECT") for event in ws.in_events)


def _protocol_message(text: str) -> dict[str, Any] | None:
    """A client message for the protocol (a JSON object with ``grip``), else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and "grip" in value:
        return value
    return None


def _answer(
    reply: SocketReply, options: SocketOptions, command: dict[str, Any], now: float
) -> Generator[Operation, Any, None]:
    ws = reply.ws
    if command["grip"] != "sync":
        ws.send(
            _error(f"unknown request {str(command['grip'])[:40]!r}: this endpoint knows 'sync'")
        )
        return
    text = command.get("last_event_id")
    try:
        if not isinstance(text, str) or not text:
            raise RecoveryRequestError('a sync needs last_event_id, e.g. "room:41"')
        positions = parse_positions(text)
        for channel in positions:
            if channel not in reply.channels:
                raise RecoveryRequestError(f"this connection is not subscribed to {channel!r}")
    except RecoveryRequestError as exc:
        ws.send(_error(str(exc)))
        return
    out: list[_Replayed] = []
    yield from _replay(out, positions, options.page_size)
    _send_replay(ws, out, options.page_size)
    yield from _send_tip(reply, now)


def _send_tip(reply: SocketReply, now: float) -> Generator[Operation, Any, None]:
    """Tell the client the history's latest ids, and note when in the connection's meta."""
    tip: dict[str, int] = {}
    for channel in reply.channels:
        tip[channel] = yield ReadLastId(channel)
    reply.ws.send(_dumps({"grip": "tip", "ids": tip}))
    reply.ws.meta[TIPPED_META] = str(int(now))
    reply.tipped = True


def _tip_is_due(ws: WebSocketContext, now: float, keep_alive: int) -> bool:
    """No tip for ``keep_alive`` seconds: a client that talks more often than that gets no
    idle call from Pushpin, so its own request brings the tip."""
    text = ws.orig_meta.get(TIPPED_META, "")
    return not (text.isascii() and text.isdigit()) or now - int(text) >= keep_alive


def _error(message: str) -> str:
    return _dumps({"grip": "error", "message": message})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def notice_item(text: str) -> Item:
    """A presence notice as a publish: to WebSocket members only, with no id (not stored)."""
    return Item([WebSocketMessageFormat(text)])


async def publish_notices(publisher: Publisher, notices: Sequence[tuple[str, str]]) -> None:
    """Publish presence notices; a failure is logged, not raised: the store already holds
    the change (``members()`` is right), and the client's request must not fail for it."""
    for channel, text in notices:
        try:
            await publisher.publish(RELIABLE_PREFIX + channel, notice_item(text))
        except PublishError as exc:
            logger.warning("grip: presence notice on %r not published: %s", channel, exc)


def publish_notices_sync(publisher: SyncPublisher, notices: Sequence[tuple[str, str]]) -> None:
    """The blocking :func:`publish_notices`."""
    for channel, text in notices:
        try:
            publisher.publish(RELIABLE_PREFIX + channel, notice_item(text))
        except PublishError as exc:
            logger.warning("grip: presence notice on %r not published: %s", channel, exc)
