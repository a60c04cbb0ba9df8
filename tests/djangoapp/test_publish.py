"""publish() and apublish() against a real HTTP server standing in for the proxy's endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path

from grip_asgi._errors import PublishError
from grip_asgi._publish import HttpStreamFormat, Item, WebSocketMessageFormat
from grip_django import apublish, get_async_publisher, get_publisher, publish
from grip_django.publish import reset_publishers


class PublishEndpoint(ThreadingHTTPServer):
    """Records every publish; answers ``status`` (200 ``Published``, as Pushpin does)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.items: list[dict[str, Any]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: PublishEndpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/publish/"
        self.server.items.extend(json.loads(body)["items"])
        reply = b"Published\n" if self.server.status == 200 else b"Bad item\n"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[PublishEndpoint]:
    server = PublishEndpoint()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        with override_settings(GRIP_URL=server.url, GRIP_PREFIX="app-"):
            yield server
    finally:
        reset_publishers()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_publish_sends_the_item_with_the_prefix(endpoint: PublishEndpoint) -> None:
    publish("news", HttpStreamFormat("hello\n"), id="2", prev_id="1", meta={"sender": "ann"})
    assert endpoint.items == [
        {
            "channel": "app-news",
            "id": "2",
            "prev-id": "1",
            "formats": {"http-stream": {"content": "hello\n"}},
            "meta": {"sender": "ann"},
        }
    ]


def test_publish_takes_an_item_and_reuses_one_publisher(endpoint: PublishEndpoint) -> None:
    publisher = get_publisher()
    publish("a", Item(WebSocketMessageFormat("hi"), no_seq=True))
    assert get_publisher() is publisher
    assert endpoint.items[0]["no-seq"] is True


def test_publish_failure_raises(endpoint: PublishEndpoint) -> None:
    endpoint.status = 400
    with pytest.raises(PublishError) as info:
        publish("a", WebSocketMessageFormat("hi"))
    assert info.value.status == 400 and "Bad item" in info.value.body


@pytest.mark.anyio
async def test_apublish(endpoint: PublishEndpoint) -> None:
    await apublish("room", [WebSocketMessageFormat("hi"), HttpStreamFormat("hi\n")])
    assert endpoint.items[0]["channel"] == "app-room"
    assert set(endpoint.items[0]["formats"]) == {"ws-message", "http-stream"}
    publisher = get_async_publisher()
    assert get_async_publisher() is publisher


def test_each_event_loop_gets_its_own_async_publisher(endpoint: PublishEndpoint) -> None:
    async def publish_and_get() -> Any:
        await apublish("room", WebSocketMessageFormat("hi"))
        return get_async_publisher()

    first, second = asyncio.run(publish_and_get()), asyncio.run(publish_and_get())
    assert first is not second
    assert len(endpoint.items) == 2


def test_get_async_publisher_outside_an_event_loop_says_what_to_use() -> None:
    with pytest.raises(RuntimeError, match="use get_publisher"):
        get_async_publisher()


def test_a_settings_change_replaces_and_closes_the_sync_publisher(
    endpoint: PublishEndpoint,
) -> None:
    publisher = get_publisher()
    with override_settings(GRIP_PREFIX="other-"):
        assert get_publisher() is not publisher
        with pytest.raises(RuntimeError, match="closed"):
            publisher.publish("a", WebSocketMessageFormat("hi"))
        publish("a", WebSocketMessageFormat("hi"))
    assert endpoint.items[0]["channel"] == "other-a"


@pytest.mark.anyio
async def test_a_settings_change_closes_the_async_publisher_on_its_running_loop(
    endpoint: PublishEndpoint,
) -> None:
    publisher = get_async_publisher()
    await publisher.publish("a", WebSocketMessageFormat("hi"))
    with override_settings(GRIP_PREFIX="other-"):
        assert get_async_publisher() is not publisher
    await asyncio.sleep(0)  # the close runs as a task on this loop
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        await publisher.publish("a", WebSocketMessageFormat("hi"))


def test_a_reset_closes_an_async_publisher_of_a_loop_in_another_thread(
    endpoint: PublishEndpoint,
) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def get() -> Any:
            return get_async_publisher()

        publisher = asyncio.run_coroutine_threadsafe(get(), loop).result(5)
        reset_publishers()

        async def closed() -> bool:
            for _ in range(100):
                try:
                    await publisher.publish("a", WebSocketMessageFormat("hi"))
                except RuntimeError:
                    return True
                await asyncio.sleep(0.01)
            return False

        assert asyncio.run_coroutine_threadsafe(closed(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_reset_skips_publishers_of_finished_loops(endpoint: PublishEndpoint) -> None:
    loop = asyncio.new_event_loop()

    async def get() -> Any:
        return get_async_publisher()

    publisher = loop.run_until_complete(get())
    reset_publishers()  # the loop is not running: nothing can close the publisher now
    loop.close()
    assert publisher is not None


def test_a_process_that_only_publishes_builds_no_request_verifier(
    endpoint: PublishEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that publishes never sees requests: no warning about unverified Grip-Sig."""
    publish("a", WebSocketMessageFormat("hi"))
    assert endpoint.items and "pose as the proxy" not in caplog.text


# --- Which call is safe where: async views under WSGI and ASGI (issue 16) ----------------------


async def nowait_view(request: HttpRequest, count: int) -> HttpResponse:
    publisher = get_async_publisher()
    try:
        for n in range(count):
            publisher.publish_nowait("news", WebSocketMessageFormat(str(n)))
    except RuntimeError as exc:
        return HttpResponse(str(exc), status=409)
    return HttpResponse("queued")


async def apublish_view(request: HttpRequest, count: int) -> HttpResponse:
    for n in range(count):
        await apublish("news", WebSocketMessageFormat(str(n)))
    return HttpResponse("published")


urlpatterns = [path("nowait/<int:count>", nowait_view), path("apublish/<int:count>", apublish_view)]
here = override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1", "testserver"])


class _QuietWSGIRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_server(endpoint: PublishEndpoint) -> Iterator[str]:
    """Django's WSGIHandler behind wsgiref's server: each async view runs on a loop of its own."""
    with here:
        server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_QuietWSGIRequestHandler)
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def published(endpoint: PublishEndpoint) -> list[str]:
    return [item["formats"]["ws-message"]["content"] for item in endpoint.items]


def test_publish_nowait_in_an_async_view_under_wsgi_is_refused(
    wsgi_server: str, endpoint: PublishEndpoint
) -> None:
    """Each view's loop closes when the view returns: queued items would never go out."""
    response = httpx.get(wsgi_server + "/nowait/3", timeout=10)
    assert (response.status_code, published(endpoint)) == (409, [])
    assert "await apublish()" in response.text
    assert "closes when the call returns" in response.text


def test_apublish_in_an_async_view_under_wsgi_delivers_every_item(
    wsgi_server: str, endpoint: PublishEndpoint
) -> None:
    response = httpx.get(wsgi_server + "/apublish/3", timeout=10)
    assert (response.status_code, published(endpoint)) == (200, ["0", "1", "2"])


def test_publish_nowait_in_an_async_view_under_asgi_delivers_every_item(
    endpoint: PublishEndpoint,
) -> None:
    """Under ASGI every request runs on the server's one loop, which outlives the view."""

    async def serve_one_request() -> list[Mapping[str, Any]]:
        disconnected = asyncio.Event()
        requests = [{"type": "http.request", "body": b"", "more_body": False}]
        sent: list[Mapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/nowait/3",
            "raw_path": b"/nowait/3",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        with here:
            await ASGIHandler()(scope, receive, send)
        disconnected.set()
        await asyncio.wait_for(get_async_publisher().aclose(), 10)  # the server's shutdown
        return sent

    sent = asyncio.run(serve_one_request())
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"queued"
    assert published(endpoint) == ["0", "1", "2"]
