"""WebSocket-over-HTTP: the events codec and the per-request WebSocketContext (spec §5)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Literal, TypeGuard

from . import metrics as _metrics
from ._errors import WebSocketDecodeError, WebSocketStateError

__all__ = (
    "WEBSOCKET_EVENTS_CONTENT_TYPE",
    "WebSocketContext",
    "WebSocketEvent",
    "decode_websocket_events",
    "encode_websocket_events",
    "meta_name",
    "websocket_control_message",
)

#: The media type of WebSocket-over-HTTP bodies. Responses must use it exactly, without
#: parameters, or Pushpin treats the reply as a handshake rejection (spec §5.4).
WEBSOCKET_EVENTS_CONTENT_TYPE = "application/websocket-events"

_EVENT_TYPES = ("OPEN", "TEXT", "BINARY", "PING", "PONG", "CLOSE", "DISCONNECT")
# Wire name -> interned str, so decoding looks the type up instead of decoding it.
_TYPE_BY_WIRE_NAME = {name.encode("ascii"): name for name in _EVENT_TYPES}
_WIRE_NAME_BY_TYPE = {name: wire for wire, name in _TYPE_BY_WIRE_NAME.items()}
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_CRLF = b"\r\n"


def meta_name(name: str) -> str:
    """The name connection meta is known by: lower case, with ``_`` read as ``-``.

    One rule for every adapter, on the way in (``Meta-*``) and out (``Set-Meta-*``): WSGI and
    Django cannot tell ``_`` from ``-`` in a header name, and Django under ASGI drops names
    with ``_``, so a name written ``user_id`` travels as ``user-id``.
    """
    return name.lower().replace("_", "-")


# Events that recv() returns; PING, PONG and a stray OPEN are handled or skipped.
_RECEIVABLE_TYPES = frozenset(("TEXT", "BINARY", "CLOSE", "DISCONNECT"))
_MESSAGE_PREFIX = b"m:"
_CONTROL_PREFIX = b"c:"
_CONTROL_MESSAGE_TYPES = ("text", "binary", "ping", "pong")
_KEEP_ALIVE_MODES = ("idle", "interval")
# RFC 6455 §7.4: 1004-1006 and 1015 are reserved and must never be sent in a close frame.
_RESERVED_CLOSE_CODES = frozenset((1004, 1005, 1006, 1015))
# A close frame is a control frame: at most 125 payload bytes, 2 of them the code.
_MAX_CLOSE_REASON_BYTES = 123
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters (CR and LF above all) would break the header block; the adapter picks
# the bytes encoding of everything else.
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")

MessageType = Literal["text", "binary", "ping", "pong"]


class WebSocketEvent:
    """One WebSocket-over-HTTP event: a type such as ``"TEXT"`` and optional content.

    ``content`` is None for an event without content (``OPEN``, a bare ``CLOSE``), otherwise
    bytes; a ``str`` is stored as its UTF-8 encoding. Treat events as immutable values.
    """

    __slots__ = ("content", "type")

    type: str
    content: bytes | None

    def __init__(self, type: str, content: bytes | str | None = None) -> None:
        self.type = type
        self.content = content.encode() if isinstance(content, str) else content

    def get_type(self) -> str:
        """The event type (gripcontrol compatibility)."""
        return self.type

    def get_content(self) -> bytes | None:
        """The event content (gripcontrol compatibility)."""
        return self.content

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebSocketEvent):
            return NotImplemented
        return self.type == other.type and self.content == other.content

    def __hash__(self) -> int:
        return hash((self.type, self.content))

    def __repr__(self) -> str:
        if self.content is None:
            return f"WebSocketEvent({self.type!r})"
        return f"WebSocketEvent({self.type!r}, {self.content!r})"


def _decode_error(problem: str, offset: int) -> WebSocketDecodeError:
    return WebSocketDecodeError(f"malformed WebSocket-over-HTTP body: {problem} at byte {offset}")


def decode_websocket_events(
    body: bytes, *, max_events: int | None = None, max_event_size: int | None = None
) -> list[WebSocketEvent]:
    """Decode a WebSocket-over-HTTP request body into its events.

    The format is ``TYPE[ <hex size>]\\r\\n[<content>\\r\\n]`` per event (spec §5.3). Decoding is
    strict where Pushpin is lenient: a bad size, truncated content, a missing CRLF or an
    unknown event type raise :class:`WebSocketDecodeError`, whose message names the problem
    and its byte offset. An empty body has no events.

    Args:
        body: the request body, as bytes (a bytearray or memoryview is copied; a str is a
            TypeError, as the content sizes count bytes).
        max_events: raise if the body holds more events than this.
        max_event_size: raise if an event's content is larger than this many bytes.
    """
    if not isinstance(body, bytes):
        body = _bytes_body(body)
    events: list[WebSocketEvent] = []
    end = len(body)
    pos = 0
    while pos < end:
        if max_events is not None and len(events) >= max_events:
            raise _decode_error(f"more than {max_events} events", pos)
        line_end = body.find(_CRLF, pos)
        if line_end < 0:
            raise _decode_error("no CRLF after the event type", pos)
        name, space, size_field = body[pos:line_end].partition(b" ")
        event_type = _TYPE_BY_WIRE_NAME.get(name)
        if event_type is None:
            raise _decode_error(f"unknown event type {name[:32]!r}", pos)
        if not space:
            events.append(WebSocketEvent(event_type))
            pos = line_end + 2
            continue
        # int(x, 16) alone would also take "0x1f", " 1f", "1_f" and "+1f".
        if not size_field or size_field.strip(_HEX_DIGITS):
            raise _decode_error(f"bad content size {size_field[:32]!r}", pos + len(name) + 1)
        size = int(size_field, 16)
        if max_event_size is not None and size > max_event_size:
            raise _decode_error(
                f"content size {size} over the limit of {max_event_size} bytes", pos
            )
        start = line_end + 2
        pos = start + size
        # One comparison checks both that the content is complete and that CRLF follows it.
        if body[pos : pos + 2] != _CRLF:
            if pos > end:
                raise _decode_error(
                    f"content truncated: {size} bytes announced, {end - start} left", start
                )
            raise _decode_error("no CRLF after the content", pos)
        events.append(WebSocketEvent(event_type, body[start:pos]))
        pos += 2
    return events


def _bytes_body(body: object) -> bytes:
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        # gripcontrol refuses a str too: the content sizes count bytes, not characters.
        raise TypeError("body must be bytes, not str: encode it, e.g. body.encode('utf-8')")
    raise TypeError(f"body must be bytes, not {type(body).__name__}")


def encode_websocket_events(events: Iterable[WebSocketEvent]) -> bytes:
    """Encode events into a WebSocket-over-HTTP response body (spec §5.3).

    An event without content is written bare (``OPEN\\r\\n``); one with content carries its
    size in lowercase hex (``TEXT 5\\r\\nHello\\r\\n``, ``TEXT 0\\r\\n\\r\\n`` when empty).
    Raises ValueError for an unknown event type.
    """
    parts: list[bytes] = []
    append = parts.append
    for event in events:
        wire_name = _WIRE_NAME_BY_TYPE.get(event.type)
        if wire_name is None:
            raise ValueError(f"unknown WebSocket-over-HTTP event type {event.type!r}")
        content = event.content
        if content is None:
            append(wire_name + _CRLF)
        else:
            append(b"%s %x\r\n" % (wire_name, len(content)))
            append(content)
            append(_CRLF)
    return b"".join(parts)


def websocket_control_message(type: str, args: Mapping[str, object] | None = None) -> str:
    """Build the JSON of a GRIP control message: ``args`` plus ``type`` (spec §5.6).

    Send it with :meth:`WebSocketContext.send_control`, which adds the ``c:`` prefix.
    """
    message: dict[str, object] = {"type": type}
    if args:
        message.update(args)
        message["type"] = type
    return json.dumps(message, separators=(",", ":"))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(name: str, value: object) -> None:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _decode_utf8(what: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise WebSocketDecodeError(
            f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None


def _delayed_message_fields(
    content: str | bytes, timeout: int, message_type: MessageType | None
) -> dict[str, object]:
    _check_positive_int("timeout", timeout)
    if message_type is not None and message_type not in _CONTROL_MESSAGE_TYPES:
        raise ValueError(f"message_type must be text, binary, ping or pong, got {message_type!r}")
    fields: dict[str, object]
    if isinstance(content, bytes):
        # Pushpin takes a missing message-type as text even with content-bin (spec §5.6).
        fields = {
            "content-bin": base64.b64encode(content).decode("ascii"),
            "message-type": message_type or "binary",
        }
    else:
        fields = {"content": content}
        if message_type is not None:
            fields["message-type"] = message_type
    fields["timeout"] = timeout
    return fields


class WebSocketContext:
    """The state of one WebSocket-over-HTTP request: events in, events out (spec §5).

    Pushpin sends every client event of a WebSocket connection to the app as a POST; the
    context lets a handler read those events (:meth:`recv`, ``for message in ws``), answer
    (:meth:`send`, :meth:`close`) and steer the proxy (:meth:`subscribe`, :meth:`keep_alive`,
    ...). The middleware turns it into the reply with :meth:`to_response`. The API is
    gripcontrol's ``WebSocketContext``, so handlers written for it run unchanged.

    Args:
        connection_id: the ``Connection-Id`` request header.
        meta: the connection's stored meta, from the ``Meta-*`` request headers.
        events: the decoded request body.
        prefix: the channel prefix, prepended to subscribe/unsubscribe channel names exactly
            as the publisher prepends it on publish.
    """

    def __init__(
        self,
        connection_id: str,
        meta: Mapping[str, str],
        events: Sequence[WebSocketEvent],
        prefix: str = "",
    ) -> None:
        self.id = self.connection_id = connection_id
        #: The meta the request carried, by :func:`meta_name`.
        self.orig_meta: dict[str, str] = {meta_name(name): value for name, value in meta.items()}
        #: The connection's meta; changes become ``Set-Meta-*`` headers (an absent name deletes).
        self.meta: dict[str, str] = dict(self.orig_meta)
        self.prefix = prefix
        self.in_events: list[WebSocketEvent] = list(events)
        #: Events queued for the reply, in order.
        self.out_events: list[WebSocketEvent] = []
        #: True once :meth:`accept` was called in this request.
        self.accepted = False
        #: True once :meth:`close` was called.
        self.closed = False
        #: Code and reason of the client's CLOSE, set when :meth:`recv` returns it.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: True once :meth:`recv` returned the proxy's DISCONNECT (the client vanished).
        self.disconnected = False
        #: The subprotocol chosen with :meth:`accept`.
        self.subprotocol: str | None = None
        self._keep_alive_interval: int | None = None
        self._opening = bool(self.in_events) and self.in_events[0].type == "OPEN"
        # The OPEN belongs to accept()/reject(), never to recv().
        self._read_index = 1 if self._opening else 0
        self._ended_by: str | None = None
        self._rejection: tuple[int, str] | None = None

    @property
    def keep_alive_interval(self) -> int | None:
        """Seconds after which Pushpin calls the app even without client events (None: never).

        Sent as ``Keep-Alive-Interval``; Pushpin raises values below 20 to 20 and keeps the
        setting for the rest of the connection (spec §5.4).
        """
        return self._keep_alive_interval

    @keep_alive_interval.setter
    def keep_alive_interval(self, seconds: int | None) -> None:
        if seconds is not None:
            _check_positive_int("keep_alive_interval", seconds)
        self._keep_alive_interval = seconds

    # -- opening ---------------------------------------------------------------------------

    def is_opening(self) -> bool:
        """True if this request opens the connection (its first event is OPEN)."""
        return self._opening

    def accept(self, subprotocol: str | None = None) -> None:
        """Accept the opening connection, in GRIP mode, optionally choosing a subprotocol.

        Queues OPEN as the first reply event and enables the ``grip`` extension, so messages
        get the ``m:`` prefix and control messages work (spec §5.6).
        """
        if not self._opening:
            raise WebSocketStateError("accept() needs an opening request (first event OPEN)")
        if self.accepted:
            raise WebSocketStateError("accept() was already called")
        if self._ended_by is not None:
            raise WebSocketStateError(f"cannot accept() after {self._ended_by}")
        if subprotocol is not None and not _TOKEN.fullmatch(subprotocol):
            raise ValueError(f"subprotocol must be a token, got {subprotocol!r}")
        self.out_events.insert(0, WebSocketEvent("OPEN"))
        self.accepted = True
        self.subprotocol = subprotocol

    def reject(self, status: int = 403, reason: str = "") -> None:
        """Refuse the opening connection: Pushpin relays this HTTP reply to the client.

        Args:
            status: a 4xx or 5xx status.
            reason: the text/plain body.
        """
        if not self._opening:
            raise WebSocketStateError("reject() needs an opening request (first event OPEN)")
        if self.accepted:
            raise WebSocketStateError("cannot reject() after accept()")
        if self._ended_by is not None:
            raise WebSocketStateError(f"cannot reject() after {self._ended_by}")
        if not _is_int(status) or not 400 <= status <= 599:
            raise ValueError(f"reject() status must be 400-599, got {status!r}")
        self._rejection = (status, reason)
        self._ended_by = "reject()"

    # -- receiving -------------------------------------------------------------------------

    def _skip_to_message(self) -> None:
        # Client pings are relayed but not answered by Pushpin: the app must PONG (spec §5.5).
        events = self.in_events
        while self._read_index < len(events):
            event = events[self._read_index]
            if event.type in _RECEIVABLE_TYPES:
                return
            self._read_index += 1
            if event.type == "PING" and self._ended_by is None:
                self.out_events.append(WebSocketEvent("PONG", event.content))

    def can_recv(self) -> bool:
        """True if :meth:`recv` has something to return (a message, a close or a disconnect)."""
        self._skip_to_message()
        return self._read_index < len(self.in_events)

    def recv(self) -> str | bytes | None:
        """Return the next client message: str for TEXT, bytes for BINARY.

        Returns None when the client closed (see :attr:`close_code`, :attr:`close_reason`) or
        disconnected (:attr:`disconnected`). PINGs on the way are answered with PONGs. Raises
        :class:`WebSocketStateError` when nothing is left; check :meth:`can_recv` first.
        """
        if not self.can_recv():
            raise WebSocketStateError("recv() has nothing left to read; check can_recv() first")
        event = self.in_events[self._read_index]
        self._read_index += 1
        if event.type == "TEXT":
            return _decode_utf8("TEXT message", event.content) if event.content else ""
        if event.type == "BINARY":
            return event.content or b""
        if event.type == "CLOSE":
            content = event.content
            # Pushpin sends the code in the first 2 bytes and the reason after it (spec §5.3).
            if content is not None and len(content) >= 2:
                self.close_reason = _decode_utf8("CLOSE reason", content[2:])
                self.close_code = int.from_bytes(content[:2], "big")
            return None
        self.disconnected = True
        return None

    def __iter__(self) -> Iterator[str | bytes]:
        """Yield the client's messages until it closes or nothing is left."""
        while self.can_recv():
            message = self.recv()
            if message is None:
                return
            yield message

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        """``async for message in ws``: the same messages as ``for message in ws``."""
        for message in self:
            yield message

    # -- sending ---------------------------------------------------------------------------

    def _check_can_send(self, action: str) -> None:
        if self._ended_by is not None:
            raise WebSocketStateError(f"cannot {action} after {self._ended_by}")
        if self._opening and not self.accepted:
            # Without OPEN first the handshake fails; reject() is the way to refuse.
            raise WebSocketStateError(f"cannot {action} before accept() on an opening request")

    def _send_message(self, event_type: str, message: str | bytes, action: str) -> None:
        self._check_can_send(action)
        content = message.encode() if isinstance(message, str) else message
        # Past _check_can_send() the grip extension is on (accepted in this request, or a later
        # request of a connection accepted in GRIP mode), and in GRIP mode Pushpin drops
        # messages without the prefix (spec §5.6).
        self.out_events.append(WebSocketEvent(event_type, _MESSAGE_PREFIX + content))

    def send(self, message: str | bytes) -> None:
        """Send a text message (bytes are sent as they are, so they should be UTF-8)."""
        self._send_message("TEXT", message, "send()")

    def send_binary(self, data: bytes | str) -> None:
        """Send a binary message (a str is sent as its UTF-8 bytes)."""
        self._send_message("BINARY", data, "send_binary()")

    def ping(self, content: bytes = b"") -> None:
        """Send the client a WebSocket ping; its PONG comes back as an event (Pushpin relays
        it), which is how an app can tell that a quiet client is still there."""
        self._check_can_send("ping()")
        self.out_events.append(WebSocketEvent("PING", content or None))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with a close code (1000-4999) and a short UTF-8 reason."""
        self._check_can_send("close()")
        if not _is_int(code) or not 1000 <= code <= 4999 or code in _RESERVED_CLOSE_CODES:
            raise ValueError(f"close code must be 1000-4999 and not reserved, got {code!r}")
        reason_bytes = reason.encode()
        if len(reason_bytes) > _MAX_CLOSE_REASON_BYTES:
            raise ValueError(
                f"close reason is {len(reason_bytes)} UTF-8 bytes, the limit is "
                f"{_MAX_CLOSE_REASON_BYTES}"
            )
        self.out_events.append(WebSocketEvent("CLOSE", code.to_bytes(2, "big") + reason_bytes))
        self.closed = True
        self._ended_by = "close()"

    def disconnect(self) -> None:
        """Drop the client's connection at once, without a close frame."""
        self._check_can_send("disconnect()")
        self.out_events.append(WebSocketEvent("DISCONNECT"))
        self._ended_by = "disconnect()"

    # -- control messages (spec §5.6) ------------------------------------------------------

    def send_control(self, message: str) -> None:
        """Send a raw control message (JSON text) to the proxy."""
        self._check_can_send("send a control message")
        self.out_events.append(WebSocketEvent("TEXT", _CONTROL_PREFIX + message.encode()))

    def _control(self, control_type: str, fields: Mapping[str, object] | None = None) -> None:
        self.send_control(websocket_control_message(control_type, fields))

    def _channel(self, channel: str) -> str:
        if not channel:
            raise ValueError("channel name must not be empty")
        return self.prefix + channel

    def subscribe(self, channel: str, filters: Sequence[str] = ()) -> None:
        """Subscribe the connection to a channel, with optional filters such as ``skip-self``."""
        if isinstance(filters, str):
            raise TypeError("filters must be a sequence of filter names, not a str")
        fields: dict[str, object] = {"channel": self._channel(channel)}
        if filters:
            fields["filters"] = list(filters)
        self._control("subscribe", fields)

    def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the connection from a channel."""
        self._control("unsubscribe", {"channel": self._channel(channel)})

    def detach(self) -> None:
        """Stop the proxy from forwarding client messages; the client still gets publishes."""
        self._control("detach")

    def keep_alive(
        self,
        content: str | bytes | None,
        *,
        timeout: int = 55,
        mode: Literal["idle", "interval"] = "idle",
        message_type: MessageType | None = None,
    ) -> None:
        """Have the proxy send ``content`` to the client to keep the connection alive.

        Args:
            content: the message; bytes go out as a binary message unless ``message_type``
                says otherwise. None turns keep-alive off.
            timeout: seconds of idleness (mode ``idle``) or the period (mode ``interval``).
            mode: ``idle`` or ``interval``.
            message_type: ``text``, ``binary``, ``ping`` or ``pong``.
        """
        if content is None:
            self._control("keep-alive")
            return
        if mode not in _KEEP_ALIVE_MODES:
            raise ValueError(f"mode must be 'idle' or 'interval', got {mode!r}")
        fields = _delayed_message_fields(content, timeout, message_type)
        fields["mode"] = mode
        self._control("keep-alive", fields)

    def send_delayed(
        self, content: str | bytes, *, timeout: int = 1, message_type: MessageType | None = None
    ) -> None:
        """Have the proxy send ``content`` to the client after ``timeout`` seconds.

        A later ``send_delayed`` first sends the pending one; :meth:`flush_delayed` sends it now.
        """
        self._control("send-delayed", _delayed_message_fields(content, timeout, message_type))

    def flush_delayed(self) -> None:
        """Have the proxy send the pending delayed message now."""
        self._control("flush-delayed")

    def set_subscription_meta(self, name: str, value: str | None) -> None:
        """Set (or with None delete) the subscription meta used by filters such as ``skip-self``.

        This is the ``set-meta`` control message, not the connection :attr:`meta`.
        """
        if not name:
            raise ValueError("meta name must not be empty")
        fields = {"name": name} if value is None else {"name": name, "value": value}
        self._control("set-meta", fields)

    # -- the reply -------------------------------------------------------------------------

    def _meta_headers(self) -> list[tuple[str, str]]:
        current = {meta_name(name): value for name, value in self.meta.items()}
        changed = [
            (name, value) for name, value in current.items() if self.orig_meta.get(name) != value
        ]
        # An empty value deletes the meta in Pushpin (spec §5.4).
        removed = [(name, "") for name in self.orig_meta if name not in current]
        headers = []
        for name, value in changed + removed:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"meta name must be a header token, got {name!r}")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"meta {name!r} has a value that cannot be a header: {value!r}")
            headers.append((f"Set-Meta-{name}", value))
        return headers

    def _close_echo(self) -> WebSocketEvent | None:
        # A client CLOSE the handler did not answer gets echoed, or Pushpin counts the
        # connection as uncleanly closed (spec §5.5).
        if self._ended_by is not None:
            return None
        for event in self.in_events:
            if event.type == "CLOSE":
                # Code and reason both go back, as Pushpin itself answers a close (spec §5.5).
                content = event.content
                return WebSocketEvent("CLOSE", content if content and len(content) >= 2 else None)
        return None

    def to_response(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The reply for Pushpin: status, headers and body (without Content-Length).

        Normally ``200`` with the encoded :attr:`out_events`; after :meth:`reject` the
        rejection's status and text. Calling it does not change the context; with
        :mod:`grip_asgi.metrics` on, it counts the events as sent (the adapters call it once).
        """
        if self._rejection is not None:
            status, reason = self._rejection
            return status, [("Content-Type", "text/plain; charset=utf-8")], reason.encode()
        headers = [("Content-Type", WEBSOCKET_EVENTS_CONTENT_TYPE)]
        if self.accepted:
            headers.append(("Sec-WebSocket-Extensions", "grip"))
        if self.subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", self.subprotocol))
        if self._keep_alive_interval is not None:
            headers.append(("Keep-Alive-Interval", str(self._keep_alive_interval)))
        headers += self._meta_headers()
        events = self.out_events
        echo = self._close_echo()
        if echo is not None:
            events = [*events, echo]
        body = encode_websocket_events(events)
        if _metrics._recorder is not None:
            _metrics._recorder.websocket_sent(events)
        return 200, headers, body
