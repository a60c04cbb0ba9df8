"""GRIP instructions: the ``Grip-*`` response headers that tell the proxy to hold a request.

Build a :class:`GripInstruct` and send ``to_headers()`` with the response::

    instruct = GripInstruct("news").set_hold_stream().set_keep_alive(":\\n\\n", 20)
    headers = instruct.to_headers(prefix="app-")

The parsers read these headers the way Pushpin 1.36 does (``instruct.cpp`` and
``httpheaders.cpp``), so what they return is what the proxy would act on. They also read the
request headers the proxy adds, ``Grip-Last`` and ``Grip-Feature``.

Header values are ``str``. Pushpin decodes header bytes as UTF-8, so adapters must encode
values with UTF-8. The values stay ASCII unless a channel name, prev-id, filter, meta entry or
status reason is not.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

__all__ = (
    "Channel",
    "GripInstruct",
    "HoldMode",
    "KeepAlive",
    "KeepAliveMode",
    "create_grip_channel_header",
    "parse_grip_channel",
    "parse_grip_feature",
    "parse_grip_last",
    "parse_instruct_headers",
    "parse_keep_alive",
    "parse_params_list",
    "parse_set_meta",
)

HoldMode = Literal["response", "stream"]
KeepAliveMode = Literal["idle", "interval"]

_HOLD_MODES: dict[str, HoldMode] = {"response": "response", "stream": "stream"}
_KEEP_ALIVE_MODES: dict[str, KeepAliveMode] = {"idle": "idle", "interval": "interval"}
_DEFAULT_KEEP_ALIVE_TIMEOUT = 55  # spec §3.2

# Pushpin trims every token and value with Qt's trimmed(), which strips these.
_WHITESPACE = " \t\n\x0b\x0c\r"
# Pushpin splits lists on "," and parameters on ";", and '"' starts a quoted string (§3.2).
_SEPARATORS = re.compile(r'[\x00-\x1f\x7f,;"]')
_META_NAME_SEPARATORS = re.compile(r'[\x00-\x1f\x7f,;"=]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINK_FORBIDDEN = re.compile(r'[^\x21-\x7e]|[<>",;]')
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PARAM_NAME_END = re.compile(r"[=;]")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_HEX_PAIR = re.compile(rb"[0-9A-Fa-f]{2}")

# Pushpin's cstring decoder knows only \\ \r \n and \xHH, and silently drops any other
# escape (a tab written as \t vanishes), so every other control character becomes \xHH.
_CSTRING_ENCODE = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    ord("\\"): "\\\\",
    ord("\r"): "\\r",
    ord("\n"): "\\n",
}
_CSTRING_DECODE = {b"\\": b"\\", b"r": b"\r", b"n": b"\n"}


def _check_token(value: str, what: str, forbidden: re.Pattern[str] = _SEPARATORS) -> None:
    """Reject a name or value that Pushpin's header parser would split, trim or mangle."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    bad = forbidden.search(value)
    if bad:
        raise ValueError(
            f"{what} {value!r} contains {bad.group()!r}, which a Grip header cannot carry"
        )
    if value[0] == " " or value[-1] == " ":
        raise ValueError(f"{what} {value!r} starts or ends with a space, which Pushpin trims")


