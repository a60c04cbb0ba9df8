"""publish() and apublish() against a real HTTP server standing in for the proxy's endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

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
