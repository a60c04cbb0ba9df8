"""Pushpin's ZeroMQ sockets, sans I/O: endpoints, item messages, stats packets, ZRPC.

What each socket carries in Pushpin 1.36 (``src/handler/engine.cpp``,
``src/corelib/statsmanager.cpp``, ``src/corelib/zrpcmanager.cpp``):

- ``push_in_spec`` (PULL, bound by Pushpin): one frame per item, ``J`` + the item's JSON (or
  a tnetstring). The JSON is what the HTTP endpoint takes inside ``{"items": [...]}``,
  ``-bin`` keys included.
- ``push_in_sub_specs`` (SUB): two frames, the channel (also the ZeroMQ topic Pushpin
  subscribes to) and ``J`` + the item's JSON; the first frame decides the channel.
- ``stats_spec`` (PUB): one frame, ``<type> T<tnetstring>`` (``J<json>`` with
  ``stats_format=json``); a ``sub`` packet says how many connections one Pushpin holds on a
  channel in one mode (``ws``, ``stream``, ``response``), valid for ``ttl`` seconds.
- ``command_spec`` (ROUTER, for REQ or DEALER clients): ZRPC, a tnetstring dict
  ``{"id", "method", "args"}`` answered by ``{"id", "success", "value" | "condition"}``.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import GripConfigError
from . import _tnetstring
from ._tnetstring import TnetstringError

__all__ = (
    "COMMAND_BATCH_BYTES",
    "DEFAULT_SUBSCRIPTION_TTL",
    "StatsPacketError",
    "SubscriberTable",
    "SubscriptionStat",
    "ZmqEndpoint",
    "ZrpcError",
    "ZrpcResponse",
    "command_messages",
    "parse_stats_message",
    "parse_subscription",
    "parse_zmq_uri",
    "parse_zrpc_response",
    "pub_message",
    "push_message",
    "tnetstring_item",
    "zrpc_batch",
    "zrpc_publish",
    "zrpc_request",
)

#: Pushpin's ``stats_subscription_ttl`` default: a ``sub`` packet holds for 60 s, and Pushpin
#: sends each live subscription again every 45 s (three quarters of it).
DEFAULT_SUBSCRIPTION_TTL = 60.0
ZMQ_SCHEMES = ("zmq+tcp", "zmq+ipc")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --- Endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZmqEndpoint:
    """Where and how a publisher sends items over ZeroMQ, from a ``zmq+`` control URI."""

    #: The ZeroMQ address: ``tcp://host:port`` or ``ipc:///path``.
    address: str
    #: ``"push"``: a PUSH socket to one Pushpin's ``push_in_spec``; ``"pub"``: a PUB socket
    #: that Pushpins subscribe to (``push_in_sub_specs``); ``"command"``: ZRPC ``publish``
    #: requests to one Pushpin's ``command_spec``, each answered.
    mode: Literal["push", "pub", "command"]
    #: The socket binds ``address`` (a PUB socket that Pushpins connect to, the default for
    #: ``pub``) instead of connecting to it.
    bind: bool


@functools.lru_cache(maxsize=64)  # a publisher reads the same few URIs on every publish
def parse_zmq_uri(uri: str) -> ZmqEndpoint:
    """Parse a ZeroMQ control URI: ``zmq+tcp://host:port`` or ``zmq+ipc:///path``, with
    ``?mode=push`` (the default), ``?mode=pub`` (and then ``&bind=false`` to connect instead
    of binding) or ``?mode=command``. Other query parameters are an error; raises
    GripConfigError."""
    parts = urlsplit(uri)
    if parts.scheme not in ZMQ_SCHEMES:
        raise GripConfigError(f"a ZeroMQ URI starts with zmq+tcp:// or zmq+ipc://, got {uri!r}")
    params: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ("mode", "bind"):
            raise GripConfigError(f"unknown ZeroMQ URI parameter {name!r} in {uri!r}")
        if name in params:
            raise GripConfigError(f"the ZeroMQ URI repeats {name!r}: {uri!r}")
        params[name] = value.strip().lower()
    mode: Literal["push", "pub", "command"]
    match params.get("mode", "push"):
        case "push":
            mode = "push"
        case "pub":
            mode = "pub"
        case "command":
            mode = "command"
        case other:
            raise GripConfigError(f"mode must be push, pub or command, got {other!r} in {uri!r}")
    bind = mode == "pub"
    if "bind" in params:
        if mode != "pub":
            raise GripConfigError(f"bind= applies to mode=pub only: {uri!r}")
        if params["bind"] not in _TRUE | _FALSE:
            raise GripConfigError(f"bind must be true or false, got {params['bind']!r}")
        bind = params["bind"] in _TRUE
    if parts.fragment or parts.username or parts.password:
        raise GripConfigError(f"a ZeroMQ URI has no credentials or fragment: {uri!r}")
    if parts.scheme == "zmq+ipc":
        if parts.netloc or not parts.path.startswith("/"):
            raise GripConfigError(f"zmq+ipc:// needs an absolute path (zmq+ipc:///...): {uri!r}")
        return ZmqEndpoint("ipc://" + unquote(parts.path), mode, bind)
    try:
        port = parts.port
    except ValueError:
        raise GripConfigError(f"invalid port in {uri!r}") from None
    host = parts.netloc.rpartition(":")[0] if port is not None else ""
    if not host or port is None or port == 0 or parts.path not in ("", "/"):
        raise GripConfigError(f"zmq+tcp:// needs a host and a port and no path: {uri!r}")
    if host == "*" and not bind:
        raise GripConfigError(f"'*' (every interface) is for a socket that binds: {uri!r}")
    return ZmqEndpoint(f"tcp://{host}:{port}", mode, bind)


# --- Items -----------------------------------------------------------------------------------


def push_message(item_json: bytes) -> bytes:
    """The one frame a PUSH socket sends for an item: ``J`` and its JSON (spec §4.4)."""
    return b"J" + item_json


#: Largest ``publish`` request to the command socket, in bytes of items (as HTTP's body limit).
COMMAND_BATCH_BYTES = 1_000_000


# Marks a batch that is a ZRPC ``refresh`` of one channel: item tnetstrings start with a digit.
_REFRESH_MARK = b"R"
_REFRESH_FORMATS = {"ws-message": {"action": "refresh"}}


def command_messages(items: Sequence[Mapping[str, Any]]) -> tuple[tuple[bytes, ...], ...]:
    """Items (their JSON form) as batches for ZRPC requests (:func:`zrpc_batch`): each
    batch the tnetstrings of as many items as fit in :data:`COMMAND_BATCH_BYTES` (one at
    least). An item that only refreshes WebSockets becomes a ZRPC ``refresh`` of its
    channel, which Pushpin's command socket takes from 1.36 on (its HTTP and PUSH inputs
    take the ``refresh`` action only from 1.38)."""
    batches: list[tuple[bytes, ...]] = []
    batch: list[bytes] = []
    size = 0
    for item in items:
        if item.get("formats") == _REFRESH_FORMATS and set(item) == {"channel", "formats"}:
            if batch:
                batches.append(tuple(batch))
                batch, size = [], 0
            batches.append((_REFRESH_MARK + str(item["channel"]).encode("utf-8"),))
            continue
        data = _tnetstring.dumps(tnetstring_item(item))
        if batch and size + len(data) > COMMAND_BATCH_BYTES:
            batches.append(tuple(batch))
            batch, size = [], 0
        batch.append(data)
        size += len(data)
    if batch:
        batches.append(tuple(batch))
    return tuple(batches)


def zrpc_batch(request_id: bytes, batch: Sequence[bytes]) -> bytes:
    """The ZRPC request of a batch of :func:`command_messages`: ``refresh`` or ``publish``."""
    if len(batch) == 1 and batch[0][:1] == _REFRESH_MARK:
        return zrpc_request("refresh", {"channel": batch[0][1:]}, id=request_id)
    return zrpc_publish(request_id, batch)


def zrpc_publish(request_id: bytes, items: Sequence[bytes]) -> bytes:
    """A ZRPC ``publish`` request of items already encoded as tnetstrings (one per item, see
    :func:`tnetstring_item`): ``{"id", "method": "publish", "args": {"items": [...]}}``."""
    item_list = _frame(b"".join(items), b"]")
    args = _frame(b"5:items," + item_list, b"}")
    return _frame(
        _frame(b"id", b",") + _frame(request_id, b",") + b"6:method,7:publish,4:args," + args,
        b"}",
    )


def _frame(payload: bytes, tag: bytes) -> bytes:
    return b"%d:%s%s" % (len(payload), payload, tag)


def pub_message(channel: str, item_json: bytes) -> tuple[bytes, bytes]:
    """The two frames a PUB socket sends: the channel (the topic) and ``J`` + the item's JSON."""
    return channel.encode("utf-8"), b"J" + item_json


