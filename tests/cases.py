"""One table of GRIP request -> response cases, run against every adapter.

``tests/test_conformance.py`` sends each case's :class:`Request` through the ASGI middleware
(a tiny Starlette app) and through grip_django (Django's WSGI and ASGI handlers), lets the
app answer with the case's behaviour, and checks that every adapter gives the
:class:`Expected` response, and the same one, so the adapters cannot drift apart.

A behaviour is what the app does: it gets the request's :class:`GripContext` and returns
the :class:`Reply` the framework should send. Adapters only translate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from grip_asgi._context import GripContext
from grip_asgi._errors import InstructNotAvailableError, InstructTooLateError
from grip_asgi._websocket import WebSocketEvent
from grip_asgi.testing import GripTestProxy, close_event, make_grip_sig, open_event, text_event

GRIP_KEY = "conformance-key-of-at-least-32-bytes"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={GRIP_KEY}"
UNVERIFIED_GRIP_URL = "http://127.0.0.1:5561/"
PROXY_REQUIRED = b"Not Implemented: this endpoint needs a GRIP proxy\n"
TEXT_PLAIN = "text/plain; charset=utf-8"
WEBSOCKET_EVENTS = "application/websocket-events"

proxy = GripTestProxy(key=GRIP_KEY)


# --- What the app answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The response a behaviour asks the framework to send."""

    status: int = 200
    body: bytes = b"ok\n"
    #: None for a response without Content-Type (a 304).
    content_type: str | None = TEXT_PLAIN
    #: Send the body as a streaming response (two chunks: the body, then ``b"[more]\n"``).
    streamed: bool = False
    #: More headers the app sets, as (name, value) pairs.
    headers: tuple[tuple[str, str], ...] = ()
    #: Called between the two chunks of a streamed body, once the response has started.
    mid_stream: Callable[[], object] | None = None


STREAM_TAIL = b"[more]\n"


def describe(grip: GripContext) -> Reply:
    """What the app sees of the request, as JSON."""
    seen = {
        "proxied": grip.is_proxied,
        "signed": grip.is_signed,
        "needs_signed": grip.needs_signed,
        "sig_error": grip.sig_error,
        "last": dict(grip.last),
        "features": sorted(grip.features),
        "ws": grip.ws is not None,
    }
    return Reply(body=json.dumps(seen, sort_keys=True).encode(), content_type="application/json")


def hold_stream(grip: GripContext) -> Reply:
    grip.start_instruct().add_channel("news").set_hold_stream().set_keep_alive(":\n\n", 20)
    return Reply(body=b"[open]\n", streamed=True)


def hold_stream_unicode(grip: GripContext) -> Reply:
    instruct = grip.start_instruct().add_channel("café").set_hold_stream()
    instruct.set_meta("user", "Łódź")
    return Reply(body=b"[open]\n")


def hold_stream_buffered(grip: GripContext) -> Reply:
    grip.start_instruct().add_channels(["a", "b"]).set_hold_stream()
    return Reply(body=b"[open]\n")


def hold_longpoll(grip: GripContext) -> Reply:
    grip.start_instruct().add_channel("poll", prev_id="p1").set_hold_longpoll(timeout=30)
    return Reply(body=b"timeout\n")


def not_modified_hold(grip: GripContext) -> Reply:
    grip.start_instruct().add_channel("etag").set_hold_longpoll()
    return Reply(status=304, body=b"", content_type=None)


def not_modified_hold_with_length(grip: GripContext) -> Reply:
    grip.start_instruct().add_channel("etag").set_hold_longpoll()
    # A 304 may carry the Content-Length a 200 would have had (RFC 9110, section 8.6).
    return Reply(status=304, body=b"", content_type=None, headers=(("Content-Length", "1234"),))


def hold_from_the_stream(grip: GripContext) -> Reply:
    def late() -> None:  # the response's headers are gone by now
        grip.start_instruct().add_channel("late").set_hold_stream()

    return Reply(body=b"[open]\n", streamed=True, mid_stream=late)


