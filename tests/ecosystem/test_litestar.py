"""GripMiddleware under Litestar: as Litestar middleware, and wrapped around the whole app.

What a Litestar app needs to know, shown here:

- ``request.state.grip`` works: Litestar's ``request.state`` wraps ``scope["state"]``
  without copying it. ``get_grip_context(request)`` works too.
- Middleware in ``Litestar(middleware=[...])`` is built once per route handler, and the
  lifespan does not reach it: each route has its own publisher, never closed. Wrapping the
  app, ``GripMiddleware(Litestar(...))``, gives one middleware, whose publisher the lifespan
  closes.
- A ``@post`` handler answers 201 unless told otherwise; any 2xx reply to a
  WebSocket-over-HTTP request is replaced by its events, so that works as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from litestar import Litestar, Request, get, post
from litestar.middleware import DefineMiddleware
from litestar.response import Response, Stream
from litestar.testing import TestClient

from grip_asgi import GripContext, GripMiddleware, Publisher, get_grip_context, get_publisher
from grip_asgi.middleware import ASGIApp, Message
from grip_asgi.testing import (
    GripTestProxy,
    close_event,
    make_grip_sig,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)

from . import body_messages, call_app, http_scope, start_headers

KEY = "litestar-verify-key"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}"
proxy = GripTestProxy(key=KEY)
NOT_PROXIED = "connect through the GRIP proxy\n"
AnyRequest = Request[Any, Any, Any]


@get("/stream")
async def stream(request: AnyRequest) -> Response[str]:
    grip: GripContext = request.state.grip
    if not grip.is_proxied:
        return Response(NOT_PROXIED, status_code=501)
    grip.start_instruct().add_channel("news").set_hold_stream()
    return Response("[stream open]\n")


@post("/echo", status_code=200)
async def echo(request: AnyRequest) -> Response[str] | None:
    ws = get_grip_context(request).ws
    if ws is None:
        return Response("not a WebSocket-over-HTTP request\n", status_code=400)
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")
    async for message in ws:
        ws.send(message)
    return None


@post("/echo-201")
async def echo_201(request: AnyRequest) -> None:
    ws = get_grip_context(request).ws
    assert ws is not None
    ws.accept()
    async for message in ws:
        ws.send(message)


@get("/generated")
async def generated(request: AnyRequest) -> Stream:
    get_grip_context(request).start_instruct().add_channel("gen").set_hold_stream()
    first_chunk_sent: anyio.Event = request.state.first_chunk_sent

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one\n"
        # Goes on only once the server got the first chunk: nothing buffers the stream.
        await first_chunk_sent.wait()
        yield b"two\n"

    return Stream(chunks(), media_type="text/plain")


HANDLERS = [stream, echo, echo_201, generated]


def litestar(handlers: list[Any], *, grip_middleware: bool = False) -> Litestar:
    return Litestar(
        handlers,
        middleware=[DefineMiddleware(GripMiddleware, grip=GRIP_URL)] if grip_middleware else [],
        # Litestar's default logging config reconfigures the process's logging (httpx at INFO,
        # its own handlers), which would leak into every later test that checks log records.
        logging_config=None,
    )


def with_litestar_middleware() -> Litestar:
    return litestar(HANDLERS, grip_middleware=True)


def wrapped_app() -> ASGIApp:
    return GripMiddleware(litestar(HANDLERS), grip=GRIP_URL)


APPS = pytest.mark.parametrize(
    "make_app", [with_litestar_middleware, wrapped_app], ids=["DefineMiddleware", "wrapped"]
)


@APPS
def test_stream_hold(make_app: Callable[[], ASGIApp]) -> None:
    with TestClient(make_app()) as client:
        response = client.get("/stream", headers=proxy.headers())
    instruct = read_instruct(response)
    assert instruct.hold == "stream" and instruct.channel_names == ["news"]
    assert response.content == b"[stream open]\n"
    assert response.headers["content-length"] == "14"


@APPS
def test_websocket_echo(make_app: Callable[[], ASGIApp]) -> None:
    request = proxy.websocket(open_event(), text_event("one"), text_event("twö"))
    with TestClient(make_app()) as client:
        response = client.post("/echo", **request.kwargs())
    assert response.headers["content-type"] == "application/websocket-events"
    assert response.headers["content-length"] == str(len(response.content))
    reply = read_websocket_reply(response)
    assert reply.accepted and reply.grip_extension
    assert reply.messages == ["one", "twö"]
    assert reply.subscriptions == ["room"]


def test_websocket_close_is_echoed() -> None:
    request = proxy.websocket(close_event(1001, "gone"))
    with TestClient(with_litestar_middleware()) as client:
        reply = read_websocket_reply(client.post("/echo", **request.kwargs()))
    assert reply.close_code == 1001 and reply.close_reason == "gone"


def test_a_201_reply_is_replaced_too() -> None:
    # Litestar's default for @post: the queued events still reach the proxy, as a 200.
    request = proxy.websocket(open_event(), text_event("hi"))
    with TestClient(with_litestar_middleware()) as client:
        reply = read_websocket_reply(client.post("/echo-201", **request.kwargs()))
    assert reply.accepted and reply.messages == ["hi"]


@APPS
def test_malformed_websocket_body_is_a_400(make_app: Callable[[], ASGIApp]) -> None:
    request = proxy.websocket()
    with TestClient(make_app()) as client:
        response = client.post("/echo", headers=request.headers, content=b"TEXT zz\r\n")
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "size" in response.text


UNPROXIED = {"unsigned": {}, "forged": {"Grip-Sig": make_grip_sig("not-the-key")}}


@APPS
@pytest.mark.parametrize("headers", UNPROXIED.values(), ids=UNPROXIED.keys())
def test_unproxied_requests_are_not_proxied(
    make_app: Callable[[], ASGIApp], headers: dict[str, str]
) -> None:
    with TestClient(make_app()) as client:
        response = client.get("/stream", headers=headers)
        websocket = proxy.websocket(open_event())
        websocket.headers.pop("Grip-Sig")
        websocket.headers.update(headers)
        ws_response = client.post("/echo", **websocket.kwargs())
    assert response.status_code == 501 and response.text == NOT_PROXIED
    assert not any(name.startswith("grip-") for name in response.headers)
    assert ws_response.status_code == 400
    assert ws_response.text == "not a WebSocket-over-HTTP request\n"


@APPS
@pytest.mark.anyio
async def test_stream_response_leaves_chunk_by_chunk(make_app: Callable[[], ASGIApp]) -> None:
    first_chunk_sent = anyio.Event()

    def on_send(message: Message) -> None:
        if message.get("body") == b"one\n":
            first_chunk_sent.set()

    scope = http_scope("GET", "/generated", proxy.headers())
    scope["state"] = {"first_chunk_sent": first_chunk_sent}
    sent = await call_app(make_app(), scope, on_send=on_send)
    headers = start_headers(sent)
    assert headers["grip-hold"] == "stream" and headers["grip-channel"] == "gen"
    assert body_messages(sent) == [(b"one\n", True), (b"two\n", True), (b"", False)]


@pytest.mark.parametrize(
    ("wrap", "publishers", "closed_at_shutdown"),
    [(False, 2, False), (True, 1, True)],
    ids=["DefineMiddleware", "wrapped"],
)
def test_publisher_per_install_style(wrap: bool, publishers: int, closed_at_shutdown: bool) -> None:
    seen: list[Publisher] = []

    @get("/a")
    async def a(request: AnyRequest) -> str:
        seen.append(get_publisher(request))
        return "a"

    @get("/b")
    async def b(request: AnyRequest) -> str:
        seen.append(get_publisher(request))
        return "b"

    if wrap:
        app: ASGIApp = GripMiddleware(litestar([a, b]), grip=GRIP_URL)
    else:
        app = litestar([a, b], grip_middleware=True)
    with TestClient(app) as client:  # runs the lifespan
        client.get("/a")
        client.get("/b")
    assert len({id(publisher) for publisher in seen}) == publishers
    assert [publisher.closed for publisher in seen] == [closed_at_shutdown] * 2
