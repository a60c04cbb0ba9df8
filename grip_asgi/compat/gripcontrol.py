"""gripcontrol 4.x's public names, with its signatures, on grip-asgi's code.

Change ``from gripcontrol import ...`` to ``from grip_asgi.compat.gripcontrol import ...``
(and ``from pubcontrol import Item`` to ``from grip_asgi.compat.pubcontrol import Item``) and
the code runs as before. What differs on purpose, each checked against gripcontrol 4.4 by
``tests/compat``:

- Input Pushpin or RFC 6455 would reject raises ``ValueError`` where gripcontrol sent it on:
  malformed WebSocket-over-HTTP bodies, close codes no endpoint may send (0-999, 1004-1006,
  1015, 5000 and up), channel names a ``Grip-Channel`` header cannot carry, unknown hold modes.
- ``close()`` without a code closes with 1000 (normal closure), not with the invalid code 0.
- :class:`Channel` is an immutable, validated value: pass ``filters=[...]`` rather than
  appending to ``channel.filters``.
- A publish error is never dropped: a non-blocking publish without a callback logs it.
- pubcontrol's ZMQ publishing (``sub_callback``, ``control_zmq_uri``,
  ``require_subscribers``) and ``set_origin`` (the retired Fanout Cloud API) are not provided
  and say so; grip-asgi publishes over ZeroMQ itself, given a ``zmq+tcp://`` control URI.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .. import _config, _publish, _signature, _websocket
from .._errors import GripConfigError, PublishError
from .._instruct import Channel, GripInstruct, create_grip_channel_header
from .pubcontrol import Format, Item

__all__ = (
    "Channel",
    "GripPubControl",
    "HttpResponseFormat",
    "HttpStreamFormat",
    "Response",
    "WebSocketContext",
    "WebSocketEvent",
    "WebSocketMessageFormat",
    "create_grip_channel_header",
    "create_hold",
    "create_hold_response",
    "create_hold_stream",
    "decode_websocket_events",
    "encode_websocket_events",
    "parse_grip_uri",
    "validate_sig",
    "websocket_control_message",
)

logger = logging.getLogger("grip_asgi.compat.gripcontrol")

#: What gripcontrol's publish callbacks receive: success, and the error message (None on
#: success).
PublishCallback = Callable[[bool, str | None], object]


# --- GRIP URLs and Grip-Sig ---------------------------------------------------------------


def parse_grip_uri(uri: str) -> dict[str, Any]:
    """gripcontrol's dict: ``control_uri`` plus ``control_iss``, ``key``, ``verify_iss`` and
    ``verify_key`` where the URL sets them (``base64:`` keys decoded to bytes).

    Credentials in the URL stay in ``control_uri``, as gripcontrol left them. A URL that is
    not ``http(s)://host...`` raises ``ValueError`` (:class:`~grip_asgi.GripConfigError`).
    """
    config = _config.parse_grip_uri(uri)
    out: dict[str, Any] = {name: config[name] for name in _URI_KEYS if name in config}
    if config.user is not None:
        out["control_uri"] = _with_credentials(config)
    return out


_URI_KEYS = ("control_uri", "control_iss", "key", "verify_iss", "verify_key")


def _with_credentials(config: _config.GripConfig) -> str:
    parts = urlsplit(config.control_uri)
    userinfo = quote(config.user or "", safe="")
    if config.password is not None:
        userinfo += ":" + quote(config.password, safe="")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def validate_sig(
    token: str | bytes | None, key: str | bytes | None, iss: str | None = None
) -> bool:
    """True when ``token`` (a ``Grip-Sig`` value) is signed by ``key``, has not expired and,
    if ``iss`` is given, was issued by ``iss``.

    HS256, ES256 and RS256 always verify (gripcontrol needed ``cryptography`` installed for the
    last two, and returned False without it); a key that is not valid key material raises
    ``ValueError`` instead of failing every request.
    """
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(token, str):
        return False  # gripcontrol: headers.get() gave None, so not valid
    return _signature.validate_sig(token, key, iss)


# --- Instructs ----------------------------------------------------------------------------


class Response:
    """The response a hold instruct gives the client (on timeout, for a long-poll)."""

    def __init__(
        self,
        code: int | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.headers = headers
        self.body = body


_Channels = str | Channel | Iterable[str | Channel]


def create_hold(
    mode: str,
    channels: _Channels,
    response: Response | str | bytes | None,
    timeout: int | None = None,
) -> str:
    """The ``application/grip-instruct`` JSON body that holds the request on ``channels``.

    ``mode`` is ``"response"`` (long-poll) or ``"stream"``; ``response`` (a :class:`Response`,
    or a body) is what the client gets, and ``timeout`` the long-poll's limit in seconds.
    """
    instruct = GripInstruct(channels)
    if mode == "response":
        instruct.set_hold_longpoll(timeout or None)
    elif mode == "stream":
        instruct.set_hold_stream()
        if timeout:  # gripcontrol wrote it for either mode; Pushpin reads it for long-polls
            instruct.timeout = timeout
    else:
        raise ValueError(f"hold mode must be 'response' or 'stream', got {mode!r}")
    return instruct.to_json(response=_response_fields(response))


def create_hold_response(
    channels: _Channels, response: Response | str | bytes | None = None, timeout: int | None = None
) -> str:
    """:func:`create_hold` for a long-poll."""
    return create_hold("response", channels, response, timeout)


def create_hold_stream(channels: _Channels, response: Response | str | bytes | None = None) -> str:
    """:func:`create_hold` for a stream."""
    return create_hold("stream", channels, response)


def _response_fields(response: Response | str | bytes | None) -> dict[str, object] | None:
    if response is None:
        return None
    if isinstance(response, (str, bytes)):
        response = Response(body=response)
    # As gripcontrol: only what is set (an empty body or reason is not set).
    fields: dict[str, object] = {}
    if response.code is not None:
        fields["code"] = response.code
    if response.reason:
        fields["reason"] = response.reason
    if response.headers:
        fields["headers"] = dict(response.headers)
    if response.body:
        fields["body"] = response.body
    return fields


# --- WebSocket-over-HTTP ------------------------------------------------------------------


class WebSocketEvent:
    """One WebSocket-over-HTTP event. ``content`` stays what it was given (str, bytes or
    None), as in gripcontrol; :func:`encode_websocket_events` encodes a str as UTF-8."""

    def __init__(self, type: str, content: str | bytes | None = None) -> None:
        self.type = type
        self.content = content

    def __repr__(self) -> str:
        if self.content is None:
            return f"WebSocketEvent({self.type!r})"
        return f"WebSocketEvent({self.type!r}, {self.content!r})"


_AnyEvent = WebSocketEvent | _websocket.WebSocketEvent


def decode_websocket_events(body: bytes) -> list[WebSocketEvent]:
    """The events of a WebSocket-over-HTTP body (bytes, as in gripcontrol).

    A malformed body raises ``ValueError`` (:class:`~grip_asgi.WebSocketDecodeError`, naming
    the problem and its offset), where gripcontrol returned truncated or unknown events.
    """
    if not isinstance(body, bytes):
        raise ValueError("body must be bytes")
    return [WebSocketEvent(e.type, e.content) for e in _websocket.decode_websocket_events(body)]


def encode_websocket_events(events: Iterable[_AnyEvent]) -> bytes:
    """The WebSocket-over-HTTP body for ``events`` (str content is sent as UTF-8).
    An unknown event type raises ``ValueError``."""
    return _websocket.encode_websocket_events(_core_events(events))


def _core_events(events: Iterable[_AnyEvent]) -> list[_websocket.WebSocketEvent]:
    return [
        e
        if isinstance(e, _websocket.WebSocketEvent)
        else _websocket.WebSocketEvent(e.type, e.content)
        for e in events
    ]


def websocket_control_message(type: str, args: Mapping[str, Any] | None = None) -> str:
    """The JSON of a GRIP control message: ``args`` plus ``type``, formatted as gripcontrol
    formats it (send it after a ``c:`` prefix, or with ``WebSocketContext.send_control``)."""
    message = copy.deepcopy(dict(args)) if args else {}
    message["type"] = type
    return json.dumps(message)


class WebSocketContext:
    """gripcontrol's view of one WebSocket-over-HTTP request: its events in, the reply's out.

    The reply is built from the context as gripcontrol's frameworks built it: ``OPEN`` when
    :attr:`accepted`, then :attr:`out_events`, then ``CLOSE`` with :attr:`out_close_code`
    when :attr:`closed`; :meth:`reply_events` gives that list. Inside grip-asgi's middleware
    (``grip.ws``, ``request.wscontext``) handlers get :class:`grip_asgi.WebSocketContext`,
    which has the same methods.
    """

    def __init__(
        self,
        id: str | None,
        meta: Mapping[str, str],
        in_events: Sequence[_AnyEvent],
        grip_prefix: str = "",
    ) -> None:
        self.id = id
        self.in_events = list(in_events)
        self.read_index = 0
        self.accepted = False
        #: The code of the client's CLOSE, once :meth:`recv` returned it.
        self.close_code: int | None = None
        #: The reason of the client's CLOSE (grip-asgi also reads it).
        self.close_reason: str | None = None
        self.closed = False
        self.out_close_code: int | None = None
        self.out_events: list[WebSocketEvent] = []
        self.orig_meta = dict(meta)
        self.meta = copy.deepcopy(self.orig_meta)
        self.grip_prefix = grip_prefix

    def is_opening(self) -> bool:
        """True if this request opens the connection (its first event is ``OPEN``)."""
        return bool(self.in_events) and self.in_events[0].type == "OPEN"

    def accept(self) -> None:
        """Accept the connection: the reply starts with ``OPEN``."""
        self.accepted = True

    def close(self, code: int | None = None) -> None:
        """Close the connection with ``code`` (default 1000, normal closure).

        The code must be one an endpoint may send (1000-4999 except 1004-1006 and 1015,
        RFC 6455 §7.4): anything else raises ``ValueError``, where gripcontrol sent it on
        (and sent the invalid code 0 for no code).
        """
        if code is None:
            code = 1000
        if not _websocket._is_int(code) or not 1000 <= code <= 4999:
            raise ValueError(f"close code must be 1000-4999 and not reserved, got {code!r}")
        if code in _websocket._RESERVED_CLOSE_CODES:
            raise ValueError(f"close code must be 1000-4999 and not reserved, got {code!r}")
        self.closed = True
        self.out_close_code = code

    def handle_upcoming_pings_and_pongs(self) -> None:
        """Answer the client's PINGs before the next message with PONGs (Pushpin does not)."""
        while self.read_index < len(self.in_events):
            event = self.in_events[self.read_index]
            if event.type not in ("PING", "PONG"):
                return
            self.read_index += 1
            if event.type == "PING":
                self.out_events.append(WebSocketEvent("PONG", event.content))

    def can_recv(self) -> bool:
        """True if :meth:`recv` has a message, a close or a disconnect to return."""
        self.handle_upcoming_pings_and_pongs()
        return any(e.type in _RECEIVABLE for e in self.in_events[self.read_index :])

    def recv(self) -> str | bytes | None:
        """The next message: str for TEXT, bytes for BINARY, None when the client closed.

        Raises ``OSError`` when the client disconnected without a close, and ``IndexError``
        when nothing is left (check :meth:`can_recv`).
        """
        self.handle_upcoming_pings_and_pongs()
        while self.read_index < len(self.in_events):
            event = self.in_events[self.read_index]
            self.read_index += 1
            if event.type in _RECEIVABLE:
                return self._message(event)
        raise IndexError("read from empty buffer")

    def _message(self, event: _AnyEvent) -> str | bytes | None:
        content = event.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        if event.type == "TEXT":
            return content.decode("utf-8") if content else ""
        if event.type == "BINARY":
            return content or b""
        if event.type == "CLOSE":
            if content is not None and len(content) >= 2:
                # RFC 6455 §5.5.1: a reason may follow the code (gripcontrol then lost both).
                self.close_code = int.from_bytes(content[:2], "big")
                self.close_reason = content[2:].decode("utf-8", "replace")
            return None
        raise OSError("client disconnected unexpectedly")

    def send(self, message: str | bytes) -> None:
        """Send a text message."""
        self.out_events.append(WebSocketEvent("TEXT", b"m:" + _utf8(message)))

    def send_binary(self, message: str | bytes) -> None:
        """Send a binary message (a str as its UTF-8 bytes)."""
        self.out_events.append(WebSocketEvent("BINARY", b"m:" + _utf8(message)))

    def send_control(self, message: str | bytes) -> None:
        """Send a GRIP control message (see :func:`websocket_control_message`)."""
        self.out_events.append(WebSocketEvent("TEXT", b"c:" + _utf8(message)))

    def subscribe(self, channel: str) -> None:
        """Subscribe the connection to ``grip_prefix + channel``."""
        self.send_control(websocket_control_message("subscribe", self._channel(channel)))

    def unsubscribe(self, channel: str) -> None:
        """Unsubscribe the connection from ``grip_prefix + channel``."""
        self.send_control(websocket_control_message("unsubscribe", self._channel(channel)))

    def detach(self) -> None:
        """Stop the proxy from forwarding the client's messages."""
        self.send_control(websocket_control_message("detach"))

    def _channel(self, channel: str) -> dict[str, str]:
        if not channel:
            raise ValueError("channel name must not be empty")
        return {"channel": self.grip_prefix + channel}

    def reply_events(self) -> list[WebSocketEvent]:
        """The events of the reply: ``OPEN`` if accepted, the queued events, then the close."""
        events = [WebSocketEvent("OPEN")] if self.accepted else []
        events += self.out_events
        if self.closed:
            assert self.out_close_code is not None
            events.append(WebSocketEvent("CLOSE", self.out_close_code.to_bytes(2, "big")))
        return events

    def reply_headers(self) -> list[tuple[str, str]]:
        """The reply's headers: the content type, the ``grip`` extension once accepted, and
        ``Set-Meta-*`` for each meta value changed (an empty value for one removed)."""
        headers = [("Content-Type", _websocket.WEBSOCKET_EVENTS_CONTENT_TYPE)]
        if self.accepted:
            headers.append(("Sec-WebSocket-Extensions", "grip"))
        meta = {_websocket.meta_name(k): v for k, v in self.meta.items()}
        orig = {_websocket.meta_name(k): v for k, v in self.orig_meta.items()}
        headers += [(f"Set-Meta-{name}", "") for name in orig if name not in meta]
        headers += [(f"Set-Meta-{n}", v) for n, v in meta.items() if orig.get(n) != v]
        return headers