_BIN_KEYS = {"http-response": ("body-bin", "body"), "http-stream": ("content-bin", "content")}


def tnetstring_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as Pushpin reads it from a tnetstring (ZRPC ``publish``), from its JSON form.

    Pushpin honours ``body-bin`` and ``content-bin`` of the HTTP formats only in JSON; in a
    tnetstring, strings are bytes already, so the decoded bytes go under ``body`` and
    ``content``. A ``ws-message`` keeps ``content-bin`` (as bytes), which marks it binary.
    """
    out = dict(item)
    formats = {}
    for name, fmt in item["formats"].items():
        fmt = dict(fmt)
        bin_key, key = _BIN_KEYS.get(name, ("content-bin", "content-bin"))
        if bin_key in fmt:
            fmt[key] = base64.b64decode(fmt.pop(bin_key))
        formats[name] = fmt
    out["formats"] = formats
    return out


# --- Stats -----------------------------------------------------------------------------------


class StatsPacketError(ValueError):
    """A message from Pushpin's stats socket is malformed."""


def parse_stats_message(message: bytes) -> tuple[str, dict[str, Any]]:
    """``(type, fields)`` of one stats message: ``b"sub T<tnetstring>"`` or ``b"sub J<json>"``.

    Strings are ``str`` whichever encoding the Pushpin uses (``stats_format``).
    """
    kind, space, body = message.partition(b" ")
    if not space or not kind or not body:
        raise StatsPacketError(f"not '<type> T<data>': {message[:60]!r}")
    try:
        if body[:1] == b"T":
            fields = _texts(_tnetstring.loads(body[1:]))
        elif body[:1] == b"J":
            fields = json.loads(body[1:])
        else:
            raise StatsPacketError(f"unknown stats encoding {body[:1]!r}: {message[:60]!r}")
        name = kind.decode("ascii")
    except (TnetstringError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, StatsPacketError):
            raise
        raise StatsPacketError(f"a {kind[:20]!r} stats packet does not decode: {exc}") from None
    if not isinstance(fields, dict):
        raise StatsPacketError(f"a {name} stats packet is not a dict")
    return name, fields


