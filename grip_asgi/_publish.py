"""Publishing to GRIP proxies: formats, items, and the Publisher / SyncPublisher clients.

An item (spec §4.2) carries one or more formats, one per kind of subscriber: held long-polls
(``http-response``), HTTP streams and SSE (``http-stream``) and WebSockets (``ws-message``).

Both clients share one sans-IO flow, as httpx's ``auth_flow`` does: :func:`build_publish_requests`
turns items into ready-to-send requests, one or more per proxy, and :func:`publish_flow` decides
outcome by outcome whether to wait and resend or give up. The clients only do the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import httpx

from . import _transport
from . import metrics as _metrics
from ._config import GripConfig, GripSettings
from ._errors import (
    GripConfigError,
    MultiPublishError,
    PublishConnectionError,
    PublishError,
    PublishReplyError,
    PublishTimeoutError,
)
from ._sse import encode_sse_event
from .history import HistoryStore, StoredEvent, open_history
from .zmq import _sockets as _zmq
from .zmq._protocol import command_messages, pub_message, push_message

if TYPE_CHECKING:
    from .presence import PresenceStore

__all__ = (
    "DEFAULT_TIMEOUT",
    "MAX_BODY_SIZE",
    "Format",
    "HttpResponseFormat",
    "HttpStreamFormat",
    "Item",
    "PublishRequest",
    "Publisher",
    "RetryPolicy",
    "SyncPublisher",
    "WebSocketMessageFormat",
    "authorization_header",
    "build_publish_requests",
    "publish_flow",
    "sse_event",
    "text_formats",
)

logger = logging.getLogger("grip_asgi.publish")

#: Connect within 5 s, then get an answer within 10 s (D8: a publish must never hang).
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: Pushpin answers ``400 Request body too large.`` above this many bytes (spec §4.1).
MAX_BODY_SIZE = 1_000_000
#: How much of a proxy's error reply a :class:`PublishError` keeps.
_BODY_SNIPPET = 500
#: Most items the background queue of :meth:`Publisher.publish_nowait` sends per request.
_QUEUE_BATCH = 100
_JWT_LIFETIME = 600


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _filters(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("content_filters must be a list of filter names, not a str")
    return tuple(value)


def _content(out: dict[str, Any], key: str, value: str | bytes) -> None:
    # Bytes travel base64-encoded under "<key>-bin" (spec §4.2); the proxy sends them raw.
    if isinstance(value, bytes):
        out[key + "-bin"] = _b64(value)
    else:
        out[key] = value


def _add_filters(out: dict[str, Any], filters: Sequence[str] | None) -> dict[str, Any]:
    if filters:
        out["content-filters"] = list(filters)
    return out


@dataclass(frozen=True, slots=True)
class HttpResponseFormat:
    """The reply a held long-poll (a response hold) gets when the item arrives.

    Args:
        code: HTTP status (default: the proxy's 200).
        reason: status phrase (default: the standard one for ``code``).
        headers: merged over the held response's headers (a mapping, or name/value pairs).
        body: the response body; ``str`` goes out as text, ``bytes`` as ``body-bin``.
        content_filters: content filters the subscription must match, in order.
        action: ``"send"`` (default), or ``"hint"``: send nothing and make the proxy request
            the original URL again (``Grip-Last`` then tells the app what the client has seen).
    """

    code: int | None = None
    reason: str | None = None
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None
    body: str | bytes | None = None
    content_filters: Sequence[str] | None = None
    action: Literal["send", "hint"] | None = None

    def __post_init__(self) -> None:
        if self.action not in (None, "send", "hint"):
            raise ValueError(f"http-response action must be 'send' or 'hint', got {self.action!r}")
        if self.code is not None and not (100 <= self.code <= 999):
            raise ValueError(f"http-response code must be a 3-digit status, got {self.code!r}")
        if self.headers is not None:
            pairs = tuple(
                self.headers.items() if isinstance(self.headers, Mapping) else self.headers
            )
            for pair in pairs:
                if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
                    raise TypeError(f"headers must be str name/value pairs, got {pair!r}")
            object.__setattr__(self, "headers", pairs)
        object.__setattr__(self, "content_filters", _filters(self.content_filters))
        if self.action == "hint":
            if (self.code, self.reason, self.headers, self.body) != (None, None, None, None):
                raise ValueError("an http-response 'hint' carries no code, reason, headers or body")
        elif self.body is None:
            raise ValueError("an http-response needs a body (use body='' for an empty one)")

    def name(self) -> str:
        """The format's key in the item: ``"http-response"``."""
        return "http-response"

    def to_dict(self) -> dict[str, Any]:
        """The format as Pushpin's publish JSON expects it."""
        if self.action == "hint":
            return _add_filters({"action": "hint"}, self.content_filters)
        out: dict[str, Any] = {}
        if self.code is not None:
            out["code"] = self.code
        if self.reason is not None:
            out["reason"] = self.reason
        if self.headers:
            pairs = cast("tuple[tuple[str, str], ...]", self.headers)
            names = {name for name, _ in pairs}
            # An object is the common shape; repeated names need the list-of-pairs form.
            out["headers"] = dict(pairs) if len(names) == len(pairs) else [list(p) for p in pairs]
        assert self.body is not None
        _content(out, "body", self.body)
        return _add_filters(out, self.content_filters)


@dataclass(frozen=True, slots=True)
class HttpStreamFormat:
    """Content appended to held HTTP streams (and SSE streams, see :func:`sse_event`).

    Args:
        content: what to write; ``str`` goes out as text, ``bytes`` as ``content-bin``.
        close: end the streams instead of writing (gripcontrol's spelling of ``action="close"``).
        content_filters: content filters the subscription must match, in order.
        action: ``"send"`` (default), ``"close"``, or ``"hint"``: make the proxy fetch the
            stream's next link.
    """

    content: str | bytes | None = None
    close: bool = False
    content_filters: Sequence[str] | None = None
    action: Literal["send", "hint", "close"] | None = None

    def __post_init__(self) -> None:
        if self.action not in (None, "send", "hint", "close"):
            raise ValueError(
                f"http-stream action must be 'send', 'hint' or 'close', got {self.action!r}"
            )
        if self.close and self.action not in (None, "close"):
            raise ValueError(f"close=True contradicts action={self.action!r}")
        object.__setattr__(self, "content_filters", _filters(self.content_filters))
        action = self._action()
        if action == "send" and self.content is None:
            raise ValueError("an http-stream send needs content")
        if action != "send" and self.content is not None:
            raise ValueError(f"an http-stream {action!r} carries no content")

    def _action(self) -> str:
        return self.action or ("close" if self.close else "send")

    def name(self) -> str:
        """The format's key in the item: ``"http-stream"``."""
        return "http-stream"

    def to_dict(self) -> dict[str, Any]:
        """The format as Pushpin's publish JSON expects it."""
        action = self._action()
        out: dict[str, Any] = {}
        if action == "send":
            assert self.content is not None
            _content(out, "content", self.content)
        else:
            out["action"] = action
        return _add_filters(out, self.content_filters)


_WS_TYPES = (None, "text", "binary", "ping", "pong")
# RFC 6455 §7.4: 1004-1006 and 1015 must never appear in a close frame; 1000-4999 are usable.
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


@dataclass(frozen=True, slots=True)
class WebSocketMessageFormat:
    """A message for WebSocket clients subscribed to the channel, or a close or refresh.

    Args:
        content: the message; ``str`` makes a text frame, ``bytes`` a binary frame.
        binary: send ``str`` content as a binary frame (its UTF-8 bytes), as gripcontrol does.
        action: ``"send"`` (default); ``"close"`` the connections with ``code`` and ``reason``;
            or ``"refresh"``: make the proxy send a fresh WebSocket-over-HTTP request
            for each connection (needs Pushpin 1.38 or later).
        code: close code (1000-4999), for ``action="close"``.
        reason: close reason (at most 123 UTF-8 bytes), for ``action="close"`` with a code.
        content_filters: content filters the subscription must match, in order.
        type: frame type ``"text"``, ``"binary"``, ``"ping"`` or ``"pong"`` (default: from the
            content); ping and pong may have no content.
    """

    content: str | bytes | None = None
    binary: bool = False
    action: Literal["send", "close", "refresh"] | None = None
    code: int | None = None
    reason: str | None = None
    content_filters: Sequence[str] | None = None
    type: Literal["text", "binary", "ping", "pong"] | None = None

    def __post_init__(self) -> None:
        action = self.action or "send"
        if action not in ("send", "close", "refresh"):
            raise ValueError(
                f"ws-message action must be 'send', 'close' or 'refresh', got {self.action!r}"
            )
        if self.type not in _WS_TYPES:
            raise ValueError(f"ws-message type must be one of {_WS_TYPES[1:]}, got {self.type!r}")
        if self.binary and self.type not in (None, "binary"):
            raise ValueError(f"binary=True contradicts type={self.type!r}")
        object.__setattr__(self, "content_filters", _filters(self.content_filters))
        if action == "send":
            if self.content is None and self._frame_type() in ("text", "binary"):
                raise ValueError("a ws-message needs content (only ping and pong may have none)")
        elif self.content is not None or self.binary or self.type is not None:
            raise ValueError(f"a ws-message {action!r} carries no content or frame type")
        if action != "close":
            if self.code is not None or self.reason is not None:
                raise ValueError("code and reason need action='close'")
            return
        if self.code is not None and (
            not 1000 <= self.code <= 4999 or self.code in _RESERVED_CLOSE_CODES
        ):
            raise ValueError(f"{self.code!r} is not a close code a server may send")
        if self.reason is not None:
            if self.code is None:
                raise ValueError("a close reason needs a close code")
            if len(self.reason.encode("utf-8")) > 123:
                raise ValueError("a close reason must fit in 123 UTF-8 bytes")

    def _frame_type(self) -> str:
        if self.type is not None:
            return self.type
        return "binary" if self.binary or isinstance(self.content, bytes) else "text"

    def name(self) -> str:
        """The format's key in the item: ``"ws-message"``."""
        return "ws-message"

    def to_dict(self) -> dict[str, Any]:
        """The format as Pushpin's publish JSON expects it."""
        out: dict[str, Any] = {}
        action = self.action or "send"
        if action == "send":
            frame = self._frame_type()
            content = self.content
            if frame == "binary" and isinstance(content, str):
                content = content.encode("utf-8")
            # Pushpin infers text from "content" and binary from "content-bin" (spec §4.2).
            implied = (
                None if content is None else "binary" if isinstance(content, bytes) else "text"
            )
            if content is not None:
                _content(out, "content", content)
            if frame != implied:
                out["type"] = frame
        else:
            out["action"] = action
            if self.code is not None:
                out["code"] = self.code
            if self.reason is not None:
                out["reason"] = self.reason
        return _add_filters(out, self.content_filters)


#: Any of the three publish formats.
Format = HttpResponseFormat | HttpStreamFormat | WebSocketMessageFormat
_FORMAT_TYPES = (HttpResponseFormat, HttpStreamFormat, WebSocketMessageFormat)


def sse_event(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    content_filters: Sequence[str] | None = None,
) -> HttpStreamFormat:
    """An :class:`HttpStreamFormat` that writes one Server-Sent Event to held SSE streams.

    ``id`` is the SSE event id (what the browser sends back as ``Last-Event-ID``), not the
    item id Pushpin sequences by.
    """
    return HttpStreamFormat(
        encode_sse_event(data, event=event, id=id, retry=retry), content_filters=content_filters
    )


def text_formats(text: str) -> list[Format]:
    """``text`` for every kind of subscriber of a channel, in one item.

    WebSocket clients get it as a text message, held long-polls as the body of their
    response (with a newline), and HTTP streams as an SSE ``data:`` event: an item carries one
    stream format, and that one is read by SSE clients and readable on a plain stream too.
    """
    return [WebSocketMessageFormat(text), sse_event(text), HttpResponseFormat(body=text + "\n")]


@dataclass(frozen=True, slots=True, init=False)
class Item:
    """One publish: formats for each kind of subscriber, plus sequencing and meta.

    Args:
        formats: one format or several, at most one of each kind.
        id: the item's id. Pushpin drops a repeat of an id it saw on the channel within a
            minute, which also makes a resend after a failure safe (spec §3.6).
        prev_id: the id of the channel's previous item; subscribers that missed it recover.
        meta: values for subscription filters, e.g. ``{"sender": "alice"}`` for ``skip-self``.
        no_seq: deliver at once, skipping Pushpin's ``prev-id`` sequencing.
    """

    formats: tuple[Format, ...]
    id: str | None
    prev_id: str | None
    meta: Mapping[str, str] | None
    no_seq: bool

    def __init__(
        self,
        formats: Format | Sequence[Format],
        id: str | None = None,
        prev_id: str | None = None,
        meta: Mapping[str, str] | None = None,
        no_seq: bool = False,
    ) -> None:
        normalised = (formats,) if isinstance(formats, _FORMAT_TYPES) else tuple(formats)
        if not normalised:
            raise ValueError("an item needs at least one format")
        names = set()
        for fmt in normalised:
            if not isinstance(fmt, _FORMAT_TYPES):
                raise TypeError(f"expected a publish format, got {type(fmt).__name__}")
            if fmt.name() in names:
                raise ValueError(f"an item can carry only one {fmt.name()!r} format")
            names.add(fmt.name())
        for name, value in (("id", id), ("prev_id", prev_id)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if meta is not None:
            meta = dict(meta)
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
                raise TypeError("meta keys and values must be str (Pushpin rejects others)")
        object.__setattr__(self, "formats", normalised)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "prev_id", prev_id)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "no_seq", no_seq)

    def to_dict(self, channel: str) -> dict[str, Any]:
        """The item as Pushpin's publish JSON expects it, for ``channel`` (spec §4.2)."""
        out: dict[str, Any] = {"channel": channel}
        if self.id is not None:
            out["id"] = self.id
        if self.prev_id is not None:
            out["prev-id"] = self.prev_id
        out["formats"] = {fmt.name(): fmt.to_dict() for fmt in self.formats}
        if self.meta:
            out["meta"] = dict(self.meta)
        if self.no_seq:
            out["no-seq"] = True
        return out