def _check_text(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character")


def _check_link(uri: str, what: str) -> None:
    bad = _LINK_FORBIDDEN.search(uri)
    if bad:
        raise ValueError(
            f"{what} {uri!r} contains {bad.group()!r}; percent-encode it (Grip-Link cannot carry"
            ' spaces, control or non-ASCII characters, or any of < > " , ;)'
        )
    if not uri:
        raise ValueError(f"{what} must not be empty")


def _check_meta(name: str, value: str) -> None:
    _check_token(name, "meta name", _META_NAME_SEPARATORS)
    # Values are always sent quoted, so only control characters are out.
    _check_text(value, "meta value")


def _check_prefix(prefix: str) -> None:
    if prefix:
        _check_token(prefix, "channel prefix")


def _check_int(value: int, what: str, minimum: int) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")


@dataclass(frozen=True)
class Channel:
    """A channel to subscribe a held request to.

    Args:
        name: The channel. It cannot contain ``,`` ``;`` ``"`` or control characters, nor
            start or end with a space: Pushpin's header parser splits or trims on them.
        prev_id: The ID of the last item the client has. Pushpin delivers an item only if its
            ``prev-id`` matches; otherwise it asks the app again, sending ``Grip-Last``.
            A stream hold needs a next link for this.
        filters: Pushpin filters for this subscription, e.g. ``"skip-self"``.
    """

    name: str
    prev_id: str | None = None
    filters: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_token(self.name, "channel name")
        # Pushpin writes prev-ids back unquoted in Grip-Last, so they follow the name rules.
        if self.prev_id is not None:
            _check_token(self.prev_id, "prev_id")
        if isinstance(self.filters, str):
            raise TypeError("filters must be a sequence of filter names, not a str")
        filters = tuple(self.filters)
        for name in filters:
            _check_token(name, "filter")
        object.__setattr__(self, "filters", filters)


_Channels: TypeAlias = "str | Channel | Iterable[str | Channel]"


def _channel_items(channels: _Channels) -> Iterable[str | Channel]:
    # A bare str is an iterable of characters: take it as one channel.
    return (channels,) if isinstance(channels, (str, Channel)) else channels


def _encode_cstring(text: str) -> str | None:
    """``text`` in Pushpin's cstring format, or None if that format cannot carry it."""
    # ";" would end the data (spec §8.2). Non-ASCII goes base64 so the header stays ASCII.
    if ";" in text or not text.isascii():
        return None
    encoded = text.translate(_CSTRING_ENCODE)
    # Pushpin trims the data, so a space at either end must be escaped to survive.
    if encoded[0] == " ":
        encoded = "\\x20" + encoded[1:]
    if encoded[-1] == " ":
        encoded = encoded[:-1] + "\\x20"
    return encoded


@dataclass(frozen=True)
class KeepAlive:
    """Data the proxy sends down a stream hold whenever it has been quiet for ``timeout`` s.

    Args:
        data: What to send. A ``str`` travels as readable text (``format=cstring``) unless it
            contains ``;`` or non-ASCII characters; ``bytes``, and those strings, travel as
            base64 (UTF-8 for a ``str``).
        timeout: Seconds, at least 1. Pushpin shortens each delay by a random 0-1 s.
        mode: ``"idle"`` (Pushpin's default) waits for ``timeout`` s of silence; ``"interval"``
            sends on a fixed period. None leaves the choice to the proxy.
    """

    data: str | bytes
    timeout: int = _DEFAULT_KEEP_ALIVE_TIMEOUT
    mode: KeepAliveMode | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, (str, bytes)):
            raise TypeError(f"keep-alive data must be str or bytes, got {type(self.data).__name__}")
        # The data is the header's first token, which Pushpin rejects when empty.
        if not self.data:
            raise ValueError("keep-alive data must not be empty")
        _check_int(self.timeout, "keep-alive timeout", 1)
        if self.mode is not None and self.mode not in _KEEP_ALIVE_MODES:
            raise ValueError(f"keep-alive mode must be 'idle' or 'interval', got {self.mode!r}")

    def to_header(self) -> str:
        """The ``Grip-Keep-Alive`` header value."""
        data = self.data
        text = _encode_cstring(data) if isinstance(data, str) else None
        if text is not None:
            value = f"{text}; format=cstring; timeout={self.timeout}"
        else:
            raw = data.encode() if isinstance(data, str) else data
            encoded = base64.b64encode(raw).decode("ascii")
            value = f"{encoded}; format=base64; timeout={self.timeout}"
        return value if self.mode is None else f"{value}; mode={self.mode}"


def create_grip_channel_header(channels: _Channels, prefix: str = "") -> str:
    """The ``Grip-Channel`` header value for ``channels``, each name prefixed with ``prefix``."""
    _check_prefix(prefix)
    parts = []
    for item in _channel_items(channels):
        channel = Channel(item) if isinstance(item, str) else item
        part = prefix + channel.name
        if channel.prev_id is not None:
            part += f"; prev-id={channel.prev_id}"
        for name in channel.filters:
            part += f"; filter={name}"
        parts.append(part)
    if not parts:
        raise ValueError("no channels given")
    return ", ".join(parts)