_RECEIVABLE = ("TEXT", "BINARY", "CLOSE", "DISCONNECT")


def _utf8(message: str | bytes) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else message


# --- Publish formats ----------------------------------------------------------------------


class HttpResponseFormat(_publish.HttpResponseFormat):
    """gripcontrol's ``HttpResponseFormat(code, reason, headers, body, content_filters,
    action)``: a :class:`grip_asgi.HttpResponseFormat` whose body defaults to empty."""

    __slots__ = ()

    def __post_init__(self) -> None:
        if self.code is not None and (
            not isinstance(self.code, int) or isinstance(self.code, bool)
        ):
            # django-grip's README passes the body first, where the status code goes.
            raise TypeError(
                f"code must be an int HTTP status, got {type(self.code).__name__}: "
                "pass the body as body=..."
            )
        if self.body is None and self.action in (None, "send"):
            object.__setattr__(self, "body", "")
        _publish.HttpResponseFormat.__post_init__(self)

    def export(self) -> dict[str, Any]:
        """The format's JSON object."""
        return self.to_dict()


class HttpStreamFormat(_publish.HttpStreamFormat):
    """gripcontrol's ``HttpStreamFormat(content=None, close=False, content_filters=None,
    action=None)``: a :class:`grip_asgi.HttpStreamFormat`."""

    __slots__ = ()

    def export(self) -> dict[str, Any]:
        """The format's JSON object."""
        return self.to_dict()