def not_modified(grip: GripContext) -> Reply:
    return Reply(status=304, body=b"", content_type=None)


def meta_link_status(grip: GripContext) -> Reply:
    instruct = grip.start_instruct().set_meta("user", "ann")
    instruct.set_next_link("/next?page=2", timeout=10).set_status(202, "Accepted Later")
    return Reply()


def error_with_hold(grip: GripContext) -> Reply:
    grip.start_instruct().add_channel("e").set_hold_stream()
    return Reply(status=500, body=b"oops\n")


def hold_without_channel(grip: GripContext) -> Reply:
    grip.start_instruct().set_hold_stream()  # to_headers() raises: a hold needs a channel
    return Reply()


def ws_echo(grip: GripContext, *, status: int = 200, streamed: bool = False) -> Reply:
    ws = grip.ws
    assert ws is not None
    if ws.is_opening():
        ws.accept()
    for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    # The app's own body never reaches the proxy: the events replace it.
    return Reply(status=status, body=b"replaced\n", streamed=streamed)


class HandlerFailed(Exception):
    """A bug in the app's handler."""


def ws_echo_then_fail(grip: GripContext) -> Reply:
    ws = grip.ws
    assert ws is not None
    for message in ws:
        ws.send(message)
    raise HandlerFailed("the handler failed after echoing")


def ws_chat(grip: GripContext) -> Reply:
    ws = grip.ws
    assert ws is not None
    ws.accept()
    ws.subscribe("room")
    ws.send("welcome")
    ws.keep_alive_interval = 30
    return Reply(body=b"")


def ws_meta(grip: GripContext) -> Reply:
    ws = grip.ws
    assert ws is not None
    ws.meta["room"] = "lobby"
    del ws.meta["user"]
    return Reply(body=b"")


def ws_say_meta(grip: GripContext) -> Reply:
    ws = grip.ws
    assert ws is not None
    ws.send(json.dumps(dict(ws.meta), sort_keys=True))
    ws.meta["Room_Name"] = "lobby"
    return Reply(body=b"")


def ws_reject(grip: GripContext) -> Reply:
    assert grip.ws is not None
    grip.ws.reject(403, "members only")
    return Reply(body=b"")


def ws_app_refuses(grip: GripContext) -> Reply:
    assert grip.ws is not None
    return Reply(status=403, body=b"go away\n")


def ws_close(grip: GripContext) -> Reply:
    assert grip.ws is not None
    assert list(grip.ws) == [] and grip.ws.close_code == 4001
    return Reply(body=b"")


def ws_with_instruct(grip: GripContext) -> Reply:
    ws_echo(grip)
    grip.start_instruct().add_channel("ignored").set_hold_stream()
    return Reply(body=b"")


BEHAVIOURS: Mapping[str, Callable[[GripContext], Reply]] = {
    "describe": describe,
    "hold_stream": hold_stream,
    "hold_stream_unicode": hold_stream_unicode,
    "hold_stream_buffered": hold_stream_buffered,
    "hold_longpoll": hold_longpoll,
    "not_modified_hold": not_modified_hold,
    "not_modified_hold_with_length": not_modified_hold_with_length,
    "not_modified": not_modified,
    "hold_from_the_stream": hold_from_the_stream,
    "meta_link_status": meta_link_status,
    "error_with_hold": error_with_hold,
    "hold_without_channel": hold_without_channel,
    "ws_echo": ws_echo,
    "ws_echo_204": lambda grip: ws_echo(grip, status=204),
    "ws_echo_then_fail": ws_echo_then_fail,
    "ws_echo_201": lambda grip: ws_echo(grip, status=201),
    "ws_echo_streamed": lambda grip: ws_echo(grip, streamed=True),
    "ws_chat": ws_chat,
    "ws_meta": ws_meta,
    "ws_say_meta": ws_say_meta,
    "ws_reject": ws_reject,
    "ws_app_refuses": ws_app_refuses,
    "ws_close": ws_close,
    "ws_with_instruct": ws_with_instruct,
}


