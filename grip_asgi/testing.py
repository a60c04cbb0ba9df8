"""Test your GRIP endpoints without a proxy: sign requests and build WebSocket-over-HTTP
bodies the way Pushpin does, then read back the events, holds and channels of a response.

Works with any test client whose responses have ``status_code``, ``headers`` and
``content`` (Starlette's and FastAPI's ``TestClient``, httpx, Django's test client)::

    from grip_asgi.testing import GripTestProxy, read_instruct, read_websocket_reply

    proxy = GripTestProxy(key="changeme")           # the app's verify-key
    response = client.get("/stream/news", headers=proxy.headers())
    assert read_instruct(response).channel_names == ["news"]

    request = proxy.websocket(open_event(), text_event("hi"))
    reply = read_websocket_reply(client.post("/echo", **request.kwargs()))
    assert reply.accepted and reply.messages == ["hi"]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from ._instruct import Channel, KeepAlive, parse_grip_channel, parse_keep_alive, parse_set_meta
from ._publish import Publisher
from ._websocket import WebSocketEvent, decode_websocket_events, encode_websocket_events

__all__ = (
    "PUSHPIN_FEATURES",
    "GripTestProxy",
    "InstructReply",
    "RecordingPublisher",
    "WebSocketReply",
    "WebSocketRequest",
    "close_event",
    "make_grip_sig",
    "open_event",
    "read_instruct",
    "read_websocket_reply",
    "text_event",
)

#: The ``Grip-Feature`` header Pushpin 1.36 sends.
PUSHPIN_FEATURES = (
    "status, session, link:next, filter:skip-self, filter:skip-users, filter:require-sub,"
    " filter:build-id, filter:var-subst"
)


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Any: ...
    @property
    def content(self) -> bytes: ...


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_grip_sig(
    key: str | bytes = "changeme",
    *,
    iss: str | None = "pushpin",
    expires_in: float = 3600,
    now: float | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A ``Grip-Sig`` token as Pushpin signs it: HS256 over ``{"exp": ..., "iss": ...}``."""
    payload: dict[str, Any] = {"exp": int((time.time() if now is None else now) + expires_in)}
    if iss is not None:
        payload["iss"] = iss
    payload.update(claims or {})
    secret = key.encode("utf-8") if isinstance(key, str) else key
    signing_input = (
        _b64url(b'{"typ":"JWT","alg":"HS256"}')
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    )
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def open_event() -> WebSocketEvent:
    """The ``OPEN`` event a client's connect becomes."""
    return WebSocketEvent("OPEN")


def text_event(text: str) -> WebSocketEvent:
    """The ``TEXT`` event a client's text message becomes."""
    return WebSocketEvent("TEXT", text.encode("utf-8"))


def close_event(code: int = 1000, reason: str = "") -> WebSocketEvent:
    """The ``CLOSE`` event a client's close frame becomes: the code, then the reason."""
    return WebSocketEvent("CLOSE", struct.pack(">H", code) + reason.encode("utf-8"))


@dataclass(frozen=True)
class WebSocketRequest:
    """A WebSocket-over-HTTP POST as the proxy would send it."""

    headers: dict[str, str]
    content: bytes

    def kwargs(self) -> dict[str, Any]:
        """``client.post(url, **request.kwargs())`` for httpx-style test clients."""
        return {"headers": self.headers, "content": self.content}