class WebSocketMessageFormat(_publish.WebSocketMessageFormat):
    """gripcontrol's ``WebSocketMessageFormat(content=None, binary=False, action=None,
    code=None, reason=None)``: a :class:`grip_asgi.WebSocketMessageFormat`.

    As in gripcontrol, bytes content is a text message unless ``binary=True`` (it must then
    be UTF-8), where grip-asgi's own class sends bytes as a binary message.
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        if isinstance(self.content, bytes) and not self.binary and self.type is None:
            object.__setattr__(self, "content", self.content.decode("utf-8"))
        _publish.WebSocketMessageFormat.__post_init__(self)

    def export(self) -> dict[str, Any]:
        """The format's JSON object."""
        return self.to_dict()


for _format in (HttpResponseFormat, HttpStreamFormat, WebSocketMessageFormat):
    Format.register(_format)


# --- GripPubControl -----------------------------------------------------------------------


_ConfigEntry = Mapping[str, Any] | _config.GripConfig | str


class GripPubControl:
    """gripcontrol's publisher, on a :class:`grip_asgi.SyncPublisher`.

    ``config`` is a ``parse_grip_uri`` dict (``control_uri``, ``control_iss``, ``key``), a
    list of them, a GRIP URL or a :class:`~grip_asgi.GripConfig`. A blocking publish raises
    ``ValueError`` (from the :class:`~grip_asgi.PublishError` that says what failed); a
    non-blocking one runs on a worker thread, in order, and reports to ``callback(success,
    message)``, or logs the error when there is no callback (gripcontrol dropped it).
    """

    def __init__(
        self,
        config: _ConfigEntry | Sequence[_ConfigEntry] | None = None,
        sub_callback: Callable[[str, str], object] | None = None,
        zmq_context: object = None,
    ) -> None:
        if sub_callback is not None or zmq_context is not None:
            raise NotImplementedError(
                "sub_callback and zmq_context are for pubcontrol's ZMQ publishing, which is not"
                f" provided ({_OWN_ZEROMQ})"
            )
        self._configs: list[_config.GripConfig] = []
        self._own: _publish.SyncPublisher | None = None
        self._source: Callable[[], _publish.SyncPublisher] | None = None
        self._lock = threading.Lock()
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self.closed = False
        if config:
            self.apply_grip_config(config)

    @classmethod
    def _over(cls, source: Callable[[], _publish.SyncPublisher]) -> GripPubControl:
        """One that publishes with ``source()``'s publisher (django-grip's and faas-grip's)."""
        pub = cls()
        pub._source = source
        return pub

    def apply_grip_config(self, config: _ConfigEntry | Sequence[_ConfigEntry]) -> None:
        """Add proxies: a ``parse_grip_uri`` dict, a list of them, a URL or a GripConfig."""
        entries = [config] if isinstance(config, (Mapping, str)) else list(config)
        self._add([_grip_config(entry) for entry in entries])

    def apply_config(self, config: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Add proxies given pubcontrol's way (``uri``, ``iss``, ``key``)."""
        entries = [config] if isinstance(config, Mapping) else list(config)
        self._add([_grip_config(_from_pubcontrol(entry)) for entry in entries])

    def remove_all_clients(self) -> None:
        """Forget every proxy."""
        self._add(None)

    def _add(self, configs: list[_config.GripConfig] | None) -> None:
        self._check_open()
        with self._lock:
            self._configs = [] if configs is None else [*self._configs, *configs]
            old, self._own = self._own, None
        if old is not None:
            old.close()

    def _publisher(self) -> _publish.SyncPublisher:
        if self._source is not None:
            return self._source()
        with self._lock:
            if self._own is None:
                self._own = _publish.SyncPublisher(_config.GripSettings(tuple(self._configs)))
            return self._own

    def publish(
        self,
        channel: str,
        item: _publish.Item,
        blocking: bool = False,
        callback: PublishCallback | None = None,
    ) -> None:
        """Publish ``item`` to ``channel`` on every proxy.

        ``blocking=True`` waits and raises ``ValueError`` on failure. Otherwise the publish is
        queued behind the earlier ones, and ``callback(success, message)`` runs when it is done.
        """
        self._check_open()
        if blocking:
            try:
                self._publisher().publish(channel, item)
            except (PublishError, GripConfigError) as exc:
                raise ValueError(f"failed to publish: {exc}") from exc
            return
        with self._lock:
            if self._worker is None:
                self._worker = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="grip-compat-publish"
                )
            future = self._worker.submit(self._publish_queued, channel, item, callback)
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _publish_queued(
        self, channel: str, item: _publish.Item, callback: PublishCallback | None
    ) -> None:
        try:
            self._publisher().publish(channel, item)
        except Exception as exc:  # any failure reaches the callback or the log, never nothing
            if callback is None:
                logger.error("publish to %r failed: %s", channel, exc)
                return
            result: tuple[bool, str | None] = (False, str(exc))
        else:
            result = (True, None)
        if callback is not None:
            try:
                callback(*result)
            except Exception:
                logger.exception("the publish callback for %r raised", channel)

    def publish_http_response(
        self,
        channel: str,
        http_response: _publish.HttpResponseFormat | str | bytes,
        id: str | None = None,
        prev_id: str | None = None,
        blocking: bool = False,
        callback: PublishCallback | None = None,
    ) -> None:
        """Publish to held long-polls: a format, or a body for one."""
        if not isinstance(http_response, _publish.HttpResponseFormat):
            http_response = HttpResponseFormat(body=http_response)
        self.publish(channel, Item(http_response, id, prev_id), blocking, callback)

    def publish_http_stream(
        self,
        channel: str,
        http_stream: _publish.HttpStreamFormat | str | bytes,
        id: str | None = None,
        prev_id: str | None = None,
        blocking: bool = False,
        callback: PublishCallback | None = None,
    ) -> None:
        """Publish to held streams: a format, or content for one."""
        if not isinstance(http_stream, _publish.HttpStreamFormat):
            http_stream = HttpStreamFormat(http_stream)
        self.publish(channel, Item(http_stream, id, prev_id), blocking, callback)

    def wait_all_sent(self) -> None:
        """Wait until every non-blocking publish so far is done."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending)

    def finish(self) -> None:
        """gripcontrol's old name for :meth:`wait_all_sent`."""
        self.wait_all_sent()

    def close(self) -> None:
        """Wait for the queued publishes, then release the connections. Publishing after
        this raises ``ValueError``."""
        self._check_open()
        self.wait_all_sent()
        with self._lock:
            self.closed = True
            worker, own = self._worker, self._own
        if worker is not None:
            worker.shutdown()
        if own is not None:
            own.close()

    def set_origin(self, *args: object, **kwargs: object) -> None:
        """Not supported: it configured the retired Fanout Cloud service."""
        raise NotImplementedError("set_origin() belonged to Fanout Cloud's API, which is retired")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("pubcontrol instance is closed")