# --- The requests and what must come back --------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A request as a server hands it to the app; repeated header names are allowed."""

    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Config:
    """The adapter's GRIP configuration (the middleware's arguments, the Django settings).

    ``environ`` configures through the environment alone: the adapter then gets no
    ``grip_url``, ``verify_key`` or ``proxies`` of its own, as a twelve-factor app would.
    """

    grip_url: str | None = GRIP_URL
    prefix: str = ""
    #: django-grip's GRIP_PROXY_REQUIRED: a GRIP answer to a direct request becomes a 501.
    proxy_required: bool = False
    #: Every direct request gets 501 before reaching the app.
    proxy_only: bool = False
    max_body_size: int | None = None
    #: ``GripMiddleware(verify_key=...)``, the ``GRIP_VERIFY_KEY`` setting.
    verify_key: str | None = None
    #: ``GRIP_PROXIES`` entries, as django-grip dicts of (name, value) pairs.
    proxies: tuple[tuple[tuple[str, str], ...], ...] | None = None
    #: ``GRIP_*`` environment variables, the only configuration when given.
    environ: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Expected:
    status: int
    #: Headers that must be present with these values; None means must be absent.
    headers: Mapping[str, str | None] = field(default_factory=dict)
    #: The exact body, or None to leave it unchecked.
    body: bytes | None = None
    #: Bytes the body must contain.
    body_contains: bytes = b""
    #: The exception the app raises (the response is then a 500).
    error: type[Exception] | None = None


@dataclass(frozen=True)
class Case:
    id: str
    behaviour: str
    request: Request
    expected: Expected
    config: Config = Config()


