"""Nothing lost for HTTP subscribers: the recovery rules for SSE streams and long-polls.

Sans-IO, in the style of h11: the rules are generators that yield the history reads they
need (:class:`ReadEvents`, :class:`ReadLastId`, ...) and return a :class:`Reply`;
:func:`run` (asyncio) and :func:`run_sync` (blocking) carry out the reads against a store.
The adapters (``grip_asgi.starlette``, ``grip_django.events``) only translate.

How a subscriber recovers, with Pushpin's own mechanism (spec §3.4 to §3.6):

- every reliable publish (:func:`reliable_item`) carries the channel's store id as ``id`` and
  the previous one as ``prev-id``, on the Pushpin channel ``reliable:<channel>``;
- a held subscriber names, per channel, the id it has (``prev-id``). When an item's
  ``prev-id`` does not match (the subscriber missed something: Pushpin's queue limits, a
  publish while this proxy was down), Pushpin asks the app again with ``Grip-Last``, and the
  app answers with exactly the missed events from the store;
- a client that reconnects sends ``Last-Event-ID`` (or ``?last_event_id=``), and gets what
  it missed before the live events; past the store's retention it gets a ``stream-reset``
  event and the current ids;
- SSE ids name every channel of the stream (``news:12,alerts:3``): live events get theirs
  from Pushpin's ``build-id`` filter, so one ``Last-Event-ID`` resumes them all.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import inspect
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import metrics as _metrics
from ._config import GripSettings
from ._context import GripContext
from ._errors import GripConfigError, GripProtocolError
from ._publish import Format, HttpResponseFormat, HttpStreamFormat, Item, WebSocketMessageFormat
from ._sse import SSE_CONTENT_TYPE, SSE_KEEP_ALIVE, encode_sse_event, parse_last_event_id
from .history import HistoryGapError, HistoryStore, StoredEvent, SyncHistory

if TYPE_CHECKING:
    from .presence import PresenceStore, SyncPresence

__all__ = (
    "LAST_EVENT_ID_PARAM",
    "LINK_PARAM",
    "RELIABLE_PREFIX",
    "RESET_EVENT",
    "SNAPSHOT_EVENT",
    "LinkSigner",
    "PresenceCall",
    "RecoveryRequestError",
    "Reply",
    "Rules",
    "StreamOptions",
    "SubscribeRequest",
    "channel_names",
    "event_json",
    "format_positions",
    "link_signer_for",
    "longpoll_steps",
    "parse_positions",
    "reliable_channel",
    "reliable_item",
    "run",
    "run_sync",
    "sse_steps",
)

#: Reliable channels live under this Pushpin channel prefix, apart from plain ones: a plain
#: subscriber and a recoverable one of the same name never see each other's items.
RELIABLE_PREFIX = "reliable:"
#: The query parameter of a next link: a signed token, see :class:`LinkSigner`.
LINK_PARAM = "grip_link"
#: The query parameter for clients that cannot send ``Last-Event-ID`` (django-eventstream's
#: ``lastEventId`` is read too).
LAST_EVENT_ID_PARAM = "last_event_id"
_LAST_EVENT_ID_PARAMS = (LAST_EVENT_ID_PARAM, "lastEventId")
#: The SSE event a client gets when what it missed is no longer stored.
RESET_EVENT = "stream-reset"
#: The SSE event that carries a new subscriber's snapshot.
SNAPSHOT_EVENT = "snapshot"
JSON_CONTENT_TYPE = "application/json"
#: Seconds before Pushpin asks for a backlog's next page, when no publish makes it ask first.
PAGED_LINK_TIMEOUT = 1

logger = logging.getLogger("grip_asgi.recovery")

# A reliable channel name goes into Grip-Channel, Grip-Set-Meta's id_format (%(name)s) and
# SSE ids (name:id,name:id): none of those may be split by it.
_BAD_CHANNEL = re.compile(r'[\s,;"()%\\\x00-\x1f\x7f]')
_MAX_CHANNEL = 256


class RecoveryRequestError(GripProtocolError):
    """A recovery request is malformed (400) or its next link is not valid (403)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status