_OWN_ZEROMQ = "grip-asgi publishes over ZeroMQ itself, given a zmq+tcp:// control URI"


def _from_pubcontrol(entry: Mapping[str, Any]) -> dict[str, Any]:
    if "uri" not in entry:
        raise NotImplementedError(
            f"only 'uri' entries are supported, not pubcontrol's ZMQ ones ({_OWN_ZEROMQ})"
        )
    out: dict[str, Any] = {"control_uri": entry["uri"]}
    if "key" in entry:
        out["key"] = entry["key"]
        if "iss" in entry:
            out["control_iss"] = entry["iss"]
    return out


def _grip_config(entry: _ConfigEntry) -> _config.GripConfig:
    if isinstance(entry, _config.GripConfig):
        return entry
    if isinstance(entry, str):
        return _config.parse_grip_uri(entry)
    if "control_zmq_uri" in entry or entry.get("require_subscribers"):
        raise NotImplementedError(
            "control_zmq_uri and require_subscribers are for pubcontrol's ZMQ publishing, which"
            f" is not provided ({_OWN_ZEROMQ})"
        )
    if "control_uri" not in entry:
        raise GripConfigError("a GRIP proxy entry needs 'control_uri'")
    # Checks the names and decodes the keys; the URL is read as a GRIP URL because
    # gripcontrol's parse_grip_uri left Basic credentials in it.
    checked = _config.GripConfig.from_dict({**entry, "control_uri": "http://placeholder"})
    url = _config.GripConfig.from_uri(str(entry["control_uri"]))
    return replace(checked, control_uri=url.control_uri, user=url.user, password=url.password)