def _texts(value: Any) -> Any:
    """A decoded tnetstring with every bytes value as UTF-8 text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_texts(item) for item in value]
    if isinstance(value, dict):
        return {key: _texts(item) for key, item in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class SubscriptionStat:
    """One ``sub`` packet: how many connections one Pushpin holds on a channel in one mode."""

    #: The Pushpin handler that sent it (its ``from``, e.g. ``pushpin-handler_1234``).
    source: str
    #: ``"ws"`` (WebSocket), ``"stream"`` (HTTP streams and SSE), ``"response"`` (long-polls).
    mode: str
    channel: str
    #: How many connections; 0 once the subscription is gone (``unavailable``).
    subscribers: int
    #: Seconds the count holds unless sent again; None once the subscription is gone.
    ttl: float | None


def parse_subscription(message: bytes) -> SubscriptionStat | None:
    """The :class:`SubscriptionStat` of a ``sub`` stats message; None for other types."""
    kind, fields = parse_stats_message(message)
    if kind != "sub":
        return None
    source = fields.get("from", "")
    mode, channel = fields.get("mode"), fields.get("channel")
    if not isinstance(mode, str) or not isinstance(channel, str) or not isinstance(source, str):
        raise StatsPacketError(f"a sub packet needs string mode and channel: {fields!r}")
    if fields.get("unavailable") is True:
        return SubscriptionStat(source, mode, channel, 0, None)
    ttl: Any = fields.get("ttl")
    count: Any = fields.get("subscribers", 1)
    # Pushpin leaves "subscribers" out only when it has no count: at least one is there.
    if not _is_int(count) or count < 0 or not _is_int(ttl) or ttl <= 0:
        raise StatsPacketError(f"a sub packet needs a ttl and a count >= 0: {fields!r}")
    return SubscriptionStat(source, mode, channel, count, float(ttl))


def _is_int(value: Any) -> bool:
    # JSON stats carry numbers as floats; a bool is no count.
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


class SubscriberTable:
    """Per-channel subscriber counts from ``sub`` packets, with their TTLs; sans I/O.

    Counts are kept per Pushpin (``source``) and mode and summed on reading, so one table can
    follow several Pushpins. An entry that is not sent again within its ``ttl`` expires, as
    a Pushpin that stopped would leave it. ``now`` is any monotonic clock, in seconds.

    A table learns of a subscription only when Pushpin sends it: at once when it starts or
    its count changes, and every three quarters of the TTL while it lasts. So a table that
    started less than one TTL ago may miss channels: :meth:`is_complete` says when it cannot.
    """

    def __init__(self, started: float, ttl: float = DEFAULT_SUBSCRIPTION_TTL) -> None:
        self._started = started
        self._ttl = ttl
        # (source, mode, channel) -> (count, expires)
        self._entries: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._by_channel: dict[str, set[tuple[str, str, str]]] = {}

    def update(self, stat: SubscriptionStat, now: float) -> bool:
        """Apply one packet; True if the channel's total changed."""
        before = self.count(stat.channel, now)
        key = (stat.source, stat.mode, stat.channel)
        if stat.ttl is None or stat.subscribers == 0:
            self._drop(key)
        else:
            self._ttl = max(self._ttl, stat.ttl)
            self._entries[key] = (stat.subscribers, now + stat.ttl)
            self._by_channel.setdefault(stat.channel, set()).add(key)
        return self.count(stat.channel, now) != before

    def _drop(self, key: tuple[str, str, str]) -> None:
        self._entries.pop(key, None)
        keys = self._by_channel.get(key[2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_channel[key[2]]

    def expire(self, now: float) -> list[str]:
        """Forget every entry past its TTL; the channels whose total changed."""
        gone = [key for key, (_, expires) in self._entries.items() if expires <= now]
        for key in gone:
            self._drop(key)
        return sorted({key[2] for key in gone})

    def count(self, channel: str, now: float) -> int:
        """Connections subscribed to ``channel`` on every Pushpin, every mode together."""
        return sum(self.by_mode(channel, now).values())

    def by_mode(self, channel: str, now: float) -> dict[str, int]:
        """``{mode: connections}`` for ``channel``, summed over the Pushpins."""
        out: dict[str, int] = {}
        for key in self._by_channel.get(channel, ()):
            count, expires = self._entries[key]
            if expires > now:
                out[key[1]] = out.get(key[1], 0) + count
        return out

    def counts(self, now: float) -> dict[str, int]:
        """Every channel with subscribers, and how many."""
        totals = {channel: self.count(channel, now) for channel in self._by_channel}
        return {channel: total for channel, total in sorted(totals.items()) if total}

    def is_complete(self, now: float) -> bool:
        """The table has listened for a whole TTL, so every live subscription was sent to
        it at least once (and a channel it does not list has no subscribers)."""
        return now - self._started >= self._ttl


# --- ZRPC (the command socket) ---------------------------------------------------------------


class ZrpcError(ValueError):
    """A reply from Pushpin's command socket is malformed."""


@dataclass(frozen=True, slots=True)
class ZrpcResponse:
    """A command socket's answer: ``value`` on success, else ``condition`` (and ``value``)."""

    id: bytes | None
    success: bool
    value: Any = None
    condition: str | None = None


def zrpc_request(method: str, args: Mapping[str, Any] | None = None, *, id: bytes) -> bytes:
    """One ZRPC request as a tnetstring: ``{"id", "method", "args"}``."""
    packet: dict[str, Any] = {"id": id, "method": method}
    if args:
        packet["args"] = dict(args)
    return _tnetstring.dumps(packet)


def parse_zrpc_response(data: bytes) -> ZrpcResponse:
    """Decode a ZRPC reply; raises :class:`ZrpcError` for one Pushpin would not send."""
    try:
        packet = _tnetstring.loads(data)
    except TnetstringError as exc:
        raise ZrpcError(f"a command reply is not a tnetstring: {exc}") from None
    if not isinstance(packet, dict) or not isinstance(packet.get("success"), bool):
        raise ZrpcError(f"a command reply needs a boolean 'success': {data[:80]!r}")
    id = packet.get("id")
    if id is not None and not isinstance(id, bytes):
        raise ZrpcError(f"a command reply's id is not a string: {data[:80]!r}")
    if packet["success"]:
        return ZrpcResponse(id, True, packet.get("value"))
    condition = packet.get("condition")
    if not isinstance(condition, bytes):
        raise ZrpcError(f"a failed command reply needs a 'condition': {data[:80]!r}")
    return ZrpcResponse(id, False, packet.get("value"), condition.decode("utf-8", "replace"))