def channel_names(channels: str | Sequence[str]) -> tuple[str, ...]:
    """One channel name or several, as the tuple :class:`StreamOptions` takes."""
    return (channels,) if isinstance(channels, str) else tuple(channels)


def check_channel_name(channel: str) -> str:
    """``channel`` if it can be a reliable channel, else :class:`RecoveryRequestError`."""
    if not isinstance(channel, str) or not channel or len(channel) > _MAX_CHANNEL:
        raise RecoveryRequestError(f"a channel name is 1 to {_MAX_CHANNEL} characters")
    bad = _BAD_CHANNEL.search(channel)
    if bad is not None:
        raise RecoveryRequestError(
            f"channel {channel!r} has {bad.group()!r}: reliable channel names cannot hold"
            ' white space, control characters or any of , ; " ( ) % \\'
        )
    return channel


def reliable_channel(channel: str) -> str:
    """The Pushpin channel of reliable channel ``channel`` (before ``GRIP_PREFIX``)."""
    return RELIABLE_PREFIX + check_channel_name(channel)


# --- Positions: what a subscriber has, per channel ---------------------------------------------


def format_positions(positions: Mapping[str, int]) -> str:
    """``{"news": 12, "alerts": 3}`` as an SSE id: ``news:12,alerts:3``."""
    return ",".join(f"{channel}:{last}" for channel, last in positions.items())


def parse_positions(text: str) -> dict[str, int]:
    """Read :func:`format_positions`' form. Raises :class:`RecoveryRequestError` (400)."""
    positions: dict[str, int] = {}
    for part in text.split(","):
        channel, sep, last = part.strip().rpartition(":")
        if not sep or not (last.isascii() and last.isdigit()) or len(last) > 18:
            raise RecoveryRequestError(
                f"last event id {text[:100]!r} is not of the form channel:id,channel:id"
            )
        positions[check_channel_name(channel)] = int(last)
    return positions


# --- Next links ---------------------------------------------------------------------------------