@dataclass
class GripTestProxy:
    """Builds requests as a GRIP proxy sends them: signed, with Grip-Feature and meta."""

    key: str | bytes | None = "changeme"
    iss: str | None = "pushpin"
    features: str = PUSHPIN_FEATURES

    def headers(self, *, last: Mapping[str, str] | None = None) -> dict[str, str]:
        """Headers of a proxied HTTP request; ``last`` becomes ``Grip-Last`` (channel → id)."""
        headers = {"Grip-Feature": self.features}
        headers["Grip-Sig"] = make_grip_sig(self.key or b"", iss=self.iss)
        if last:
            headers["Grip-Last"] = ", ".join(f"{ch}; last-id={i}" for ch, i in last.items())
        return headers

    def websocket(
        self,
        *events: WebSocketEvent,
        connection_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> WebSocketRequest:
        """A WebSocket-over-HTTP request carrying ``events`` (e.g. ``open_event()``)."""
        headers = self.headers()
        headers.update(
            {
                "Content-Type": "application/websocket-events",
                "Accept": "application/websocket-events",
                "Connection-Id": connection_id or str(uuid.uuid4()),
                "Sec-WebSocket-Extensions": "grip",
            }
        )
        for name, value in (meta or {}).items():
            headers[f"Meta-{name}"] = value
        return WebSocketRequest(headers, encode_websocket_events(events))


@dataclass
class WebSocketReply:
    """What a WebSocket-over-HTTP response tells the proxy to do."""

    status: int
    events: list[WebSocketEvent]
    #: The first event is OPEN: the connection was accepted.
    accepted: bool
    #: ``Sec-WebSocket-Extensions: grip`` was sent: messages carry the ``m:`` prefix.
    grip_extension: bool
    #: Messages for the client, prefix removed: str for TEXT, bytes for BINARY.
    messages: list[str | bytes] = field(default_factory=list)
    #: Control messages (``c:`` JSON), e.g. ``{"type": "subscribe", "channel": "room"}``.
    control: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    #: ``Set-Meta-*`` headers: name → value ("" deletes).
    set_meta: dict[str, str] = field(default_factory=dict)

    @property
    def subscriptions(self) -> list[str]:
        """Channels subscribed to in this response, in order."""
        return [c["channel"] for c in self.control if c.get("type") == "subscribe"]


def read_websocket_reply(response: _Response) -> WebSocketReply:
    """Decode a WebSocket-over-HTTP response into events, messages and control messages."""
    content_type = response.headers.get("content-type")
    if response.status_code != 200 or content_type != "application/websocket-events":
        raise AssertionError(
            f"not a WebSocket-over-HTTP reply: {response.status_code}, content-type"
            f" {content_type!r}, body {response.content[:200]!r}"
        )
    events = decode_websocket_events(response.content)
    extension = (response.headers.get("sec-websocket-extensions") or "").startswith("grip")
    reply = WebSocketReply(
        status=response.status_code,
        events=events,
        accepted=bool(events) and events[0].type == "OPEN",
        grip_extension=extension,
    )
    for name, value in _header_items(response.headers):
        if name.lower().startswith("set-meta-"):
            reply.set_meta[name[len("set-meta-") :].lower()] = value
    for event in events:
        content = event.content or b""
        if event.type == "TEXT" and content.startswith(b"c:"):
            reply.control.append(json.loads(content[2:]))
        elif event.type in ("TEXT", "BINARY"):
            if content.startswith(b"m:"):
                content = content[2:]
            reply.messages.append(content.decode("utf-8") if event.type == "TEXT" else content)
        elif event.type == "CLOSE" and len(content) >= 2:
            reply.close_code = struct.unpack(">H", content[:2])[0]
            reply.close_reason = content[2:].decode("utf-8", errors="replace")
    return reply


@dataclass
class InstructReply:
    """The GRIP instructions in a response's ``Grip-*`` headers."""

    status: int
    hold: str | None
    channels: list[Channel]
    timeout: int | None
    keep_alive: KeepAlive | None
    grip_status: str | None
    meta: dict[str, str]
    links: list[str]
    headers: dict[str, str]

    @property
    def channel_names(self) -> list[str]:
        """The names of :attr:`channels`, in order."""
        return [channel.name for channel in self.channels]


def read_instruct(response: _Response) -> InstructReply:
    """Parse the ``Grip-*`` headers of a response, as Pushpin would."""
    grip = {k.lower(): v for k, v in _header_items(response.headers) if k.lower()[:5] == "grip-"}
    timeout = grip.get("grip-timeout")
    keep_alive = grip.get("grip-keep-alive")
    return InstructReply(
        status=response.status_code,
        hold=grip.get("grip-hold"),
        channels=parse_grip_channel([grip["grip-channel"]] if "grip-channel" in grip else []),
        timeout=int(timeout) if timeout is not None else None,
        keep_alive=parse_keep_alive(keep_alive) if keep_alive is not None else None,
        grip_status=grip.get("grip-status"),
        meta=parse_set_meta(grip["grip-set-meta"]) if "grip-set-meta" in grip else {},
        links=[link.strip() for link in grip.get("grip-link", "").split(",") if link.strip()],
        headers=grip,
    )


class RecordingPublisher(Publisher):
    """A :class:`Publisher` that records the items it is given instead of sending them.

    Give it to the middleware, ``GripMiddleware(app, publisher=RecordingPublisher())``, then
    read ``published``: one dict per item, as the proxy would have received it
    (``{"channel": ..., "formats": {...}, "id": ...}``).
    """

    def __init__(self, *, prefix: str = "") -> None:
        #: Every item published, in order, in the proxy's JSON form.
        self.published: list[dict[str, Any]] = []
        transport = httpx.MockTransport(self._record)
        super().__init__(
            "http://grip.test", prefix=prefix, client=httpx.AsyncClient(transport=transport)
        )

    def _record(self, request: httpx.Request) -> httpx.Response:
        self.published.extend(json.loads(request.content)["items"])
        return httpx.Response(200, text="Published\n")


def _header_items(headers: Any) -> Iterable[tuple[str, str]]:
    items = headers.items()
    return [(str(k), str(v)) for k, v in items]