def _channel_json(channel: Channel, prefix: str) -> dict[str, object]:
    item: dict[str, object] = {"name": prefix + channel.name}
    if channel.prev_id is not None:
        item["prev-id"] = channel.prev_id
    if channel.filters:
        item["filters"] = list(channel.filters)
    return item


def _keep_alive_json(keep_alive: KeepAlive) -> dict[str, object]:
    data = keep_alive.data
    if isinstance(data, str):
        return {"content": data, "timeout": keep_alive.timeout}
    return {"content-bin": base64.b64encode(data).decode("ascii"), "timeout": keep_alive.timeout}


def _response_json(response: Mapping[str, object]) -> dict[str, object]:
    out = dict(response)
    body = out.get("body")
    if isinstance(body, bytes):
        del out["body"]
        out["body-bin"] = base64.b64encode(body).decode("ascii")
    return out


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


_I = TypeVar("_I", bound="GripInstruct")


@dataclass(init=False, slots=True)
class GripInstruct:
    """What the GRIP proxy should do with a response: hold it, subscribe it, and more.

    Build it with the ``add_*`` and ``set_*`` methods, which validate their arguments and
    return the instruct so calls chain. Then send :meth:`to_headers` with the response. Read
    the attributes freely; change them through the methods.

    Args:
        channels: Channels to subscribe to: names, :class:`Channel` objects, or one of either.
    """

    #: Channels the held request subscribes to.
    channels: list[Channel]
    #: ``"response"`` (long-poll), ``"stream"``, or None for no hold.
    hold: HoldMode | None
    #: Long-poll timeout in seconds; None leaves Pushpin's default (55).
    timeout: int | None
    keep_alive: KeepAlive | None
    next_link: str | None
    #: Seconds between next-link fetches on a stream hold; None leaves Pushpin's default (120).
    next_link_timeout: int | None
    gone_link: str | None
    #: Status code the client gets instead of the response's own (``Grip-Status``).
    status: int | None
    status_reason: str | None
    #: Subscription meta, read by filters such as ``skip-self`` (key ``user``).
    meta: dict[str, str]
    expose_headers: list[str]

    def __init__(self, channels: _Channels | None = None) -> None:
        self.channels = []
        self.hold = None
        self.timeout = None
        self.keep_alive = None
        self.next_link = None
        self.next_link_timeout = None
        self.gone_link = None
        self.status = None
        self.status_reason = None
        self.meta = {}
        self.expose_headers = []
        if channels is not None:
            self.add_channels(channels)

    def add_channel(
        self: _I,
        channel: str | Channel,
        *,
        prev_id: str | None = None,
        filters: Sequence[str] = (),
    ) -> _I:
        """Subscribe to ``channel``; ``prev_id`` and ``filters`` go with a channel name."""
        if isinstance(channel, Channel):
            if prev_id is not None or filters:
                raise TypeError("prev_id and filters go with a channel name, not a Channel")
            self.channels.append(channel)
        else:
            self.channels.append(Channel(channel, prev_id, filters))
        return self

    def add_channels(self: _I, channels: _Channels) -> _I:
        """Subscribe to each of ``channels`` (names or :class:`Channel` objects)."""
        for channel in _channel_items(channels):
            self.add_channel(channel)
        return self

    def set_hold_longpoll(self: _I, timeout: int | None = None) -> _I:
        """Hold the request until a publish arrives, or until ``timeout`` seconds pass.

        The response sent now is what the client gets on timeout. Pushpin raises timeouts
        under 5 s to 5 s; None means its default of 55 s.
        """
        if timeout is not None:
            _check_int(timeout, "long-poll timeout", 0)
        self.hold = "response"
        self.timeout = timeout
        return self

    def set_hold_stream(self: _I) -> _I:
        """Send the response now and keep the connection open, appending each publish."""
        self.hold = "stream"
        self.timeout = None
        return self

    def set_keep_alive(
        self: _I,
        data: str | bytes,
        timeout: int = _DEFAULT_KEEP_ALIVE_TIMEOUT,
        *,
        mode: KeepAliveMode | None = None,
    ) -> _I:
        """Have the proxy send ``data`` when the stream is quiet (see :class:`KeepAlive`).

        It only applies to a stream hold; the proxy ignores it otherwise.
        """
        self.keep_alive = KeepAlive(data, timeout, mode)
        return self

    def set_next_link(self: _I, uri: str, timeout: int | None = None) -> _I:
        """Have the proxy GET ``uri`` next (relative URIs resolve against the request).

        Without a hold, the proxy appends that response's body to this one. With a stream
        hold, it fetches ``uri`` every ``timeout`` seconds (Pushpin's default is 120), on a
        ``hint`` publish, and when a ``prev-id`` does not match.
        """
        _check_link(uri, "next link")
        if timeout is not None:
            _check_int(timeout, "next link timeout", 1)
        self.next_link = uri
        self.next_link_timeout = timeout
        return self

    def set_gone_link(self: _I, uri: str) -> _I:
        """Have the proxy POST an empty body to ``uri`` when the client goes away.

        Needs Pushpin 1.41 or later; older versions ignore it.
        """
        _check_link(uri, "gone link")
        self.gone_link = uri
        return self

    def set_meta(self: _I, name: str, value: str) -> _I:
        """Set subscription meta ``name`` (e.g. ``"user"`` for ``skip-self``) to ``value``.

        It is sent even without a hold.
        """
        _check_meta(name, value)
        self.meta[name] = value
        return self

    def set_status(self: _I, code: int, reason: str | None = None) -> _I:
        """Have the client get status ``code`` (and ``reason``) instead of the response's own.

        Use it for statuses that frameworks send without headers, such as 304.
        """
        _check_int(code, "status code", 100)
        if code > 999:
            raise ValueError(f"status code must have three digits, got {code}")
        if reason is not None:
            if not reason:
                raise ValueError("status reason must not be empty; pass None for the default")
            _check_text(reason, "status reason")
        self.status = code
        self.status_reason = reason
        return self

    def set_expose_headers(self: _I, names: Iterable[str]) -> _I:
        """Keep only the named headers of this response for the client.

        ``Grip-Expose-Headers`` is undocumented in Pushpin; avoid it unless you need it.
        """
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if not _HTTP_TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
        self.expose_headers = names
        return self

    def to_headers(self, prefix: str = "") -> list[tuple[str, str]]:
        """The ``Grip-*`` response headers, with ``prefix`` added to every channel name.

        Each header name appears at most once, in a fixed order, so the result also suits
        frameworks that keep headers in a dict.

        Raises:
            ValueError: The instruct is incomplete, e.g. a hold without channels.
        """
        headers: list[tuple[str, str]] = []
        if self.hold is not None:
            self._check_hold()
            headers.append(("Grip-Hold", self.hold))
        if self.channels:
            headers.append(("Grip-Channel", create_grip_channel_header(self.channels, prefix)))
        if self.timeout is not None:
            headers.append(("Grip-Timeout", str(self.timeout)))
        if self.keep_alive is not None:
            headers.append(("Grip-Keep-Alive", self.keep_alive.to_header()))
        if self.meta:
            headers.append(("Grip-Set-Meta", self._meta_header()))
        links = []
        if self.next_link is not None:
            next_link = f"<{self.next_link}>; rel=next"
            if self.next_link_timeout is not None:
                next_link += f"; timeout={self.next_link_timeout}"
            links.append(next_link)
        if self.gone_link is not None:
            links.append(f"<{self.gone_link}>; rel=gone")
        if links:
            headers.append(("Grip-Link", ", ".join(links)))
        if self.status is not None:
            status = str(self.status)
            if self.status_reason is not None:
                status += f" {self.status_reason}"
            headers.append(("Grip-Status", status))
        if self.expose_headers:
            headers.append(("Grip-Expose-Headers", ", ".join(self.expose_headers)))
        return headers

    def to_json(self, prefix: str = "", response: Mapping[str, object] | None = None) -> str:
        """The instruct as an ``application/grip-instruct`` body, for apps that cannot set headers.

        Send it with status 200 (spec §3.3). The client gets ``response`` instead (keys
        ``code``, ``reason``, ``headers``, and ``body`` as str or bytes), or an empty response.
        JSON carries only the hold, and a JSON keep-alive fires on a fixed interval.

        Raises:
            ValueError: The instruct needs headers: it has links, a status, expose headers,
                keep-alive mode ``"idle"``, or channels or meta without a hold.
        """
        header_only = [
            name
            for name, value in (
                ("next_link", self.next_link),
                ("gone_link", self.gone_link),
                ("status", self.status),
                ("expose_headers", self.expose_headers or None),
            )
            if value is not None
        ]
        if self.keep_alive is not None and self.keep_alive.mode == "idle":
            header_only.append("keep-alive mode 'idle'")
        if header_only:
            raise ValueError(f"JSON cannot carry {', '.join(header_only)}; use to_headers()")
        body: dict[str, object] = {}
        if self.hold is not None:
            body["hold"] = self._hold_json(prefix)
        elif self.channels or self.meta or self.keep_alive is not None:
            raise ValueError("JSON carries channels, meta and keep-alive only with a hold")
        if response is not None:
            body["response"] = _response_json(response)
        return json.dumps(body)

    def _hold_json(self, prefix: str) -> dict[str, object]:
        self._check_hold()
        _check_prefix(prefix)
        hold: dict[str, object] = {
            "mode": self.hold,
            "channels": [_channel_json(channel, prefix) for channel in self.channels],
        }
        if self.timeout is not None:
            hold["timeout"] = self.timeout
        if self.keep_alive is not None:
            hold["keep-alive"] = _keep_alive_json(self.keep_alive)
        if self.meta:
            for name, value in self.meta.items():
                _check_meta(name, value)
            hold["meta"] = dict(self.meta)
        return hold

    def _check_hold(self) -> None:
        if not self.channels:
            raise ValueError("a hold needs at least one channel")
        if self.hold == "stream" and self.next_link is None:
            for channel in self.channels:
                if channel.prev_id is not None:
                    raise ValueError(
                        f"channel {channel.name!r} has a prev_id, which a stream hold supports"
                        " only with a next link (Pushpin fails the request otherwise)"
                    )

    def _meta_header(self) -> str:
        # Checked here too: meta is a plain dict that users may fill directly.
        parts = []
        for name, value in self.meta.items():
            _check_meta(name, value)
            parts.append(f"{name}={_quote(value)}")
        return ", ".join(parts)