def _as_item(
    formats: Format | Sequence[Format] | Item,
    id: str | None,
    prev_id: str | None,
    meta: Mapping[str, str] | None,
    no_seq: bool,
) -> Item:
    if isinstance(formats, Item):
        if id is not None or prev_id is not None or meta is not None or no_seq:
            raise ValueError("pass id, prev_id, meta and no_seq to the Item, not alongside it")
        return formats
    return Item(formats, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)


# --- The sans-IO flow shared by both clients -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One HTTP request to one proxy's publish endpoint, ready to send; or, for a ZeroMQ
    proxy, every item as ZeroMQ messages (``messages``), with ``url`` the socket's address."""

    #: The proxy's control URI without credentials or query: safe for errors and logs.
    proxy: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    item_count: int
    #: Every item has an id, so a proxy that drops a repeated id makes a resend safe (§3.6).
    idempotent: bool
    #: Strings scrubbed from anything this request's errors say.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The ``(channel, item)`` pairs in the body, as given: what an error says was not taken.
    entries: tuple[tuple[str, Item], ...] = field(default=(), repr=False, compare=False)
    #: The proxy is Fastly Fanout's API, which does not say that it drops a repeated id.
    fastly: bool = False
    #: For a ZeroMQ proxy: one message (its frames) per item, in order; empty for HTTP.
    messages: tuple[tuple[bytes, ...], ...] = field(default=(), repr=False, compare=False)


