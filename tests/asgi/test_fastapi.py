"""FastAPI and Starlette apps with GripMiddleware, through their TestClient."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, Publisher
from grip_asgi.fastapi import Grip, GripPublisher, GripWebSocket
from grip_asgi.testing import (
    GripTestProxy,
    RecordingPublisher,
    close_event,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)

KEY = "secret-key-for-tests"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}"
proxy = GripTestProxy(key=KEY)


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(GripMiddleware, grip=GRIP_URL, prefix="p-")

    @app.get("/stream/{channel}")
    async def stream(channel: str, grip: Grip) -> PlainTextResponse:
        instruct = grip.start_instruct().add_channel(channel).set_hold_stream()
        instruct.set_keep_alive("ping\n", 20)
        return PlainTextResponse("[open]\n")

    @app.get("/poll")
    def poll(grip: Grip) -> PlainTextResponse:  # a sync handler: runs in the thread pool
        grip.start_instruct().add_channel("lp", prev_id="7").set_hold_longpoll(timeout=30)
        return PlainTextResponse("timeout\n")

    @app.get("/generated")
    async def generated(grip: Grip) -> StreamingResponse:
        grip.start_instruct().add_channel("gen").set_hold_stream()

        async def chunks():
            yield b"a\n"
            yield b"b\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/echo")
    async def echo(ws: GripWebSocket) -> None:
        if ws.is_opening():
            ws.accept()
        async for message in ws:
            ws.send(message)

    @app.post("/sync-echo")
    def sync_echo(ws: GripWebSocket) -> None:
        if ws.is_opening():
            ws.accept()
            ws.subscribe("room")
        for message in ws:
            ws.send(message)

    @app.get("/publisher")
    async def publisher(publisher: GripPublisher) -> dict[str, str]:
        assert isinstance(publisher, Publisher)
        return {"ok": "yes"}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(fastapi_app())


def test_stream_hold_headers_reach_the_proxy(client: TestClient) -> None:
    response = client.get("/stream/news", headers=proxy.headers())
    instruct = read_instruct(response)
    assert instruct.hold == "stream"
    assert instruct.channel_names == ["p-news"]
    assert instruct.keep_alive is not None and instruct.keep_alive.data == b"ping\n"
    assert response.text == "[open]\n"


def test_sync_handler_long_poll(client: TestClient) -> None:
    instruct = read_instruct(client.get("/poll", headers=proxy.headers()))
    assert instruct.hold == "response" and instruct.timeout == 30
    assert instruct.channels[0].prev_id == "7"


def test_streaming_response_body_is_untouched(client: TestClient) -> None:
    response = client.get("/generated", headers=proxy.headers())
    assert read_instruct(response).hold == "stream"
    assert response.content == b"a\nb\n"


def test_direct_client_cannot_start_an_instruct(client: TestClient) -> None:
    with pytest.raises(Exception, match="did not come through a GRIP proxy"):
        client.get("/stream/news")


@pytest.mark.parametrize("path", ["/echo", "/sync-echo"])
def test_websocket_echo(client: TestClient, path: str) -> None:
    request = proxy.websocket(open_event(), text_event("one"), text_event("two"))
    reply = read_websocket_reply(client.post(path, **request.kwargs()))
    assert reply.accepted and reply.grip_extension
    assert reply.messages == ["one", "two"]
    assert reply.subscriptions == (["p-room"] if path == "/sync-echo" else [])


def test_websocket_close_from_client_is_echoed(client: TestClient) -> None:
    request = proxy.websocket(close_event(1001, "going"))
    reply = read_websocket_reply(client.post("/echo", **request.kwargs()))
    assert reply.close_code == 1001


def test_websocket_dependency_answers_400_to_plain_requests(client: TestClient) -> None:
    response = client.post("/echo", headers=proxy.headers(), content=b"hello")
    assert response.status_code == 400
    assert "Not a WebSocket-over-HTTP request" in response.text


def test_publisher_dependency(client: TestClient) -> None:
    assert client.get("/publisher").json() == {"ok": "yes"}


def test_malformed_events_body_is_a_400(client: TestClient) -> None:
    request = proxy.websocket()
    response = client.post("/echo", headers=request.headers, content=b"TEXT zz\r\n")
    assert response.status_code == 400
    assert "size" in response.text


def test_starlette_example_app(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stream(request: Request) -> Response:
        request.state.grip.start_instruct().add_channel("s").set_hold_stream()
        return Response("[open]\n")

    app = Starlette(
        routes=[Route("/stream", stream)],
        middleware=[Middleware(GripMiddleware, grip=GRIP_URL)],
    )
    with TestClient(app) as client:  # runs the lifespan, which closes the publisher
        response = client.get("/stream", headers=proxy.headers())
    assert read_instruct(response).channel_names == ["s"]


def test_read_websocket_reply_refuses_a_non_websocket_response() -> None:
    with pytest.raises(AssertionError, match="not a WebSocket-over-HTTP reply"):
        read_websocket_reply(httpx.Response(200, text="hi"))


def test_a_given_publisher_is_what_handlers_get_and_is_not_closed() -> None:
    recorder = RecordingPublisher(prefix="p-")
    app = FastAPI()
    app.add_middleware(GripMiddleware, grip=GRIP_URL, publisher=recorder)

    @app.post("/say")
    async def say(publisher: GripPublisher) -> dict[str, str]:
        await publisher.publish_text("room", "hi")
        return {"ok": "yes"}

    with TestClient(app) as client:
        assert client.post("/say").json() == {"ok": "yes"}
    assert recorder.published == [
        {
            "channel": "p-room",
            "formats": {
                "ws-message": {"content": "hi"},
                "http-stream": {"content": "data: hi\n\n"},
                "http-response": {"body": "hi\n"},
            },
        }
    ]
    assert not recorder.closed  # the lifespan ended, but the publisher is the caller's