# Parsers. They follow Pushpin's HttpHeaders::parseParameters and Instruct::fromResponse.


def _values(values: str | Iterable[str]) -> Iterable[str]:
    # A bare str is an iterable of characters: take it as one header value.
    return (values,) if isinstance(values, str) else values


def _split_list(value: str) -> list[str]:
    """Split a list header on the commas outside double quotes, trimming each element.

    Like Pushpin, nothing follows a final comma, and an unterminated quote runs to the end.
    """
    if '"' not in value:  # the common case, without a character loop
        parts = value.split(",")
        if parts[-1] == "":
            parts.pop()
        return [part.strip(_WHITESPACE) for part in parts]
    parts = []
    start = 0
    in_quote = False
    pos = 0
    while pos < len(value):
        char = value[pos]
        if in_quote:
            if char == "\\":
                pos += 1
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
        elif char == ",":
            parts.append(value[start:pos])
            start = pos + 1
        pos += 1
    if start < len(value):
        parts.append(value[start:])
    return [part.strip(_WHITESPACE) for part in parts]


def _parse_params(text: str) -> list[tuple[str, str]] | None:
    """Parse ``k=v; k2="v2"; flag`` into pairs; None if a quoted value is unterminated."""
    params = []
    pos = 0
    end = len(text)
    while pos < end:
        name_end = _PARAM_NAME_END.search(text, pos)
        if name_end is None:
            params.append((text[pos:].strip(_WHITESPACE), ""))
            break
        name = text[pos : name_end.start()].strip(_WHITESPACE)
        pos = name_end.end()
        if name_end.group() == ";":
            params.append((name, ""))
            continue
        quoted = _QUOTED.match(text, pos)
        if quoted is not None:
            value = _QUOTED_ESCAPE.sub(r"\1", quoted.group(1))
            # Pushpin skips anything between the closing quote and the next ";".
            semicolon = text.find(";", quoted.end())
        elif text.startswith('"', pos):
            return None
        else:
            semicolon = text.find(";", pos)
            value = text[pos : end if semicolon == -1 else semicolon].strip(_WHITESPACE)
        params.append((name, value))
        pos = end if semicolon == -1 else semicolon + 1
    return params


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    """The first value of parameter ``name`` (matched case-insensitively, like Pushpin)."""
    for key, value in params:
        if key.lower() == name:
            return value
    return None