def signed(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Headers of a request from the proxy, signed with the configured key."""
    return (*proxy.headers().items(), *extra)


def websocket(*events: WebSocketEvent, **headers: str) -> Request:
    """A signed WebSocket-over-HTTP POST; ``headers`` are added (``Connection_Id=""`` drops it)."""
    request = proxy.websocket(*events, connection_id="conn-1", meta={"User": "ann"})
    merged = dict(request.headers)
    for name, value in headers.items():
        name = name.replace("_", "-")
        if value:
            merged[name] = value
        else:
            merged.pop(name, None)
    return Request("POST", tuple(merged.items()), request.content)


def described(**seen: object) -> bytes:
    base: dict[str, object] = {
        "proxied": False,
        "signed": False,
        "needs_signed": True,
        "sig_error": None,
        "last": {},
        "features": [],
        "ws": False,
    }
    return json.dumps({**base, **seen}, sort_keys=True).encode()


NO_GRIP_HEADERS = {"grip-hold": None, "grip-channel": None, "grip-status": None}
FEATURES = sorted(f.strip() for f in proxy.features.split(","))
ECHO_BODY = b"OPEN\r\nTEXT 7\r\nm:hello\r\n"
ECHOED = Expected(
    200,
    {"content-type": WEBSOCKET_EVENTS, "sec-websocket-extensions": "grip", "grip-hold": None},
    body=ECHO_BODY,
)
BAD_KEY = "another-key-of-at-least-32-bytes!!"

CASES: list[Case] = [
    # Who is the proxy.
    Case(
        "unproxied request",
        "describe",
        Request(headers=(("Grip-Last", "a; last-id=1"),)),
        Expected(200, NO_GRIP_HEADERS, body=described()),
    ),
    Case(
        "signed request with Grip-Last and Grip-Feature",
        "describe",
        Request(headers=signed(("Grip-Last", "a; last-id=1, b; last-id=2"))),
        Expected(
            200,
            NO_GRIP_HEADERS,
            body=described(proxied=True, signed=True, last={"a": "1", "b": "2"}, features=FEATURES),
        ),
    ),
    Case(
        "forged Grip-Sig",
        "describe",
        Request(headers=(("Grip-Sig", "garbage"), ("Grip-Last", "a; last-id=1"))),
        Expected(200, body=described(sig_error="malformed token")),
    ),
    Case(
        "Grip-Sig signed with another key",
        "describe",
        Request(headers=(("Grip-Sig", make_grip_sig(BAD_KEY)),)),
        Expected(200, body=described(sig_error="bad signature")),
    ),
    Case(
        "Grip-Sig from another issuer",
        "describe",
        Request(headers=(("Grip-Sig", make_grip_sig(GRIP_KEY, iss="someone")),)),
        Expected(200, body=described(sig_error="wrong issuer")),
    ),
    Case(
        "expired Grip-Sig",
        "describe",
        Request(headers=(("Grip-Sig", make_grip_sig(GRIP_KEY, expires_in=-60)),)),
        Expected(200, body=described(sig_error="expired")),
    ),
    Case(
        "two Grip-Sig headers",
        "describe",
        Request(headers=(*signed(), ("Grip-Sig", make_grip_sig(GRIP_KEY)))),
        Expected(200, body=described(sig_error="several Grip-Sig headers")),
    ),
    Case(
        "any Grip-Sig is proxied when no key is configured",
        "describe",
        Request(headers=(("Grip-Sig", "anything"), ("Grip-Last", "a; last-id=1"))),
        Expected(200, body=described(proxied=True, needs_signed=False, last={"a": "1"})),
        Config(grip_url=UNVERIFIED_GRIP_URL),
    ),
    # Instructs.
    Case(
        # Pushpin reads GRIP header values as UTF-8: the bytes must be UTF-8 on every adapter
        # (shown here as latin-1 text, as the drivers read the raw bytes).
        "non-ASCII channel and meta go out as UTF-8",
        "hold_stream_unicode",
        Request(headers=signed()),
        Expected(
            200,
            {
                "grip-channel": "café".encode().decode("latin-1"),
                "grip-set-meta": 'user="Łódź"'.encode().decode("latin-1"),
            },
        ),
    ),
    Case(
        "streamed stream hold with keep-alive and prefix",
        "hold_stream",
        Request(headers=signed()),
        Expected(
            200,
            {
                "grip-hold": "stream",
                "grip-channel": "app-news",
                "grip-keep-alive": ":\\n\\n; format=cstring; timeout=20",
                "content-type": TEXT_PLAIN,
            },
            body=b"[open]\n" + STREAM_TAIL,
        ),
        Config(prefix="app-"),
    ),
    Case(
        "stream hold on two channels",
        "hold_stream_buffered",
        Request(headers=signed()),
        Expected(200, {"grip-hold": "stream", "grip-channel": "a, b"}, body=b"[open]\n"),
    ),
    Case(
        "long-poll hold with prev-id and timeout",
        "hold_longpoll",
        Request(headers=signed()),
        Expected(
            200,
            {"grip-hold": "response", "grip-channel": "poll; prev-id=p1", "grip-timeout": "30"},
            body=b"timeout\n",
        ),
    ),
    Case(
        "304 with an instruct becomes 200 with Grip-Status",
        "not_modified_hold",
        Request(headers=signed()),
        Expected(200, {"grip-status": "304", "grip-hold": "response"}, body=b""),
    ),
    Case(
        # The entity's length would announce a body the 200 does not have (Observed checks).
        "304 with an instruct and Content-Length becomes 200 without it",
        "not_modified_hold_with_length",
        Request(headers=signed()),
        Expected(200, {"grip-status": "304", "grip-hold": "response"}, body=b""),
    ),
    Case(
        "304 without an instruct stays 304",
        "not_modified",
        Request(headers=signed()),
        Expected(304, NO_GRIP_HEADERS, body=b""),
    ),
    Case(
        "an instruct started from a streaming body is too late",
        "hold_from_the_stream",
        Request(headers=signed()),
        Expected(200, {"grip-hold": None}, body=b"[open]\n", error=InstructTooLateError),
    ),
    Case(
        "meta, next link and status without a hold",
        "meta_link_status",
        Request(headers=signed()),
        Expected(
            200,
            {
                "grip-hold": None,
                "grip-set-meta": 'user="ann"',
                "grip-link": "</next?page=2>; rel=next; timeout=10",
                "grip-status": "202 Accepted Later",
            },
            body=b"ok\n",
        ),
    ),
    Case(
        "an error status keeps the instruct",
        "error_with_hold",
        Request(headers=signed()),
        Expected(500, {"grip-hold": "stream", "grip-channel": "e"}, body=b"oops\n"),
    ),
    Case(
        "a hold without a channel is a programming error",
        "hold_without_channel",
        Request(headers=signed()),
        Expected(500, error=ValueError),
    ),
    Case(
        "an instruct on an unproxied request is a programming error",
        "hold_stream",
        Request(),
        Expected(500, error=InstructNotAvailableError),
    ),
    # WebSocket-over-HTTP.
    Case("websocket echo", "ws_echo", websocket(open_event(), text_event("hello")), ECHOED),
    Case(
        "websocket reply of 204 is replaced",
        "ws_echo_204",
        websocket(open_event(), text_event("hello")),
        ECHOED,
    ),
    Case(
        "a handler that fails closes the client with 1011",
        "ws_echo_then_fail",
        websocket(text_event("hi")),
        Expected(
            200,
            {"content-type": WEBSOCKET_EVENTS},
            body=b"TEXT 4\r\nm:hi\r\nCLOSE 10\r\n\x03\xf3internal error\r\n",
            error=HandlerFailed,
        ),
    ),
    Case(
        "a handler that fails on open keeps its 500, the refused handshake",
        "ws_echo_then_fail",
        websocket(open_event()),
        Expected(500, error=HandlerFailed),
    ),
    Case(
        "websocket reply of 201 is replaced",
        "ws_echo_201",
        websocket(open_event(), text_event("hello")),
        ECHOED,
    ),
    Case(
        "websocket reply streamed by the app is replaced unread",
        "ws_echo_streamed",
        websocket(open_event(), text_event("hello")),
        ECHOED,
    ),
    Case(
        "websocket content type with parameters",
        "ws_echo",
        websocket(
            open_event(), text_event("hello"), Content_Type=WEBSOCKET_EVENTS + "; charset=utf-8"
        ),
        ECHOED,
    ),
    Case(
        "websocket subscribe with prefix, keep-alive interval",
        "ws_chat",
        websocket(open_event()),
        Expected(
            200,
            {
                "content-type": WEBSOCKET_EVENTS,
                "sec-websocket-extensions": "grip",
                "keep-alive-interval": "30",
            },
            body=b'OPEN\r\nTEXT 2b\r\nc:{"type":"subscribe","channel":"app-room"}\r\n'
            b"TEXT 9\r\nm:welcome\r\n",
        ),
        Config(prefix="app-"),
    ),
    Case(
        "websocket meta changes become Set-Meta headers",
        "ws_meta",
        websocket(text_event("x")),
        Expected(200, {"set-meta-room": "lobby", "set-meta-user": ""}, body=b""),
    ),
    Case(
        # WSGI and Django cannot tell "_" from "-" in a header name: one rule for all.
        "meta names are lower case with _ written as -",
        "ws_say_meta",
        websocket(text_event("x"), Meta_User_Id="7"),
        Expected(
            200,
            {"set-meta-room-name": "lobby"},
            body=b'TEXT 21\r\nm:{"user": "ann", "user-id": "7"}\r\n',
        ),
    ),
    Case(
        "websocket rejected on open",
        "ws_reject",
        websocket(open_event()),
        Expected(403, {"content-type": TEXT_PLAIN}, body=b"members only"),
    ),
    Case(
        "websocket non-2xx app reply passes through",
        "ws_app_refuses",
        websocket(open_event()),
        Expected(403, {"sec-websocket-extensions": None}, body=b"go away\n"),
    ),
    Case(
        "websocket client close is echoed",
        "ws_close",
        websocket(close_event(4001, "bye")),
        Expected(200, {"content-type": WEBSOCKET_EVENTS}, body=b"CLOSE 5\r\n\x0f\xa1bye\r\n"),
    ),
    Case(
        "websocket reply ignores an instruct",
        "ws_with_instruct",
        websocket(open_event(), text_event("hello")),
        ECHOED,
    ),
    Case(
        "websocket-events on a GET is not WebSocket-over-HTTP",
        "describe",
        Request("GET", websocket(open_event()).headers),
        Expected(200, body=described(proxied=True, signed=True, features=FEATURES)),
    ),
    Case(
        "websocket body from an unproxied client is not decoded",
        "describe",
        Request(
            "POST",
            (("Grip-Sig", "forged"), ("Content-Type", WEBSOCKET_EVENTS)),
            b"not events",
        ),
        Expected(200, body=described(sig_error="malformed token")),
    ),
    # Bad input from the network.
    Case(
        "websocket text that is not UTF-8, found by the handler",
        "ws_echo",
        Request("POST", websocket().headers, b"OPEN\r\nTEXT 2\r\n\xff\xfe\r\n"),
        Expected(400, {"content-type": TEXT_PLAIN}, body_contains=b"UTF-8"),
    ),
    Case(
        "truncated websocket event",
        "ws_echo",
        Request("POST", websocket().headers, b"TEXT 5\r\nhi"),
        Expected(400, {"content-type": TEXT_PLAIN}, body_contains=b"content truncated"),
    ),
    Case(
        "unknown websocket event",
        "ws_echo",
        Request("POST", websocket().headers, b"BOGUS\r\n"),
        Expected(400, body_contains=b"unknown event type b'BOGUS'"),
    ),
    Case(
        "websocket request without Connection-Id",
        "ws_echo",
        websocket(open_event(), Connection_Id=""),
        Expected(
            400,
            {"content-type": TEXT_PLAIN},
            body=b"WebSocket-over-HTTP request has no Connection-Id header\n",
        ),
    ),
    Case(
        "websocket body over the limit",
        "ws_echo",
        Request("POST", websocket().headers, b"TEXT 10\r\n" + b"x" * 16 + b"\r\n"),
        Expected(413, body=b"WebSocket-over-HTTP body of 27 bytes is over the 20-byte limit\n"),
        Config(max_body_size=20),
    ),
    Case(
        "websocket Content-Length over the limit",
        "ws_echo",
        websocket(open_event(), Content_Length="999999"),
        Expected(413, body_contains=b"body of 999999 bytes is over the 20-byte limit"),
        Config(max_body_size=20),
    ),
    # GRIP_PROXY_ONLY: every direct request is refused.
    Case(
        "proxy only, direct client",
        "describe",
        Request(),
        Expected(501, {"content-type": TEXT_PLAIN}, body=PROXY_REQUIRED),
        Config(proxy_only=True),
    ),
    Case(
        "proxy only, forged Grip-Sig",
        "describe",
        Request(headers=(("Grip-Sig", make_grip_sig(BAD_KEY)),)),
        Expected(501, body=PROXY_REQUIRED),
        Config(proxy_only=True),
    ),
    Case(
        "proxy only, signed request",
        "describe",
        Request(headers=signed()),
        Expected(200, body=described(proxied=True, signed=True, features=FEATURES)),
        Config(proxy_only=True),
    ),
    # GRIP_PROXY_REQUIRED keeps django-grip's meaning: only a GRIP answer needs the proxy.
    Case(
        "proxy required, direct client of a plain endpoint",
        "describe",
        Request(),
        Expected(200, body=described()),
        Config(proxy_required=True),
    ),
    Case(
        "proxy required, direct client of a hold",
        "hold_stream",
        Request(),
        Expected(501, {"content-type": TEXT_PLAIN, "grip-hold": None}, body=PROXY_REQUIRED),
        Config(proxy_required=True),
    ),
    Case(
        "proxy required, forged Grip-Sig on a hold",
        "hold_stream",
        Request(headers=(("Grip-Sig", make_grip_sig(BAD_KEY)),)),
        Expected(501, {"grip-hold": None}, body=PROXY_REQUIRED),
        Config(proxy_required=True),
    ),
    Case(
        "proxy required, signed hold",
        "hold_stream",
        Request(headers=signed()),
        Expected(200, {"grip-hold": "stream"}),
        Config(proxy_required=True),
    ),
]