def _proxy_name(config: GripConfig) -> str:
    if config.zmq_endpoint is not None:  # no credentials; keep zmq+ipc:///'s slashes
        return config.control_uri.partition("?")[0]
    parts = urlsplit(config.control_uri)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_FASTLY_API_HOST = "api.fastly.com"


def _is_fastly(config: GripConfig) -> bool:
    return urlsplit(config.control_uri).hostname == _FASTLY_API_HOST


# One encoder for every body: json.dumps with separators= builds a new one on each call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_JWT_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()


def _hs256_jwt(claims: Mapping[str, Any], key: str | bytes) -> str:
    # Signed here with hmac: PyJWT warns (InsecureKeyLengthWarning) on short keys such as
    # Pushpin's example "changeme", and a warning per publish is noise (landscape D10).
    payload = _compact_json(claims).encode()
    signing_input = _JWT_HEADER + "." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    secret = key.encode("utf-8") if isinstance(key, str) else key
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def authorization_header(config: GripConfig, *, now: float) -> str | None:
    """The ``Authorization`` value for publishing to ``config``'s proxy, or None (spec §4.5).

    ``control_iss`` with ``key`` gives a Bearer HS256 JWT ``{"iss", "exp": now + 600}``;
    ``key`` alone is sent as a Bearer token; ``user``/``password`` give Basic auth.
    """
    key = config.key
    if key is not None:
        if config.control_iss is not None:
            claims = {"iss": config.control_iss, "exp": int(now) + _JWT_LIFETIME}
            return "Bearer " + _hs256_jwt(claims, key)
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                raise GripConfigError(
                    f"the publish key for {_proxy_name(config)} is binary, so it cannot be a "
                    "Bearer token; set iss= to sign a JWT with it"
                ) from None
        return "Bearer " + key
    if config.user is not None:
        return "Basic " + _b64(f"{config.user}:{config.password or ''}".encode())
    return None


def _secrets(config: GripConfig, auth: str | None) -> tuple[str, ...]:
    found = [config.password, auth.partition(" ")[2] if auth else None]
    if isinstance(config.key, bytes):
        found.append(config.key.decode("utf-8", "replace"))
    else:
        found.append(config.key)
    return tuple(secret for secret in found if secret)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _check_entry(entry: Any) -> tuple[str, Item]:
    if not isinstance(entry, tuple) or len(entry) != 2:
        raise TypeError(f"expected (channel, Item) pairs, got {entry!r}")
    channel, item = entry
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"a channel must be a non-empty str, got {channel!r}")
    if not isinstance(item, Item):
        raise TypeError(f"expected an Item, got {type(item).__name__}")
    return channel, item


_NO_PROXY = "no GRIP proxy is configured to publish to: pass grip= or set GRIP_URL"
_EMPTY_BODY_SIZE = len(b'{"items":[]}')


def _chunks(encoded: Iterable[tuple[bytes, bool]], limit: int) -> Iterator[tuple[bytes, int, bool]]:
    """Join encoded items into ``{"items": [...]}`` bodies of at most ``limit`` bytes.

    An item that is too big on its own still goes out alone: the proxy decides, and its
    answer ends up in the PublishError.
    """
    batch: list[bytes] = []
    size = _EMPTY_BODY_SIZE
    idempotent = True
    for data, has_id in encoded:
        if batch and size + 1 + len(data) > limit:
            yield b'{"items":[' + b",".join(batch) + b"]}", len(batch), idempotent
            batch, size, idempotent = [], _EMPTY_BODY_SIZE, True
        size += len(data) + (1 if batch else 0)
        batch.append(data)
        idempotent = idempotent and has_id
    if batch:
        yield b'{"items":[' + b",".join(batch) + b"]}", len(batch), idempotent


def build_publish_requests(
    settings: GripSettings,
    items: Iterable[tuple[str, Item]],
    *,
    now: float,
    max_body_size: int = MAX_BODY_SIZE,
) -> list[list[PublishRequest]]:
    """The requests that publish ``items``: one list per proxy, in ``settings.proxies`` order.

    The channel prefix is applied here. Each list holds as few requests as the body limit
    allows, in item order. ``now`` (Unix time) sets the expiry of JWT auth. A ZeroMQ proxy
    gets one request that holds every item, one message each (no body limit applies).
    """
    if not settings.proxies:
        raise GripConfigError(_NO_PROXY)
    entries = []
    encoded = []
    for entry in items:
        channel, item = _check_entry(entry)
        data = _compact_json(item.to_dict(settings.prefix + channel))
        entries.append(entry)
        encoded.append((data.encode("utf-8"), item.id is not None))
    bodies = []
    start = 0
    if any(config.zmq_endpoint is None for config in settings.proxies):
        for body, count, idempotent in _chunks(encoded, max_body_size):
            bodies.append((body, count, idempotent, tuple(entries[start : start + count])))
            start += count
    plan = []
    for config in settings.proxies:
        if config.zmq_endpoint is not None:
            plan.append(
                [_zmq_request(config, settings.prefix, entries, encoded)] if entries else []
            )
            continue
        headers = {"Content-Type": "application/json"}
        auth = authorization_header(config, now=now)
        if auth is not None:
            headers["Authorization"] = auth
        proxy, url, secrets = _proxy_name(config), config.publish_url, _secrets(config, auth)
        fastly = _is_fastly(config)
        plan.append(
            [
                PublishRequest(proxy, url, headers, body, count, idempotent, secrets, sent, fastly)
                for body, count, idempotent, sent in bodies
            ]
        )
    return plan