class LinkSigner:
    """Signs and checks next-link tokens.

    Pushpin fetches a stream's next link itself, without the client's cookies, so the link
    carries what was granted when the stream opened: the channels and the subscriber
    (``user``). Where the subscriber is comes from Pushpin's ``Grip-Last``, never the link:
    Pushpin shares next-link fetches by path and ``Grip-Last``, not by query. The token is
    HMAC-SHA256 signed and expires, so a client can neither forge one nor widen it.
    """

    def __init__(self, key: str | bytes | None = None) -> None:
        if key is None:
            key = secrets.token_bytes(32)
        raw = key.encode() if isinstance(key, str) else key
        # A key of its own, even when it comes from the Grip-Sig secret.
        self._key = hmac.digest(raw, b"grip-asgi next link", "sha256")

    def sign(
        self,
        channels: Sequence[str],
        user: str | None,
        now: float,
        ttl: float,
    ) -> str:
        claims: dict[str, Any] = {"c": list(channels), "e": int(now + ttl)}
        if user is not None:
            claims["u"] = user
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float) -> tuple[tuple[str, ...], str | None]:
        """The channels and user of a valid token; else RecoveryRequestError (403)."""
        payload, _, mac = token.partition(".")
        try:
            valid = hmac.compare_digest(_unb64(mac), self._mac(payload))
            claims = json.loads(_unb64(payload)) if valid else None
        except (ValueError, binascii.Error):
            claims = None
        if not isinstance(claims, dict):
            raise RecoveryRequestError("the next link is not valid", 403)
        if not isinstance(claims.get("e"), int) or claims["e"] <= now:
            raise RecoveryRequestError("the next link has expired", 403)
        channels = claims.get("c")
        user = claims.get("u")
        if (
            not isinstance(channels, list)
            or not all(isinstance(c, str) for c in channels)
            or not (user is None or isinstance(user, str))
        ):
            raise RecoveryRequestError("the next link is not valid", 403)
        return tuple(channels), user

    def _mac(self, payload: str) -> bytes:
        return hmac.digest(self._key, payload.encode(), "sha256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=16)
def link_signer_for(settings: GripSettings) -> LinkSigner:
    """The next-link signer of an app: ``link_key``, else the shared secret that verifies
    ``Grip-Sig`` (every worker has it), else a key of this process alone (with a warning:
    a next link then fails on another worker).

    Raises:
        GripConfigError: ``link_key`` is shorter than 16 bytes.
    """
    key = settings.link_key
    if key is not None:
        if len(key) < 16:
            raise GripConfigError("the next-link key (GRIP_LINK_KEY) needs at least 16 bytes")
        return LinkSigner(key)
    for secret in (settings.verify_key, *(p.signature_key for p in settings.proxies)):
        if isinstance(secret, str | bytes) and secret and not _is_public_key(secret):
            return LinkSigner(secret)
    logger.warning(
        "grip: next links are signed with a key of this process alone, so another worker "
        "refuses them; set GRIP_LINK_KEY (the same on every worker)"
    )
    return LinkSigner()


def _is_public_key(key: str | bytes) -> bool:
    text = key.decode("latin-1") if isinstance(key, bytes) else key
    return text.lstrip().startswith(("-----BEGIN", "{"))


# --- What a reliable publish sends --------------------------------------------------------------


def event_json(event: StoredEvent) -> dict[str, Any]:
    """An event as long-poll bodies and WebSocket messages carry it."""
    out: dict[str, Any] = {"channel": event.channel, "id": event.id, "data": event.data}
    if event.event is not None:
        out["event"] = event.event
    return out


def reliable_item(event: StoredEvent) -> Item:
    """The item that publishes a stored event to every kind of recoverable subscriber.

    SSE subscribers get it with their own composite id (``%I``, rendered by Pushpin's
    ``build-id`` filter from each connection's ids); long-polls get a JSON body; WebSockets
    a JSON message. ``id`` and ``prev-id`` let Pushpin notice what a subscriber missed.
    """
    # Content that goes through build-id is a template: a literal % is written %%.
    sse = encode_sse_event(event.data, event=event.event).replace("%", "%%")
    body = json.dumps({"events": [event_json(event)]}, ensure_ascii=False) + "\n"
    formats: list[Format] = [
        HttpStreamFormat("id: %I\n" + sse, content_filters=["build-id"]),
        HttpResponseFormat(body=body, headers={"Content-Type": JSON_CONTENT_TYPE}),
        WebSocketMessageFormat(json.dumps(event_json(event), ensure_ascii=False)),
    ]
    return Item(formats, id=str(event.id), prev_id=str(event.id - 1))


# --- The store reads the rules ask for ----------------------------------------------------------


@dataclass(frozen=True)
class ReadEvents:
    """Events of ``channel`` after ``after_id`` (may raise HistoryGapError into the rules)."""

    channel: str
    after_id: int
    limit: int


@dataclass(frozen=True)
class ReadLastId:
    channel: str


@dataclass(frozen=True)
class ReadLatest:
    channel: str
    count: int


@dataclass(frozen=True)
class TakeSnapshot:
    """Call the app's snapshot hook for a new subscriber of ``channel``."""

    channel: str
    last_id: int


@dataclass(frozen=True)
class PresenceCall:
    """Call ``method`` of the presence store (``join``, ``touch``, ``leave``, ``members``,
    ``expire``) with ``channel``, ``args`` and ``kwargs``."""

    method: str
    channel: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Operation = ReadEvents | ReadLastId | ReadLatest | TakeSnapshot | PresenceCall
Snapshot = Callable[[str, int], "str | None | Awaitable[str | None]"]


@dataclass(frozen=True)
class Reply:
    """What the adapter sends: the GRIP instructions are already on the request's context."""

    status: int
    body: bytes
    media_type: str


_R = TypeVar("_R")
Steps = Generator[Operation, Any, Reply]
#: :func:`sse_steps` or :func:`longpoll_steps`.
Rules = Callable[["SubscribeRequest", "StreamOptions", "LinkSigner", bool], Steps]


@dataclass(frozen=True)
class _Done(Generic[_R]):
    value: _R


def _step(
    steps: Generator[Operation, Any, _R], result: Any, error: BaseException | None
) -> Operation | _Done[_R]:
    """Resume the rules with the last read's result (or error): the next read, or the end."""
    try:
        return steps.send(result) if error is None else steps.throw(error)
    except StopIteration as done:
        return _Done(done.value)


def _call(op: Operation, face: Any, presence: Any, snapshot: Snapshot | None) -> Any:
    """Start ``op`` on a store face: both faces have the same methods, the async one's
    results are awaitables."""
    if isinstance(op, ReadEvents):
        return face.read(op.channel, op.after_id, limit=op.limit)
    if isinstance(op, ReadLastId):
        return face.last_id(op.channel)
    if isinstance(op, ReadLatest):
        return face.latest(op.channel, op.count)
    if isinstance(op, PresenceCall):
        if presence is None:
            raise GripConfigError("these rules need a presence store: pass presence=")
        return getattr(presence, op.method)(op.channel, *op.args, **op.kwargs)
    assert snapshot is not None
    return snapshot(op.channel, op.last_id)


async def run(
    steps: Generator[Operation, Any, _R],
    store: HistoryStore,
    snapshot: Snapshot | None = None,
    presence: PresenceStore | None = None,
) -> _R:
    """Carry out ``steps`` against an asyncio store (and presence store)."""
    result: Any = None
    error: BaseException | None = None
    while not isinstance(op := _step(steps, result, error), _Done):
        result, error = None, None
        try:
            result = _call(op, store, presence, snapshot)
            if inspect.isawaitable(result):  # a read, or an async snapshot hook
                result = await result
        except HistoryGapError as exc:
            error = exc
    return op.value


def run_sync(
    steps: Generator[Operation, Any, _R],
    store: SyncHistory,
    snapshot: Snapshot | None = None,
    presence: SyncPresence | None = None,
) -> _R:
    """Carry out ``steps`` against a blocking store (``store.sync``, ``presence.sync``)."""
    result: Any = None
    error: BaseException | None = None
    while not isinstance(op := _step(steps, result, error), _Done):
        result, error = None, None
        try:
            result = _call(op, store, presence, snapshot)
            if inspect.isawaitable(result):
                # Close a coroutine that will never run: no "never awaited" warning.
                getattr(result, "close", lambda: None)()
                raise TypeError("a sync view needs a sync snapshot hook")
        except HistoryGapError as exc:
            error = exc
    return op.value


# --- The rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeRequest:
    """What an adapter read from the request."""

    #: The request's GRIP context (proxied? Grip-Last?).
    grip: GripContext
    #: The ``Last-Event-ID`` header, if any.
    last_event_id: str | None
    #: The query parameters (first value of each).
    query: Mapping[str, str]
    #: The current time, Unix seconds.
    now: float


@dataclass(frozen=True)
class StreamOptions:
    """How a recoverable endpoint answers; the arguments of ``sse()`` and ``longpoll()``."""

    channels: tuple[str, ...]
    user: str | None = None
    #: Events a new subscriber gets from the history (the latest ones), e.g. a chat's backlog.
    history: int = 0
    #: Most events replayed in one response; a longer backlog is paged through next links.
    page_size: int = 100
    #: Seconds between Pushpin's refreshes of a held stream's next link: the longest a
    #: subscriber that missed the last message of a quiet channel waits for it.
    link_timeout: int = 60
    #: How long a next link stays valid, in seconds.
    link_ttl: int = 3600
    #: Seconds between SSE keep-alive comments on a quiet stream.
    keep_alive: int = 20
    #: Long-poll: seconds before the held request answers with no events.
    timeout: int = 55

    def __post_init__(self) -> None:
        # The names themselves are checked by the rules: from a URL, a bad one is the client's
        # 400, answered like any other bad recovery request.
        if not self.channels:
            raise ValueError("a recoverable endpoint needs at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels repeat: {list(self.channels)}")
        if self.history < 0:
            raise ValueError(f"history must be 0 or more, got {self.history}")
        for name in ("page_size", "link_timeout", "link_ttl", "keep_alive", "timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")


@dataclass
class _Plan:
    """Where each channel's subscriber is, and what it gets before the live events."""

    channels: tuple[str, ...]
    user: str | None
    #: Each channel's position before what the response sends, and after it.
    start: dict[str, int]
    positions: dict[str, int]
    #: What the client gets, in order: a stored event, a snapshot (str), or a reset (None).
    out: list[tuple[str, StoredEvent | str | None]]
    #: A channel has more than one page to catch up.
    more: bool = False
    #: How many of the stored events in ``out`` a returning subscriber had missed.
    replayed: int = 0


def _subscription(
    request: SubscribeRequest, options: StreamOptions, signer: LinkSigner
) -> tuple[tuple[str, ...], str | None, dict[str, int | None]]:
    """The channels, the user and each channel's position (None: a new subscriber)."""
    grip = request.grip
    channels, user = options.channels, options.user
    token = request.query.get(LINK_PARAM)
    if token is not None:
        if not grip.is_proxied:
            raise RecoveryRequestError("a next link is for the GRIP proxy only", 403)
        channels, user = signer.verify(token, request.now)
    for channel in channels:
        check_channel_name(channel)
    known = _from_grip_last(grip, channels)
    if not known:
        text = parse_last_event_id(request.last_event_id)
        for name in _LAST_EVENT_ID_PARAMS:
            text = text or request.query.get(name) or None
        if text is not None:
            known = parse_positions(text)
    return channels, user, {channel: known.get(channel) for channel in channels}


def _from_grip_last(grip: GripContext, channels: Sequence[str]) -> dict[str, int]:
    if not grip.is_proxied or not grip.last:
        return {}
    out = {}
    for channel in channels:
        last = grip.last.get(grip.prefix + RELIABLE_PREFIX + channel)
        if last is not None and last.isascii() and last.isdigit():
            out[channel] = int(last)
    return out


def _catch_up(
    request: SubscribeRequest, options: StreamOptions, signer: LinkSigner, snapshot: bool
) -> Generator[Operation, Any, _Plan]:
    channels, user, start = _subscription(request, options, signer)
    plan = _Plan(channels, user, {}, {}, [])
    for channel in channels:
        after = start[channel]
        if after is None:  # a new subscriber: from now, after its backlog or snapshot
            last: int = yield ReadLastId(channel)
            plan.start[channel] = plan.positions[channel] = last
            if options.history:
                backlog: list[StoredEvent] = yield ReadLatest(channel, options.history)
                plan.out.extend((channel, event) for event in backlog)
                plan.start[channel] = backlog[0].id - 1 if backlog else last
            elif snapshot:
                state: str | None = yield TakeSnapshot(channel, last)
                if state is not None:
                    plan.out.append((channel, state))
            continue
        plan.start[channel] = after
        try:
            # One more than a page: a backlog of exactly one page needs no next page.
            events: list[StoredEvent] = yield ReadEvents(channel, after, options.page_size + 1)
        except HistoryGapError as gap:
            plan.out.append((channel, None))
            plan.positions[channel] = gap.current_id
            continue
        if len(events) > options.page_size:
            plan.more = True
            del events[options.page_size :]
        plan.out.extend((channel, event) for event in events)
        plan.replayed += len(events)
        plan.positions[channel] = events[-1].id if events else after
    # Across channels, in the order they were published.
    plan.out.sort(key=lambda entry: entry[1].time if isinstance(entry[1], StoredEvent) else 0)
    return plan


def _count_recovery(transport: str, plan: _Plan) -> None:
    if _metrics._recorder is not None:
        resets = sum(1 for _, item in plan.out if item is None)
        _metrics._recorder.recovery(transport, plan.replayed, resets, plan.more)


def sse_steps(
    request: SubscribeRequest, options: StreamOptions, signer: LinkSigner, snapshot: bool = False
) -> Steps:
    """A recoverable SSE stream: what the subscriber missed, then a hold for the live events.

    A backlog longer than ``page_size`` goes out a page at a time, each page a hold whose
    ``prev-id`` is where the page ended: Pushpin asks for the next page with ``Grip-Last`` at
    once (a first hold behind Pushpin's last id), at the next publish, or after
    :data:`PAGED_LINK_TIMEOUT`. Never a page without a hold: Pushpin shares next-link fetches
    by path and ``Grip-Last``, not by query, so a position in the link's query would reach
    the wrong subscriber; and Pushpin 1.36 renders a next link's body with the filters of
    the response before it, so a page between holds would go through build-id unescaped.
    """
    try:
        plan = yield from _catch_up(request, options, signer, snapshot)
    except RecoveryRequestError as exc:
        return _error(exc)
    _count_recovery("sse", plan)
    grip = request.grip
    # Each event's id names every channel's position as it leaves, so a client that drops
    # mid-catch-up resumes where it was (a reset repeats until the client has seen it).
    ids = dict(plan.start)
    chunks = []
    for channel, item in plan.out:
        if item is None:
            ids[channel] = plan.positions[channel]
            data = json.dumps({"channel": channel, "current_id": ids[channel]})
            chunks.append(encode_sse_event(data, event=RESET_EVENT, id=format_positions(ids)))
        elif isinstance(item, str):
            chunks.append(encode_sse_event(item, event=SNAPSHOT_EVENT, id=format_positions(ids)))
        else:
            ids[channel] = item.id
            chunks.append(encode_sse_event(item.data, event=item.event, id=format_positions(ids)))
    body = "".join(chunks)
    if grip.is_proxied:
        _hold_stream(grip.start_instruct(), grip, plan, options, signer, request.now)
        # Pushpin renders this body through build-id too: % is written %%.
        body = body.replace("%", "%%")
    if not body:
        body = encode_sse_event(comment="stream open")
    return Reply(200, body.encode(), SSE_CONTENT_TYPE)


def _hold_stream(
    instruct: Any,
    grip: GripContext,
    plan: _Plan,
    options: StreamOptions,
    signer: LinkSigner,
    now: float,
) -> None:
    id_format = []
    for channel in plan.channels:
        pushpin = RELIABLE_PREFIX + channel
        instruct.add_channel(pushpin, prev_id=str(plan.positions[channel]), filters=["build-id"])
        id_format.append(f"{channel}:%({grip.prefix}{pushpin})s")
    instruct.set_hold_stream()
    instruct.set_meta("id_format", ",".join(id_format))
    instruct.set_keep_alive(SSE_KEEP_ALIVE, options.keep_alive)
    token = signer.sign(plan.channels, plan.user, now, options.link_ttl)
    # A page of a longer backlog: the next one soon, even if nothing is published.
    timeout = PAGED_LINK_TIMEOUT if plan.more else options.link_timeout
    instruct.set_next_link(f"?{LINK_PARAM}={token}", timeout)


def longpoll_steps(
    request: SubscribeRequest, options: StreamOptions, signer: LinkSigner, snapshot: bool = False
) -> Steps:
    """A recoverable long-poll: what the client missed at once, else a hold until a publish.

    The body is JSON: ``{"events": [...], "last_event_id": "news:12"}``; a client polls again
    with ``?last_event_id=`` set to the last one it got (a live publish's body has only
    ``events``: each carries its ``channel`` and ``id``).
    """
    try:
        plan = yield from _catch_up(request, options, signer, snapshot)
    except RecoveryRequestError as exc:
        return _error(exc)
    _count_recovery("longpoll", plan)
    grip = request.grip
    events: list[dict[str, Any]] = []
    for channel, item in plan.out:
        if item is None:
            events.append({"channel": channel, "event": RESET_EVENT, "id": plan.positions[channel]})
        elif isinstance(item, str):
            events.append({"channel": channel, "event": SNAPSHOT_EVENT, "data": item})
        else:
            events.append(event_json(item))
    if not events and grip.is_proxied:
        instruct = grip.start_instruct()
        for channel in plan.channels:
            instruct.add_channel(RELIABLE_PREFIX + channel, prev_id=str(plan.positions[channel]))
        instruct.set_hold_longpoll(options.timeout)
    body = {"events": events, "last_event_id": format_positions(plan.positions)}
    return Reply(200, (json.dumps(body, ensure_ascii=False) + "\n").encode(), JSON_CONTENT_TYPE)


def _error(exc: RecoveryRequestError) -> Reply:
    return Reply(exc.status_hint, (str(exc) + "\n").encode(), "text/plain; charset=utf-8")