def _parse_int(text: str, what: str) -> int:
    text = text.strip(_WHITESPACE)
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_params_list(value: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Parse a list header value such as ``a; prev-id=1, b; filter="x, y"``.

    Returns one ``(first token, [(name, value), ...])`` per element. Elements are split on
    commas outside double quotes; parameter values may be quoted, with ``\\`` escapes. Like
    Pushpin, an element whose quoted value never ends is dropped.
    """
    elements = []
    for element in _split_list(value):
        first, _, rest = element.partition(";")
        params = _parse_params(rest)
        if params is not None:
            elements.append((first.strip(_WHITESPACE), params))
    return elements


def parse_grip_channel(values: str | Iterable[str]) -> list[Channel]:
    """Parse ``Grip-Channel`` header values into channels, in order.

    Raises:
        ValueError: A channel is not valid, e.g. its name is empty.
    """
    channels = []
    for value in _values(values):
        for name, params in parse_params_list(value):
            # Unlike its other parameters, Pushpin matches "filter" case-sensitively.
            filters = [param for key, param in params if key == "filter"]
            channels.append(Channel(name, _param(params, "prev-id") or None, filters))
    return channels


def _decode_cstring(text: str) -> bytes:
    raw = text.encode()
    out = bytearray()
    pos = 0
    while (backslash := raw.find(b"\\", pos)) != -1:
        out += raw[pos:backslash]
        code = raw[backslash + 1 : backslash + 2]
        if code == b"x":
            digits = raw[backslash + 2 : backslash + 4]
            if not _HEX_PAIR.fullmatch(digits):
                raise ValueError(f"Grip-Keep-Alive cstring has a bad \\x escape: {text!r}")
            out.append(int(digits, 16))
            pos = backslash + 4
            continue
        if not code:
            raise ValueError(f"Grip-Keep-Alive cstring ends with a backslash: {text!r}")
        # Pushpin drops an unknown escape, backslash and all (spec §3.2).
        out += _CSTRING_DECODE.get(code, b"")
        pos = backslash + 2
    out += raw[pos:]
    # Pushpin's decoder returns a null array for empty output, which it reports as an error.
    if not out:
        raise ValueError(f"Grip-Keep-Alive cstring decodes to nothing: {text!r}")
    return bytes(out)


def parse_keep_alive(value: str) -> KeepAlive | None:
    """Parse a ``Grip-Keep-Alive`` header value into a :class:`KeepAlive` with bytes data.

    Returns None when Pushpin ignores the header: it is empty, or its parameters have an
    unterminated quote. The timeout defaults to 55 and is raised to at least 1.

    Raises:
        ValueError: Pushpin rejects the header (empty data, unknown format or mode, bad
            timeout, or data that does not decode).
    """
    if not value:
        return None
    # Not a list header: commas belong to the data.
    first, _, rest = value.partition(";")
    params = _parse_params(rest)
    if params is None:
        return None
    text = first.strip(_WHITESPACE)
    if not text:
        raise ValueError("Grip-Keep-Alive data must not be empty")
    mode_name = _param(params, "mode")
    mode = _KEEP_ALIVE_MODES.get(mode_name) if mode_name else None
    if mode_name and mode is None:
        raise ValueError(f"no such Grip-Keep-Alive mode {mode_name!r}")
    timeout_text = _param(params, "timeout")
    timeout = _DEFAULT_KEEP_ALIVE_TIMEOUT
    if timeout_text is not None:
        timeout = max(_parse_int(timeout_text, "Grip-Keep-Alive timeout"), 1)
    data_format = _param(params, "format") or "raw"
    if data_format == "raw":
        data = text.encode()
    elif data_format == "cstring":
        data = _decode_cstring(text)
    elif data_format == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"Grip-Keep-Alive data is not valid base64: {text!r}") from exc
    else:
        raise ValueError(f"no such Grip-Keep-Alive format {data_format!r}")
    return KeepAlive(data, timeout, mode)


def parse_set_meta(values: str | Iterable[str]) -> dict[str, str]:
    """Parse ``Grip-Set-Meta`` header values (``user="alice", k=v``) into a dict.

    Raises:
        ValueError: An element is empty, which Pushpin rejects.
    """
    meta = {}
    for value in _values(values):
        for element in _split_list(value):
            params = _parse_params(element)
            if params is None:  # Pushpin drops what it cannot parse
                continue
            if not params:
                raise ValueError(f"Grip-Set-Meta has an empty element: {value!r}")
            name, item = params[0]
            meta[name] = item
    return meta


def parse_grip_last(values: str | Iterable[str]) -> dict[str, str]:
    """Parse the proxy's ``Grip-Last`` request headers into ``{channel: last_id}``.

    Each value may hold several comma-separated ``channel; last-id=ID`` elements. Malformed
    elements are skipped, so this never raises.
    """
    last_ids = {}
    for value in _values(values):
        for channel, params in parse_params_list(value):
            last_id = _param(params, "last-id")
            if channel and last_id:
                last_ids[channel] = last_id
    return last_ids


def parse_grip_feature(values: str | Iterable[str]) -> frozenset[str]:
    """Parse the proxy's ``Grip-Feature`` request headers into a set of feature names."""
    return frozenset(
        feature for value in _values(values) for feature, _ in parse_params_list(value) if feature
    )


def parse_instruct_headers(headers: Iterable[tuple[str, str]]) -> GripInstruct:
    """Rebuild the :class:`GripInstruct` that response ``headers`` carry, as Pushpin reads them.

    Header names match case-insensitively; other headers are ignored. Channel names keep any
    prefix. Keep-alive data comes back as bytes.

    Raises:
        ValueError: Pushpin would reject the headers (the client would get a 502), or they
            hold something :class:`GripInstruct` refuses to build.
    """
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)

    def first(name: str) -> str | None:
        return found[name][0] if name in found else None

    instruct = GripInstruct(parse_grip_channel(found.get("grip-channel", ())))
    hold = first("grip-hold")
    if hold is not None:
        instruct.hold = _HOLD_MODES.get(hold)
        if instruct.hold is None:
            raise ValueError(f"Grip-Hold must be 'response' or 'stream', got {hold!r}")
    timeout = first("grip-timeout")
    if timeout is not None:
        instruct.timeout = _parse_int(timeout, "Grip-Timeout")
    keep_alive = first("grip-keep-alive")
    if keep_alive is not None:
        instruct.keep_alive = parse_keep_alive(keep_alive)
    instruct.meta = parse_set_meta(found.get("grip-set-meta", ()))
    for value in found.get("grip-link", ()):
        for target, params in parse_params_list(value):
            if not params:  # Pushpin ignores a link without parameters
                continue
            if len(target) <= 2 or target[0] != "<" or target[-1] != ">":
                raise ValueError(f"Grip-Link target must be <URI>, got {target!r}")
            rel = _param(params, "rel")
            if rel == "next":
                link_timeout = _param(params, "timeout")
                instruct.set_next_link(
                    target[1:-1],
                    None if link_timeout is None else _parse_int(link_timeout, "Grip-Link timeout"),
                )
            elif rel == "gone":
                instruct.set_gone_link(target[1:-1])
    status = first("grip-status")
    if status:
        code, _, reason = status.partition(" ")
        instruct.set_status(_parse_int(code, "Grip-Status code"), reason or None)
    expose = [name for value in found.get("grip-expose-headers", ()) for name in _split_list(value)]
    instruct.set_expose_headers(name for name in expose if name)
    return instruct