def _zmq_request(
    config: GripConfig,
    prefix: str,
    entries: Sequence[tuple[str, Item]],
    encoded: Sequence[tuple[bytes, bool]],
) -> PublishRequest:
    """Every item as a message for ``config``'s ZeroMQ socket (spec §4.4): ``J`` + its JSON,
    after its channel (the topic) on a PUB socket; for the command socket, the items as
    tnetstrings, as many per ``publish`` request as fit."""
    endpoint = config.zmq_endpoint
    assert endpoint is not None
    messages: tuple[tuple[bytes, ...], ...]
    if endpoint.mode == "push":
        messages = tuple((push_message(data),) for data, _ in encoded)
    elif endpoint.mode == "command":
        messages = command_messages([item.to_dict(prefix + channel) for channel, item in entries])
    else:
        messages = tuple(
            pub_message(prefix + channel, data)
            for (channel, _), (data, _) in zip(entries, encoded, strict=True)
        )
    idempotent = all(has_id for _, has_id in encoded)
    proxy = _proxy_name(config)
    return PublishRequest(
        proxy,
        endpoint.address,
        {},
        b"",
        len(entries),
        idempotent,
        (),
        tuple(entries),
        False,
        messages,
    )


#: What one attempt ends with: the proxy's answer, or the reason there was none.
Outcome = httpx.Response | httpx.RequestError
# Failures before any byte of the request left: resending cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed publish attempts are retried, and how long to wait first.

    An attempt that never reached the proxy (connecting failed or timed out) is resent. One
    that may have reached it (a 5xx, a timeout or a broken connection once the request was
    on its way, a reply that broke off) is resent only when the proxy will drop the copy:

    - **Pushpin**: when every item in the request has an ``id``. Pushpin drops an item whose
      id it saw on the channel within ``id_cache_ttl`` seconds (60 by default).
    - **Fastly Fanout** (a control URI on ``api.fastly.com``): not at all, unless
      ``resend_to_fastly`` is set, and then when every item has an ``id``. Fastly's
      publishing API documents ``id`` for sequencing only, not that a repeat is dropped.

    A 4xx is final. Waits use full jitter: a uniform random share of
    ``backoff * 2**(retry - 1)``, capped at ``max_backoff``.
    """

    retries: int = 2
    backoff: float = 0.1
    max_backoff: float = 5.0
    #: Returns a float in [0, 1); injectable for tests.
    uniform: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    #: Resend to Fastly Fanout what may have reached it, when every item has an id.
    resend_to_fastly: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return self.uniform() * min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))

    def should_retry(self, request: PublishRequest, outcome: Outcome) -> bool:
        """Whether a failed attempt may be resent (the retry budget aside)."""
        if not _may_have_arrived(outcome):
            return isinstance(outcome, _NOT_SENT)  # a 4xx is final
        return request.idempotent and (self.resend_to_fastly or not request.fastly)


def _may_have_arrived(outcome: Outcome) -> bool:
    """The proxy may have taken the items, though the attempt failed (or the reply broke)."""
    if isinstance(outcome, httpx.Response):
        return outcome.status_code >= 500
    return not isinstance(outcome, _NOT_SENT)


def _failure(
    request: PublishRequest,
    outcome: Outcome,
    attempts: int,
    delivered: Sequence[tuple[str, Item]],
    failed: Sequence[tuple[str, Item]],
) -> PublishError:
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    proxy = request.proxy
    items: dict[str, Any] = {
        "proxy": proxy,
        "delivered_items": delivered,
        "failed_items": failed,
        "unsure_items": request.entries if _may_have_arrived(outcome) else (),
    }
    if isinstance(outcome, httpx.Response):
        status = outcome.status_code
        body = _redact(outcome.text[:_BODY_SNIPPET], request.secrets)
        summary = " ".join(body.split()) or "(empty body)"
        broken = outcome.extensions.get(_transport.BROKEN)
        if broken is not None:
            message = f"{proxy}'s reply broke off after status {status}: {broken}{tries}: {summary}"
            return PublishReplyError(message, status=status, body=body, **items)
        return PublishError(
            f"{proxy} answered {status}{tries}: {summary}", status=status, body=body, **items
        )
    if isinstance(outcome, httpx.TimeoutException):
        message = f"{proxy} did not answer in time ({type(outcome).__name__}){tries}"
        return PublishTimeoutError(message, **items)
    detail = " ".join(_redact(str(outcome), request.secrets).split()) or type(outcome).__name__
    if isinstance(outcome, (httpx.ReadError, httpx.RemoteProtocolError)):  # the request went out
        return PublishReplyError(f"{proxy} sent no usable reply: {detail}{tries}", **items)
    if isinstance(outcome, httpx.WriteError):
        return PublishConnectionError(f"lost the connection to {proxy}: {detail}{tries}", **items)
    return PublishConnectionError(f"could not reach {proxy}: {detail}{tries}", **items)


def publish_flow(
    requests: Iterable[PublishRequest], policy: RetryPolicy
) -> Generator[tuple[PublishRequest, float], Outcome, None]:
    """Send ``requests`` in order, retrying per ``policy``; the caller does the I/O.

    Yields ``(request, delay)``: wait ``delay`` seconds, send ``request``, and send the outcome
    back in. Returns when every request succeeded; raises :class:`PublishError` on the first
    one that fails for good (later ones are not sent, which keeps the items in order). The
    error says which items the earlier requests delivered, and which were not taken.
    """
    requests = list(requests)
    for index, request in enumerate(requests):
        retry = 0
        while True:
            outcome = yield request, (policy.delay(retry) if retry else 0.0)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "publish to %s: %d item(s), attempt %d: %s",
                    request.proxy,
                    request.item_count,
                    retry + 1,
                    outcome.status_code
                    if isinstance(outcome, httpx.Response)
                    else _redact(repr(outcome), request.secrets),
                )
            succeeded = isinstance(outcome, httpx.Response) and outcome.is_success
            if _metrics._recorder is not None:
                _metrics._recorder.publish_attempt(
                    request.proxy, request.item_count, retry, succeeded
                )
            if succeeded:
                break
            if retry >= policy.retries or not policy.should_retry(request, outcome):
                cause = outcome if isinstance(outcome, Exception) else None
                delivered = [entry for sent in requests[:index] for entry in sent.entries]
                failed = [entry for unsent in requests[index:] for entry in unsent.entries]
                error = _failure(request, outcome, retry + 1, delivered, failed)
                if _metrics._recorder is not None:
                    _metrics._recorder.publish_failed(request.proxy, type(error).__name__)
                raise error from cause
            retry += 1


# --- The clients -----------------------------------------------------------------------------

_R = TypeVar("_R")
_C = TypeVar("_C", httpx.Client, httpx.AsyncClient)
_Self = TypeVar("_Self", bound="_BasePublisher[Any, Any]")
_Meta = Mapping[str, str]


def _settings(
    grip: str | GripConfig | Iterable[str | GripConfig] | GripSettings | None, prefix: str | None
) -> GripSettings:
    if grip is None:
        grip = GripSettings.from_env()
    if isinstance(grip, GripSettings):
        return grip if prefix is None else replace(grip, prefix=prefix)
    return GripSettings.build(grip, prefix=prefix or "")


class _BasePublisher(Generic[_C, _R]):
    """The API both clients share; ``_R`` is what a publish returns (a coroutine, or None)."""

    _client_type: type[_C]

    def __init__(
        self,
        grip: str | GripConfig | Iterable[str | GripConfig] | GripSettings | None = None,
        *,
        prefix: str | None = None,
        client: _C | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.1,
        max_body_size: int = MAX_BODY_SIZE,
        history: HistoryStore | None = None,
        presence: PresenceStore | None = None,
        resend_to_fastly: bool = False,
    ) -> None:
        if client is not None and not isinstance(client, self._client_type):
            raise TypeError(
                f"{type(self).__name__} needs an httpx.{self._client_type.__qualname__}, "
                f"got {type(client).__name__}"
            )
        #: The proxies and channel prefix this publisher publishes with.
        self.settings = _settings(grip, prefix)
        self._client: _C | None = client
        self._owns_client = client is None
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._retry = RetryPolicy(retries, backoff, resend_to_fastly=resend_to_fastly)
        self._max_body_size = max_body_size
        self._closed = False
        self._lock = threading.Lock()
        # Plain-http proxies get a connection of their own per publish (see _transport),
        # unless a client was given or the environment routes http through a proxy.
        self._direct_http = client is None and not _env_http_proxy()
        self._history = history
        self._owns_history = history is None
        self._presence = presence
        self._owns_presence = presence is None
        # One ZeroMQ socket per zmq+ proxy, opened at its first publish.
        self._zmq_senders: dict[str, _zmq.Sender] = {}

    @property
    def history(self) -> HistoryStore:
        """The channel history that :meth:`publish_reliable` appends to: the one given, else
        ``settings.history_url`` (``GRIP_HISTORY_URL``), opened on first use."""
        with self._lock:
            if self._history is None:
                self._history = open_history(self.settings.history_url)
            return self._history

    @property
    def presence(self) -> PresenceStore:
        """Who is connected to each reliable WebSocket channel (``grip_asgi.presence``): kept
        in the same place as the :attr:`history` (``GRIP_HISTORY_URL``), opened on first use."""
        from .presence._base import open_presence_beside_history

        with self._lock:
            if self._presence is None:
                self._presence = open_presence_beside_history(self.settings.history_url)
            return self._presence

    def _reliable(self, event: StoredEvent) -> tuple[str, Item]:
        # _recovery builds on this module's formats: imported here, not at the top.
        from ._recovery import reliable_channel, reliable_item

        return reliable_channel(event.channel), reliable_item(event)

    def _new_client(self) -> _C:
        raise NotImplementedError

    def _posts_directly(self, request: PublishRequest) -> bool:
        """This request goes on a connection of its own (_transport), not through httpx."""
        return self._direct_http and request.url.startswith("http://")

    def _get_client(self) -> _C:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _zmq_sender(self, request: PublishRequest) -> _zmq.Sender:
        config = next(c for c in self.settings.proxies if _proxy_name(c) == request.proxy)
        assert config.zmq_endpoint is not None
        with self._lock:
            sender = self._zmq_senders.get(request.proxy)
            if sender is None:
                # A ZeroMQ send waits for room in the socket's queue, never for ever.
                wait = self._timeout.write or _zmq.DEFAULT_SEND_TIMEOUT
                sender = self._zmq_senders[request.proxy] = _zmq.make_sender(
                    config.zmq_endpoint, wait
                )
            return sender

    def _close_zmq(self) -> None:
        with self._lock:
            senders, self._zmq_senders = list(self._zmq_senders.values()), {}
        for sender in senders:
            sender.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` / :meth:`aclose` ran; a closed publisher cannot publish."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")

    def _plan(
        self, items: Iterable[tuple[str, Item]], proxies: Sequence[GripConfig] | None = None
    ) -> list[list[PublishRequest]]:
        self._check_open()
        settings = (
            self.settings if proxies is None else replace(self.settings, proxies=tuple(proxies))
        )
        return build_publish_requests(
            settings, items, now=time.time(), max_body_size=self._max_body_size
        )

    def _retry_plan(
        self, error: PublishError, resend_unsure: bool
    ) -> tuple[list[GripConfig], list[list[PublishRequest]]]:
        """Each failed proxy of ``error``, and the requests that resend what it did not take."""
        failures = error.errors if isinstance(error, MultiPublishError) else [error]
        proxies: list[GripConfig] = []
        plan: list[list[PublishRequest]] = []
        for failure in failures:
            if not failure.proxy:
                raise ValueError(
                    "the error names no proxy (its items were never sent): publish its "
                    "failed_items again with publish_many()"
                )
            matching = [c for c in self.settings.proxies if _proxy_name(c) == failure.proxy]
            if len(matching) != 1:
                raise ValueError(
                    f"{failure.proxy} is not one of this publisher's proxies: "
                    "retry() takes an error that this publisher raised"
                )
            items = failure.failed_items
            if not resend_unsure:
                items = items[len(failure.unsure_items) :]  # the unsure items come first
            if items:
                proxies.append(matching[0])
                plan.extend(self._plan(items, matching))
        return proxies, plan

    def _raise_failures(
        self, results: Sequence[PublishError | None], proxies: Sequence[GripConfig]
    ) -> None:
        errors = [error for error in results if error is not None]
        if not errors:
            return
        if len(results) == 1:
            raise errors[0]
        succeeded = [
            _proxy_name(config)
            for config, error in zip(proxies, results, strict=True)
            if error is None
        ]
        raise MultiPublishError(errors, succeeded)

    def retry(self, error: PublishError, *, resend_unsure: bool = True) -> _R:
        """Publish again what ``error`` says was not taken, each item only to the proxies
        that did not take it.

        ``error`` is a :class:`PublishError` this publisher raised (or gave ``on_error``).
        ``resend_unsure=False`` leaves out the ``unsure_items``, which may have reached
        their proxy already: resend them only where the proxy drops a repeated item ``id``
        (Pushpin; see :class:`RetryPolicy`). Raises a new :class:`PublishError` for what
        fails again.
        """
        raise NotImplementedError

    def publish_many(self, items: Iterable[tuple[str, Item]]) -> _R:
        """Publish ``(channel, item)`` pairs to every proxy, several items per request."""
        raise NotImplementedError

    def publish(
        self,
        channel: str,
        formats: Format | Sequence[Format] | Item,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Publish one item to ``channel``: an :class:`Item`, or formats plus item fields.

        ``id``, ``prev_id``, ``meta`` and ``no_seq`` are described on :class:`Item`.
        """
        return self.publish_many([(channel, _as_item(formats, id, prev_id, meta, no_seq))])

    def publish_websocket(
        self,
        channel: str,
        message: str | bytes,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Send ``message`` to the channel's WebSocket clients (text for str, binary for bytes)."""
        fmt = WebSocketMessageFormat(message)
        return self.publish(channel, fmt, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)

    def publish_stream(
        self,
        channel: str,
        content: str | bytes,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Append ``content`` to the channel's held HTTP streams, as is."""
        fmt = HttpStreamFormat(content)
        return self.publish(channel, fmt, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)

    def publish_sse(
        self,
        channel: str,
        data: str,
        *,
        event: str | None = None,
        sse_id: str | None = None,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Write one Server-Sent Event (``event``, ``sse_id``, ``data``) to held SSE streams."""
        fmt = sse_event(data, event=event, id=sse_id)
        return self.publish(channel, fmt, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)

    def publish_response(
        self,
        channel: str,
        body: str | bytes,
        *,
        code: int = 200,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Answer the channel's held long-polls with ``body`` (and ``code``, ``headers``)."""
        fmt = HttpResponseFormat(code=code, headers=headers, body=body)
        return self.publish(channel, fmt, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)

    def publish_text(
        self,
        channel: str,
        text: str,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """Send ``text`` to every WebSocket, stream, SSE and long-poll subscriber (see
        :func:`text_formats`)."""
        fmt = text_formats(text)
        return self.publish(channel, fmt, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)

    def publish_http_response(
        self,
        channel: str,
        http_response: HttpResponseFormat | str | bytes,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """gripcontrol's name: publish an :class:`HttpResponseFormat`, or a body for one."""
        if not isinstance(http_response, HttpResponseFormat):
            http_response = HttpResponseFormat(body=http_response)
        return self.publish(
            channel, http_response, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq
        )

    def publish_http_stream(
        self,
        channel: str,
        http_stream: HttpStreamFormat | str | bytes,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> _R:
        """gripcontrol's name: publish an :class:`HttpStreamFormat`, or content for one."""
        if not isinstance(http_stream, HttpStreamFormat):
            http_stream = HttpStreamFormat(http_stream)
        return self.publish(channel, http_stream, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)


def _env_http_proxy() -> bool:
    """The environment sends http requests through a forward proxy (httpx honours it)."""
    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
ErrorCallback = Callable[[Exception, Sequence[tuple[str, Item]]], object]


class _Backlog:
    """What :meth:`Publisher.publish_nowait` queued on one event loop, and its worker."""

    __slots__ = ("loop", "queue", "sending", "worker")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Item]] = asyncio.Queue(size)
        #: The batch being published, taken off the queue.
        self.sending: list[tuple[str, Item]] | None = None
        self.worker: asyncio.Task[None] | None = None

    def busy(self) -> bool:
        return self.sending is not None or not self.queue.empty()


_THROWAWAY_LOOP = (
    "publish_nowait() would lose these items: this event loop was started by asgiref's "
    "async_to_sync (as for an async Django view under WSGI) and closes when the call "
    "returns, before the queue is sent; await publish() instead (await apublish() in Django)"
)


# Why a worker stopped: asyncio.run cancels it as it ends, and a task dropped with its closed
# loop is closed (GeneratorExit) when it is garbage-collected.
_STOPPED = {
    asyncio.CancelledError: "the publish queue was cancelled",
    GeneratorExit: "the publish queue's event loop closed",
}


_REFRESH_NOTE = (
    "a WebSocket refresh needs Pushpin 1.38 or later (or Fastly Fanout) over HTTP; Pushpin "
    "1.36 takes it on its command socket: zmq+tcp://127.0.0.1:5563?mode=command"
)


def _refresh(channel: str) -> tuple[str, Item]:
    # _recovery builds on this module's formats: imported here, not at the top.
    from ._recovery import RecoveryRequestError, reliable_channel

    try:
        name = reliable_channel(channel)
    except RecoveryRequestError as exc:  # the caller's argument, not a client's request
        raise ValueError(str(exc)) from None
    return name, Item([WebSocketMessageFormat(action="refresh")])


def _loop_ends_with_the_call(loop: asyncio.AbstractEventLoop) -> bool:
    """``loop`` is one that asgiref's async_to_sync made for a single call.

    With no event loop to join, ``async_to_sync`` runs the call on a new loop in a new thread
    and closes it when the call returns; it lists such loops while they run.
    """
    sync = sys.modules.get("asgiref.sync")  # asgiref is not a dependency: only look
    loops = getattr(getattr(sync, "AsyncToSync", None), "loop_thread_executors", None)
    return isinstance(loops, Mapping) and loop in loops


class Publisher(_BasePublisher[httpx.AsyncClient, Coroutine[Any, Any, None]]):
    """Publishes items to one or several GRIP proxies, on asyncio.

    .. code-block:: python

        async with Publisher("http://127.0.0.1:5561") as publisher:
            await publisher.publish_websocket("room", "hello")
            await publisher.publish_sse("news", "hi", event="greeting")

    Every publish method is awaited and raises :class:`PublishError` when a proxy did not take
    the items; the error says which items each proxy took, and :meth:`retry` resends the
    rest. Nothing is dropped silently; :meth:`publish_nowait` queues instead of waiting.
    Constructing a publisher does no I/O.

    How it connects: Pushpin closes the connection after every publish, so a plain ``http://``
    proxy gets a short asyncio connection of its own per request (a third of the CPU of
    httpx's pooled client, which matters at thousands of publishes a second). ``https://``
    proxies (Fastly Fanout), a ``client`` you pass, and an environment that routes http
    through a forward proxy (``HTTP_PROXY``) use ``httpx.AsyncClient`` and its pool. Either
    way, timeouts, retries and errors are the same.

    Args:
        grip: a GRIP URL, a :class:`GripConfig`, a list of either (several proxies), or a
            :class:`GripSettings`. None reads ``GRIP_URL``/``GRIP_PROXIES`` and ``GRIP_PREFIX``
            from the environment.
        prefix: prepended to every channel (default: ``grip``'s prefix, or "").
        client: an ``httpx.AsyncClient`` to send every request with (for example on an
            ``httpx.MockTransport``); the publisher never closes a client it was given.
        timeout: seconds, or an ``httpx.Timeout``; applies to every publish request
            (default: connect 5 s, everything else 10 s).
        retries: how often a failed request is resent; see :class:`RetryPolicy`.
        backoff: base of the jittered exponential wait between attempts, in seconds.
        max_body_size: largest request body; more items are split across requests.
        queue_size: capacity of the :meth:`publish_nowait` queue.
        on_error: called with the error and the items whenever a queued publish fails.
        max_in_flight: most publish requests under way at once; more wait their turn. Without
            a bound, a burst of publishes would open as many connections at once, or on httpx
            wait in its pool, where a long queue is slow to serve and times out
            (``PoolTimeout``) instead of publishing.
        resend_to_fastly: also resend to Fastly Fanout a request that may have reached it,
            when every item has an ``id`` (see :class:`RetryPolicy`).
        history: the channel history for :meth:`publish_reliable` (the publisher never closes
            one it was given); default: opened from ``GRIP_HISTORY_URL`` on first use.
        presence: the member lists of reliable WebSockets (never closed if given); default:
            opened on first use, in the same place as the history.
    """

    _client_type = httpx.AsyncClient

    def __init__(
        self,
        grip: str | GripConfig | Iterable[str | GripConfig] | GripSettings | None = None,
        *,
        prefix: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.1,
        max_body_size: int = MAX_BODY_SIZE,
        queue_size: int = 1000,
        on_error: ErrorCallback | None = None,
        max_in_flight: int = 32,
        history: HistoryStore | None = None,
        presence: PresenceStore | None = None,
        resend_to_fastly: bool = False,
    ) -> None:
        super().__init__(
            grip,
            prefix=prefix,
            client=client,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_body_size=max_body_size,
            history=history,
            presence=presence,
            resend_to_fastly=resend_to_fastly,
        )
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._queue_size = queue_size
        self._on_error = on_error
        self._backlog: _Backlog | None = None
        #: How many items queued with :meth:`publish_nowait` failed to publish.
        self.failed_count = 0

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, limits=_LIMITS)

    async def publish_many(self, items: Iterable[tuple[str, Item]]) -> None:
        """Publish ``(channel, item)`` pairs to every proxy, several items per request.

        Each proxy gets the items in order, in as few requests as ``max_body_size`` allows;
        different proxies are published to concurrently. When a proxy fails, this raises once
        all have finished: that proxy's :class:`PublishError` if there is only one, else a
        :class:`MultiPublishError` that names the failed and the succeeded proxies. Either
        says which items got through (``delivered_items``, ``failed_items``,
        ``unsure_items``); ``await publisher.retry(error)`` resends exactly what failed.
        """
        plan = self._plan(items)
        if plan[0]:
            await self._send_plan(self.settings.proxies, plan)

    async def retry(self, error: PublishError, *, resend_unsure: bool = True) -> None:
        proxies, plan = self._retry_plan(error, resend_unsure)
        if plan:
            await self._send_plan(proxies, plan)

    retry.__doc__ = _BasePublisher.retry.__doc__

    async def _send_plan(
        self, proxies: Sequence[GripConfig], plan: list[list[PublishRequest]]
    ) -> None:
        if len(plan) == 1:
            results = [await self._send(plan[0])]
        else:
            results = await asyncio.gather(*(self._send(requests) for requests in plan))
        self._raise_failures(results, proxies)

    async def _send(self, requests: list[PublishRequest]) -> PublishError | None:
        if requests[0].messages:  # a ZeroMQ proxy: queued on its socket, nothing to retry
            error = await _zmq.send_request(self._zmq_sender(requests[0]), requests[0])
            if _metrics._recorder is not None:
                _metrics._recorder.zmq_publish(requests[0].proxy, requests[0].item_count, error)
            return error
        flow = publish_flow(requests, self._retry)
        try:
            request, delay = next(flow)
            while True:
                if delay:
                    await asyncio.sleep(delay)
                started = time.perf_counter()
                outcome = await self._attempt(request)
                if _metrics._recorder is not None:
                    _metrics._recorder.publish_duration(
                        request.proxy, time.perf_counter() - started
                    )
                request, delay = flow.send(outcome)
        except StopIteration:
            return None
        except PublishError as exc:
            return exc

    async def _attempt(self, request: PublishRequest) -> Outcome:
        try:
            async with self._in_flight:  # the timeouts start once the request does
                if self._posts_directly(request):
                    return await _transport.post(
                        request.url, request.headers, request.body, self._timeout
                    )
                return await self._get_client().post(
                    request.url,
                    content=request.body,
                    headers=request.headers,
                    timeout=self._timeout,
                )
        except httpx.RequestError as exc:
            return exc

    def publish_nowait(
        self,
        channel: str,
        formats: Format | Sequence[Format] | Item,
        *,
        id: str | None = None,
        prev_id: str | None = None,
        meta: _Meta | None = None,
        no_seq: bool = False,
    ) -> None:
        """Queue an item and return at once; a background task publishes it.

        Queued items go out in order, up to 100 per request. A failure is logged at ERROR on
        the ``grip_asgi.publish`` logger, counted in :attr:`failed_count` and passed to
        ``on_error``; so is every item still queued when the task is cancelled, e.g. by
        ``asyncio.run`` ending before :meth:`aclose` (the items being sent at that moment
        come as ``unsure_items``: they may have reached the proxy). Nothing queued is dropped
        silently. Raises ``asyncio.QueueFull`` when ``queue_size`` items are waiting;
        :meth:`flush` waits until the queue is empty.

        Must be called from the event loop, and one that outlives the items: ``await
        aclose()`` (or :meth:`flush`) before it ends. Raises RuntimeError on a loop that
        asgiref's ``async_to_sync`` started for one call (an async Django view under WSGI),
        which closes as soon as the call returns: await :meth:`publish` there.
        """
        entry = _check_entry((channel, _as_item(formats, id, prev_id, meta, no_seq)))
        loop = asyncio.get_running_loop()
        self._check_open()
        if not self.settings.proxies:
            raise GripConfigError(_NO_PROXY)
        backlog = self._backlog_on(loop)
        if backlog is None:
            if _loop_ends_with_the_call(loop):
                raise RuntimeError(_THROWAWAY_LOOP)
            backlog = self._backlog = _Backlog(loop, self._queue_size)
        try:
            backlog.queue.put_nowait(entry)
        except asyncio.QueueFull:
            raise asyncio.QueueFull(
                f"the publish queue is full ({self._queue_size} items); await flush() or "
                "publish with await"
            ) from None
        if backlog.worker is None or backlog.worker.done():
            backlog.worker = loop.create_task(self._drain(backlog))
            backlog.worker.add_done_callback(functools.partial(self._worker_done, backlog))

    def _backlog_on(self, loop: asyncio.AbstractEventLoop) -> _Backlog | None:
        """The backlog queued on ``loop``, after reporting one stranded on a closed loop."""
        backlog = self._backlog
        if backlog is None or backlog.loop is loop:
            return backlog
        if backlog.busy() and not backlog.loop.is_closed():
            raise RuntimeError(
                "this Publisher has items queued on another event loop, which is not closed; "
                "use one Publisher per event loop"
            )
        self._abandon(backlog, "the event loop they were queued on closed before aclose()")
        self._backlog = None
        return None

    async def _drain(self, backlog: _Backlog) -> None:
        # Runs while the queue has items and then ends; publish_nowait starts a new one.
        queue = backlog.queue
        try:
            while not queue.empty():
                batch = [queue.get_nowait() for _ in range(min(queue.qsize(), _QUEUE_BATCH))]
                backlog.sending = batch
                try:
                    await self.publish_many(batch)
                except Exception as exc:
                    self._report(exc, batch)
                backlog.sending = None
                for _ in batch:
                    queue.task_done()
        except BaseException as exc:  # cancelled, or dropped with a closed loop: report
            self._abandon(backlog, _STOPPED.get(type(exc), f"the publish queue stopped ({exc!r})"))
            raise

    def _worker_done(self, backlog: _Backlog, worker: asyncio.Task[None]) -> None:
        # A worker cancelled before its first step never ran _drain's handler.
        if worker.cancelled() and backlog.worker is worker:
            self._abandon(backlog, "the publish queue was cancelled before it ran")

    def _abandon(self, backlog: _Backlog, cause: str) -> None:
        """Report what ``backlog`` still holds: nothing queued is dropped silently."""
        batch, backlog.sending = backlog.sending or [], None
        rest = []
        while not backlog.queue.empty():
            rest.append(backlog.queue.get_nowait())
        hint = "; await aclose() (or flush()) before the event loop ends"
        if batch:
            message = f"{cause} while publishing {len(batch)} queued item(s), which may have "
            error = PublishError(
                message + "reached the proxy" + hint, failed_items=batch, unsure_items=batch
            )
            self._report(error, batch)
        if rest:
            message = f"{cause}: {len(rest)} queued item(s) were not sent{hint}"
            self._report(PublishError(message, failed_items=rest), rest)
        if not backlog.loop.is_closed():  # a closed loop cannot wake flush() callers
            for _ in range(len(batch) + len(rest)):
                backlog.queue.task_done()

    def _report(self, exc: Exception, batch: list[tuple[str, Item]]) -> None:
        self.failed_count += len(batch)
        logger.error(
            "queued publish of %d item(s) failed: %s",
            len(batch),
            exc,
            exc_info=not isinstance(exc, PublishError),
        )
        if self._on_error is not None:
            try:
                self._on_error(exc, batch)
            except Exception:
                logger.exception("the publish on_error callback raised")

    async def flush(self) -> None:
        """Wait until every item queued by :meth:`publish_nowait` was published or failed."""
        backlog = self._backlog_on(asyncio.get_running_loop())
        if backlog is not None:
            await backlog.queue.join()

    async def publish_reliable(
        self, channel: str, data: str, *, event: str | None = None, refresh: bool = False
    ) -> StoredEvent:
        """Publish ``data`` to the subscribers of reliable channel ``channel``, who get it
        exactly once and in order, whatever they miss on the way.

        It is appended to the :attr:`history` first, then published with its id: a proxy
        that is down or refuses still raises :class:`PublishError` (with a note of the
        stored id), but the message is not lost: subscribers recover it from the history.
        Several processes may publish to one channel at once: every subscriber gets the
        messages in the order the history numbered them. Returns the stored event.

        ``refresh=True`` also :meth:`refresh` es the channel's WebSockets, so one whose copy
        the proxy dropped repairs it at once rather than at its next idle call: for rare
        messages that must not wait, at one request to the app per connection.
        """
        stored = await self.history.append(channel, data, event=event)
        try:
            await self.publish(*self._reliable(stored))
            if refresh:
                await self.refresh(channel)
        except PublishError as exc:
            exc.add_note(f"stored in {channel!r} as id {stored.id}: subscribers recover it")
            raise
        return stored

    async def refresh(self, channel: str) -> None:
        """Have the proxy call the app now for every WebSocket of reliable ``channel``.

        Each call is answered with the history's latest ids, so a client that lost a
        message catches up at once (otherwise: at its next idle call, ``keep_alive``
        seconds). Use it after publishes that failed on a proxy, or after filling the
        history by other means. Needs Pushpin 1.38 or later, or Fastly Fanout; with
        Pushpin 1.36 and 1.37, publish through its command socket
        (``zmq+tcp://127.0.0.1:5563?mode=command``), which takes refreshes.

        Raises:
            PublishError: a proxy refused it (a note says which versions take it).
        """
        try:
            await self.publish(*_refresh(channel))
        except PublishError as exc:
            exc.add_note(_REFRESH_NOTE)
            raise

    async def aclose(self) -> None:
        """Publish what is queued, then close the connection pool (unless it was given) and
        the history it opened."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            self._close_zmq()
            if self._owns_client and self._client is not None:
                await self._client.aclose()
            if self._owns_history and self._history is not None:
                await self._history.aclose()
            if self._owns_presence and self._presence is not None:
                await self._presence.aclose()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class SyncPublisher(_BasePublisher[httpx.Client, None]):
    """The blocking twin of :class:`Publisher`, for sync code and threads.

    .. code-block:: python

        with SyncPublisher("http://127.0.0.1:5561") as publisher:
            publisher.publish_websocket("room", "hello")

    The API is :class:`Publisher`'s without ``await`` and without the queue: it takes the same
    arguments except ``queue_size`` and ``on_error``, and ``client`` is an ``httpx.Client``.
    Several proxies are published to one after the other. It connects as :class:`Publisher`
    does: a plain ``http://`` proxy gets a short socket of its own per request, and the rest
    goes through ``httpx.Client``.
    """

    _client_type = httpx.Client

    def _new_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout, limits=_LIMITS)

    def publish_many(self, items: Iterable[tuple[str, Item]]) -> None:
        """Like :meth:`Publisher.publish_many`, publishing to one proxy after the other."""
        plan = self._plan(items)
        if plan[0]:
            self._raise_failures([self._send(r) for r in plan], self.settings.proxies)

    def retry(self, error: PublishError, *, resend_unsure: bool = True) -> None:
        proxies, plan = self._retry_plan(error, resend_unsure)
        if plan:
            self._raise_failures([self._send(r) for r in plan], proxies)

    retry.__doc__ = _BasePublisher.retry.__doc__

    def _send(self, requests: list[PublishRequest]) -> PublishError | None:
        if requests[0].messages:  # a ZeroMQ proxy: queued on its socket, nothing to retry
            error = _zmq.send_request_blocking(self._zmq_sender(requests[0]), requests[0])
            if _metrics._recorder is not None:
                _metrics._recorder.zmq_publish(requests[0].proxy, requests[0].item_count, error)
            return error
        flow = publish_flow(requests, self._retry)
        try:
            request, delay = next(flow)
            while True:
                if delay:
                    time.sleep(delay)
                started = time.perf_counter()
                outcome = self._attempt(request)
                if _metrics._recorder is not None:
                    _metrics._recorder.publish_duration(
                        request.proxy, time.perf_counter() - started
                    )
                request, delay = flow.send(outcome)
        except StopIteration:
            return None
        except PublishError as exc:
            return exc

    def _attempt(self, request: PublishRequest) -> Outcome:
        try:
            if self._posts_directly(request):
                return _transport.post_blocking(
                    request.url, request.headers, request.body, self._timeout
                )
            return self._get_client().post(
                request.url, content=request.body, headers=request.headers, timeout=self._timeout
            )
        except httpx.RequestError as exc:
            return exc

    def publish_reliable(
        self, channel: str, data: str, *, event: str | None = None, refresh: bool = False
    ) -> StoredEvent:
        """The blocking :meth:`Publisher.publish_reliable`: append to the history, then
        publish; a failed publish raises, but subscribers recover the stored message."""
        stored = self.history.sync.append(channel, data, event=event)
        try:
            self.publish(*self._reliable(stored))
            if refresh:
                self.refresh(channel)
        except PublishError as exc:
            exc.add_note(f"stored in {channel!r} as id {stored.id}: subscribers recover it")
            raise
        return stored

    def refresh(self, channel: str) -> None:
        """The blocking :meth:`Publisher.refresh`."""
        try:
            self.publish(*_refresh(channel))
        except PublishError as exc:
            exc.add_note(_REFRESH_NOTE)
            raise

    def close(self) -> None:
        """Close the connection pool (unless it was given) and the history it opened.
        Publishing afterwards raises."""
        self._closed = True
        self._close_zmq()
        if self._owns_client and self._client is not None:
            self._client.close()
        if self._owns_history and self._history is not None:
            self._history.sync.close()
        if self._owns_presence and self._presence is not None:
            self._presence.sync.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
