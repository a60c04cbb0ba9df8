"""Middleware overhead under ASGI: raw ASGI calls, in-process, on one event loop.

GripMiddleware on a Starlette app is compared with the same app bare, and the WebSocket echo
with what a user writes today: the same echo hand-written on gripcontrol in a Starlette route.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, get_grip_context

from ._harness import Batch, Result, Settings, interleave, median_difference

__all__ = (
    "GRIP_KEY",
    "GRIP_URL",
    "AsgiRequest",
    "FloorMiddleware",
    "asgi_batch",
    "bare_app",
    "call",
    "floor_app",
    "grip_token",
    "gripcontrol_app",
    "ours_app",
    "requests",
    "run",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

#: 32 bytes or more, so PyJWT does not warn on every gripcontrol check (landscape D10).
GRIP_KEY = "benchmark-grip-sig-key-0123456789"
GRIP_ISS = "pushpin"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss={GRIP_ISS}&verify-key={GRIP_KEY}"


def grip_token(exp_offset: int = 3600) -> str:
    """A ``Grip-Sig`` as Pushpin makes it: HS256, ``iss`` and ``exp``."""
    claims = {"iss": GRIP_ISS, "exp": int(time.time()) + exp_offset}
    return jwt.encode(claims, GRIP_KEY, algorithm="HS256")


# What a typical HTTP client sends; Pushpin passes them on (plus Grip-Sig and friends).
_CLIENT_HEADERS = (
    (b"host", b"testserver"),
    (b"user-agent", b"python-httpx/0.28.1"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"x-forwarded-for", b"127.0.0.1"),
)


@dataclass(frozen=True)
class AsgiRequest:
    method: str
    path: str
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""
    scope: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = [*_CLIENT_HEADERS, *self.headers]
        if self.body:
            headers.append((b"content-length", str(len(self.body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        object.__setattr__(self, "scope", scope)


def requests(token: str) -> dict[str, AsgiRequest]:
    """The benchmark's requests, signed with ``token`` where signed."""
    sig = (b"grip-sig", token.encode())
    events = (b"content-type", b"application/websocket-events")
    return {
        "plain": AsgiRequest("GET", "/plain"),
        "signed": AsgiRequest("GET", "/plain", [sig]),
        "hold": AsgiRequest("GET", "/hold", [sig]),
        "echo": AsgiRequest(
            "POST",
            "/echo",
            [sig, events, (b"connection-id", b"bench-1"), (b"meta-user", b"alice")],
            b"TEXT 5\r\nhello\r\n",
        ),
    }


# --- The apps ------------------------------------------------------------------------------


async def plain(request: Request) -> Response:
    return PlainTextResponse("hello\n")


async def hold(request: Request) -> Response:
    grip = getattr(request.state, "grip", None)
    if grip is not None and grip.is_proxied:
        grip.start_instruct().add_channel("room").set_hold_stream()
    return PlainTextResponse("[stream open]\n")


async def echo(request: Request) -> Response:
    """The example's echo (examples/starlette_app.py)."""
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse("Not a WebSocket-over-HTTP request\n", status_code=400)
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    return Response()


async def gripcontrol_echo(request: Request) -> Response:
    """The same echo as a user writes it today on gripcontrol, in a Starlette route."""
    from gripcontrol import (
        WebSocketContext,
        WebSocketEvent,
        decode_websocket_events,
        encode_websocket_events,
        validate_sig,
    )

    sig = request.headers.get("grip-sig")
    if sig is None or not validate_sig(sig, GRIP_KEY, iss=GRIP_ISS):
        return PlainTextResponse("Not proxied\n", status_code=403)
    if request.headers.get("content-type") != "application/websocket-events":
        return PlainTextResponse("Not a WebSocket-over-HTTP request\n", status_code=400)
    meta = {name[5:]: value for name, value in request.headers.items() if name.startswith("meta-")}
    try:
        events = decode_websocket_events(await request.body())
    except ValueError:
        return PlainTextResponse("Bad WebSocket events\n", status_code=400)
    ws = WebSocketContext(request.headers["connection-id"], meta, events)
    if ws.is_opening():
        ws.accept()
    while ws.can_recv():
        message = ws.recv()
        if message is None:
            ws.close()
            break
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    out = [WebSocketEvent("OPEN")] if ws.accepted else []
    out += ws.out_events
    if ws.closed:
        out.append(WebSocketEvent("CLOSE", struct.pack(">H", ws.out_close_code)))
    headers = {"Sec-WebSocket-Extensions": "grip"} if ws.accepted else {}
    return Response(
        encode_websocket_events(out), media_type="application/websocket-events", headers=headers
    )


def _routes(echo_view: Callable[[Request], Awaitable[Response]]) -> list[Route]:
    return [
        Route("/plain", plain),
        Route("/hold", hold),
        Route("/echo", echo_view, methods=["POST"]),
    ]


def bare_app() -> Starlette:
    return Starlette(routes=_routes(echo))


def ours_app() -> Starlette:
    return Starlette(routes=_routes(echo), middleware=[Middleware(GripMiddleware, grip=GRIP_URL)])


def gripcontrol_app() -> Starlette:
    return Starlette(routes=_routes(gripcontrol_echo))


