"""GripMiddleware under Quart, installed as ``app.asgi_app = GripMiddleware(app.asgi_app)``.

Handlers read ``get_grip_context(request)``: Quart's ``request`` carries the ASGI scope.
Lifespan events pass through ``asgi_app``, so the middleware's publisher is closed at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from quart import Quart, Response, request
from quart.testing import QuartClient
from quart.typing import ResponseReturnValue

from grip_asgi import GripMiddleware, WebSocketEvent, encode_websocket_events, get_grip_context
from grip_asgi.middleware import Message
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

KEY = "quart-verify-key"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}"
proxy = GripTestProxy(key=KEY)
NOT_PROXIED = "connect through the GRIP proxy\n"


def quart_app() -> Quart:
    app = Quart(__name__)
    app.asgi_app = GripMiddleware(app.asgi_app, grip=GRIP_URL)  # type: ignore[method-assign]

    @app.get("/stream")
    async def stream() -> ResponseReturnValue:
        grip = get_grip_context(request)
        if not grip.is_proxied:
            return NOT_PROXIED, 501
        grip.start_instruct().add_channel("news").set_hold_stream()
        return "[stream open]\n"

    @app.post("/echo")
    async def echo() -> ResponseReturnValue:
        ws = get_grip_context(request).ws
        if ws is None:
            return "not a WebSocket-over-HTTP request\n", 400
        if ws.is_opening():
            ws.accept()
            ws.subscribe("room")
        async for message in ws:
            ws.send(message)
        return ""

    @app.get("/generated")
    async def generated() -> ResponseReturnValue:
        get_grip_context(request).start_instruct().add_channel("gen").set_hold_stream()
        first_chunk_sent: anyio.Event = request.scope["state"]["first_chunk_sent"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b"one\n"
            # Goes on only once the server got the first chunk: nothing buffers the stream.
            await first_chunk_sent.wait()
            yield b"two\n"

        return Response(chunks(), mimetype="text/plain")

    return app


@dataclass
class Reply:
    """A Quart test response with its body read, for grip_asgi.testing's readers."""

    status_code: int
    headers: Any
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()


async def fetch(
    client: QuartClient, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> Reply:
    response = await client.open(path, method=method, headers=headers, data=body)
    return Reply(response.status_code, response.headers, await response.get_data(as_text=False))


@pytest.fixture
def client() -> QuartClient:
    client = quart_app().test_client()
    assert isinstance(client, QuartClient)
    return client


@pytest.mark.anyio
async def test_stream_hold(client: QuartClient) -> None:
    response = await fetch(client, "GET", "/stream", proxy.headers())
    instruct = read_instruct(response)
    assert instruct.hold == "stream" and instruct.channel_names == ["news"]
    assert response.content == b"[stream open]\n"


@pytest.mark.anyio
async def test_websocket_echo(client: QuartClient) -> None:
    request = proxy.websocket(open_event(), text_event("one"), text_event("twö"))
    reply = read_websocket_reply(
        await fetch(client, "POST", "/echo", request.headers, request.content)
    )
    assert reply.accepted and reply.grip_extension
    assert reply.messages == ["one", "twö"]
    assert reply.subscriptions == ["room"]


@pytest.mark.anyio
async def test_websocket_reply_as_the_server_sees_it() -> None:
    request = proxy.websocket(text_event("hi"), close_event(1000, "done"))
    scope = http_scope("POST", "/echo", request.headers)
    sent = await call_app(quart_app(), scope, request.content)
    body = b"".join(chunk for chunk, _ in body_messages(sent))
    assert body == encode_websocket_events(
        [WebSocketEvent("TEXT", b"m:hi"), close_event(1000, "done")]
    )
    headers = start_headers(sent)
    assert headers["content-type"] == "application/websocket-events"
    assert headers["content-length"] == str(len(body))
    assert sent[0]["status"] == 200


@pytest.mark.anyio
async def test_malformed_websocket_body_is_a_400(client: QuartClient) -> None:
    request = proxy.websocket()
    response = await fetch(client, "POST", "/echo", request.headers, b"TEXT zz\r\n")
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "size" in response.text


UNPROXIED = {"unsigned": {}, "forged": {"Grip-Sig": make_grip_sig("not-the-key")}}


@pytest.mark.anyio
@pytest.mark.parametrize("headers", UNPROXIED.values(), ids=UNPROXIED.keys())
async def test_unproxied_requests_are_not_proxied(
    client: QuartClient, headers: dict[str, str]
) -> None:
    response = await fetch(client, "GET", "/stream", headers)
    assert response.status_code == 501 and response.text == NOT_PROXIED
    assert not any(name.lower().startswith("grip-") for name, _ in response.headers.items())
    websocket = proxy.websocket(open_event())
    websocket.headers.pop("Grip-Sig")
    ws_response = await fetch(client, "POST", "/echo", {**websocket.headers, **headers})
    assert ws_response.status_code == 400
    assert ws_response.text == "not a WebSocket-over-HTTP request\n"


@pytest.mark.anyio
async def test_async_generator_response_leaves_chunk_by_chunk() -> None:
    first_chunk_sent = anyio.Event()

    def on_send(message: Message) -> None:
        if message.get("body") == b"one\n":
            first_chunk_sent.set()

    scope = http_scope("GET", "/generated", proxy.headers())
    scope["state"] = {"first_chunk_sent": first_chunk_sent}
    sent = await call_app(quart_app(), scope, on_send=on_send)
    headers = start_headers(sent)
    assert headers["grip-hold"] == "stream" and headers["grip-channel"] == "gen"
    chunks = [chunk for chunk in body_messages(sent) if chunk[0]]
    assert chunks == [(b"one\n", True), (b"two\n", True)]
    assert body_messages(sent)[-1] == (b"", False)


@pytest.mark.anyio
async def test_lifespan_reaches_the_middleware() -> None:
    app = quart_app()
    middleware = app.asgi_app
    assert isinstance(middleware, GripMiddleware)
    before = middleware.publisher
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert isinstance(client, QuartClient)
        response = await fetch(client, "GET", "/stream", proxy.headers())
        assert read_instruct(response).hold == "stream"
    # Shutdown closed the publisher and left a fresh one.
    assert before.closed and middleware.publisher is not before