class FloorMiddleware:
    """A yardstick, not a GRIP implementation: the least any GRIP middleware must do.

    It finds ``Grip-Sig`` among the headers, looks the token up in a dict of tokens that
    verified, puts a context object in ``scope["state"]`` and wraps ``send`` so that it could
    add ``Grip-*`` headers. It parses nothing else, checks no limit and keeps no instruct, so
    what it costs bounds from below what any middleware can reach on this machine.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.verified = {token: time.time() + 3600}

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        token = None
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"grip-sig":
                    token = value.decode()
        state = scope.setdefault("state", {})
        if token is None:
            state["grip"] = None
            await self.app(scope, receive, send)
            return
        exp = self.verified.get(token)
        grip_headers: list[tuple[bytes, bytes]] = []  # where a handler's instruct would go
        state["grip"] = (exp is not None and exp > time.time(), grip_headers)

        async def grip_send(message: Message) -> None:
            if message["type"] == "http.response.start" and grip_headers:
                message = {**message, "headers": [*message["headers"], *grip_headers]}
            await send(message)

        await self.app(scope, receive, grip_send)


def floor_app(token: str) -> Starlette:
    return Starlette(routes=_routes(echo), middleware=[Middleware(FloorMiddleware, token=token)])


# --- Driving them --------------------------------------------------------------------------


async def call(app: ASGIApp, request: AsgiRequest) -> tuple[int, dict[str, str], bytes]:
    """One request through ``app``: its status, headers and body."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(request.scope), receive, send)
    start = sent[0]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", ())}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body


def asgi_batch(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, cycle: Sequence[AsgiRequest]
) -> Batch:
    """A batch that sends ``n`` requests through ``app``, taking them from ``cycle`` in turn."""
    scopes = [request.scope for request in cycle]
    receivers = [_receiver(request.body) for request in cycle]

    async def run(n: int) -> None:
        count = len(scopes)
        for i in range(n):
            await app(dict(scopes[i % count]), receivers[i % count], _discard)

    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


async def _discard(message: Message) -> None:
    pass


def _receiver(body: bytes) -> Callable[[], Awaitable[Message]]:
    # The apps here read the body once and never wait for a disconnect.
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> Message:
        return message

    return receive


def _expect(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, request: AsgiRequest, status: int, **checks: str
) -> None:
    got_status, headers, body = loop.run_until_complete(call(app, request))
    if got_status != status or any(
        headers.get(k.replace("_", "-")) != v for k, v in checks.items()
    ):
        raise AssertionError(f"{request.path}: unexpected reply {got_status} {headers} {body!r}")


def run(settings: Settings) -> list[Result]:
    loop = asyncio.new_event_loop()
    try:
        return _run(loop, settings)
    finally:
        loop.close()


def _run(loop: asyncio.AbstractEventLoop, settings: Settings) -> list[Result]:
    bare, ours, anchor = bare_app(), ours_app(), gripcontrol_app()
    token = grip_token()
    floor = floor_app(token)
    reqs = requests(token)
    # Tokens that are all different: every check misses the verified-token cache.
    fresh = [requests(grip_token(3600 + i))["signed"] for i in range(1000)]
    _expect(loop, ours, reqs["hold"], 200, grip_hold="stream")
    _expect(loop, bare, reqs["hold"], 200)
    echo_reply = {"content_type": "application/websocket-events"}
    _expect(loop, ours, reqs["echo"], 200, **echo_reply)
    _expect(loop, anchor, reqs["echo"], 200, **echo_reply)
    if loop.run_until_complete(call(ours, reqs["echo"]))[2] != b"TEXT 7\r\nm:hello\r\n":
        raise AssertionError("the echo did not echo")

    results = []
    for workload, key, target in (
        ("no GRIP headers", "plain", 0.95),
        ("signed (HS256 Grip-Sig)", "signed", 0.85),
        ("signed hold (instruct)", "hold", None),
    ):
        candidates = {
            "ours": asgi_batch(loop, ours, [reqs[key]]),
            "bare": asgi_batch(loop, bare, [reqs[key]]),
        }
        if target is not None:
            candidates["floor"] = asgi_batch(loop, floor, [reqs[key]])
        times = interleave(candidates, settings)
        results.append(_versus_bare(workload, times, target))
    times = interleave(
        {"ours": asgi_batch(loop, ours, fresh), "bare": asgi_batch(loop, bare, fresh)}, settings
    )
    results.append(_versus_bare("signed, new token every request", times, None))
    times = interleave(
        {
            "ours": asgi_batch(loop, ours, [reqs["echo"]]),
            "anchor": asgi_batch(loop, anchor, [reqs["echo"]]),
        },
        settings,
    )
    results.append(
        Result(
            "asgi",
            "WebSocket-over-HTTP echo",
            1e9 / statistics.median(times["ours"]),
            1e9 / statistics.median(times["anchor"]),
            "req/s",
            higher_is_better=True,
            target=1.5,
            anchor_name="gripcontrol in a route",
        )
    )
    return results


def _versus_bare(workload: str, times: dict[str, list[float]], target: float | None) -> Result:
    added = median_difference(times["ours"], times["bare"]) / 1000
    note = f"GripMiddleware adds {added:.1f} us per request"
    if "floor" in times:
        floor_added = median_difference(times["floor"], times["bare"]) / 1000
        floor_ratio = statistics.median(times["bare"]) / statistics.median(times["floor"])
        note += (
            f"; the least a GRIP layer can do (FloorMiddleware) adds {floor_added:.1f} us"
            f" ({floor_ratio:.2f}x the bare app)"
        )
    return Result(
        "asgi",
        workload,
        1e9 / statistics.median(times["ours"]),
        1e9 / statistics.median(times["bare"]),
        "req/s",
        higher_is_better=True,
        target=target,
        anchor_name="bare Starlette",
        note=note,
    )
