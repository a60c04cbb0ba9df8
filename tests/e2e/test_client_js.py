"""The browser client, grip_asgi/static/grip-client.js, in a real headless Chromium.

The servers are scripted: a real `websockets` server on loopback (tests/test_client.py's
:class:`ScriptedServer`) serves the page and the script and plays the server's side of the
reliable WebSocket protocol, and a small asyncio HTTP server does the same for SSE, with
composite ids. Each test checks what the page delivered and what the client sent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from playwright.async_api import Browser, Page, async_playwright

import grip_asgi

from ..test_client import ScriptedServer, batch, event, recv_json, reset, resumed_at, sync, tip
from .test_browser import CHROMIUM, CHROMIUM_ARGS

TIMEOUT = 30  # seconds any one test may take, the browser's start-up included
SCRIPT = (Path(grip_asgi.__file__).parent / "static" / "grip-client.js").read_bytes()
PAGE = b'<!doctype html><meta charset="utf-8"><script src="/grip-client.js"></script>'
PAGES = {"/": ("text/html", PAGE), "/grip-client.js": ("text/javascript", SCRIPT)}

# Each page keeps what its client reported in window.seen.
RECORD = """
window.seen = {events: [], resets: [], messages: [], presence: [], statuses: [], closes: []};
const record = {
  onevent: (e) => seen.events.push(e),
  onreset: (r) => seen.resets.push(r),
  onmessage: (text) => seen.messages.push(text),
  onpresence: (p) => seen.presence.push(p.grip + ":" + (p.client || p.members.length)),
  onstatus: (s) => seen.statuses.push(s),
  onclose: (code, reason) => seen.closes.push([code, reason]),
};
"""
OPEN_SOCKET = RECORD + "window.client = new GripClient.ReliableSocket('/chat/room', record);"
# One that reconnects within a few hundredths of a second.
OPEN_FAST_SOCKET = (
    RECORD + "window.client = new GripClient.ReliableSocket('/chat/room', "
    "Object.assign({backoff: {min: 10, max: 50}}, record));"
)
OPEN_EVENT_SOURCE = (
    RECORD + "window.client = new GripClient.ReliableEventSource('/events', "
    "Object.assign({events: ['msg']}, record));"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-chromium", pytrace=False)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page whose script errors fail the test."""
    page = await browser.new_page()
    page.set_default_timeout(5_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await page.close()
    assert errors == []


async def seen(page: Page, what: str) -> Any:
    return await page.evaluate(f"window.seen.{what}")


async def wait_for(page: Page, condition: str) -> None:
    await page.wait_for_function(condition)


def event_ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in events]


# --- ReliableSocket ----------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer(PAGES) as scripted:
        yield scripted


async def open_socket(page: Page, server: ScriptedServer) -> None:
    await page.goto(f"http://{server.origin}/")
    await page.evaluate(OPEN_SOCKET)


@pytest.mark.anyio
async def test_socket_delivers_in_order_drops_duplicates_and_repairs_gaps(
    page: Page, server: ScriptedServer
) -> None:
    with anyio.fail_after(TIMEOUT):
        await open_socket(page, server)
        ws = await server.accept()
        assert ws.request is not None
        assert urlsplit(ws.request.path).path == "/chat/room"  # a path: ws: on the page's origin
        assert resumed_at(ws) is None
        for message in (event("room", 1), event("room", 2, "two", "msg"), event("room", 2)):
            await ws.send(message)
        await ws.send(event("room", 4))  # 3 is missing
        assert await recv_json(ws) == sync("room:2")
        for message in (event("room", 3), event("room", 4), tip(room=4)):
            await ws.send(message)
        await wait_for(page, "seen.events.length >= 4")
        # A tip ahead of the client: it syncs, and pages until it is caught up.
        await ws.send(tip(room=7))
        assert await recv_json(ws) == sync("room:4")
        await ws.send(event("room", 5))
        await ws.send(tip(room=7))
        assert await recv_json(ws) == sync("room:5")
        for message in (event("room", 6), event("room", 7), tip(room=7)):
            await ws.send(message)
        await wait_for(page, "seen.events.length >= 7")

        events = await seen(page, "events")
        assert event_ids(events) == [1, 2, 3, 4, 5, 6, 7]
        assert events[1] == {"channel": "room", "id": 2, "data": "two", "event": "msg"}
        stats = await page.evaluate("client.stats")
        assert stats == {
            "delivered": 7,
            "duplicates": 2,
            "repairs": 3,
            "reconnects": 0,
            "resets": 0,
        }
        assert await page.evaluate("client.positions") == {"room": 7}


@pytest.mark.anyio
async def test_socket_resumes_after_drops_and_after_a_page_reload(
    page: Page, server: ScriptedServer
) -> None:
    with anyio.fail_after(TIMEOUT):
        await open_socket(page, server)
        first = await server.accept()
        await first.send(event("room", 1))
        await first.send(event("room", 2))
        await wait_for(page, "seen.events.length >= 2")
        first.transport.abort()  # no close frame

        second = await server.accept()
        assert resumed_at(second) == "room:2"
        await second.send(event("room", 3))
        await wait_for(page, "seen.events.length >= 3")
        await second.close()  # a clean close is a drop too

        third = await server.accept()
        assert resumed_at(third) == "room:3"
        await wait_for(page, "client.state === 'open' && client.stats.reconnects === 2")
        assert "reconnecting" in await seen(page, "statuses")

        await page.reload()  # sessionStorage keeps the positions
        await page.evaluate(OPEN_SOCKET)
        fourth = await server.accept()
        assert resumed_at(fourth) == "room:3"
        await fourth.send(event("room", 3))
        await fourth.send(event("room", 4))
        await wait_for(page, "seen.events.length >= 1")
        assert event_ids(await seen(page, "events")) == [4]

        # send() reaches the server; close() ends the connection for good.
        assert await page.evaluate("client.send('hello')") is True
        with anyio.fail_after(5):
            assert await fourth.recv() == "hello"
        await page.evaluate("client.close()")
        await fourth.wait_closed()
        await wait_for(page, "client.state === 'closed'")
        assert await page.evaluate("client.send('late')") is False


@pytest.mark.anyio
async def test_socket_reports_resets_presence_and_the_applications_messages(
    page: Page, server: ScriptedServer
) -> None:
    with anyio.fail_after(TIMEOUT):
        await page.goto(f"http://{server.origin}/")
        await page.evaluate(
            "sessionStorage.setItem(location.origin.replace('http', 'ws') + "
            "'/chat/room', JSON.stringify({room: 10}))"
        )
        await page.evaluate(OPEN_SOCKET)
        ws = await server.accept()
        assert resumed_at(ws) == "room:10"
        ann = {"client": "c1", "user": "ann", "info": None}
        bob = {"client": "c2", "user": "bob", "info": {"color": "red"}}
        for message in (
            reset("room", 97),
            event("room", 98),
            json.dumps({"grip": "members", "channel": "room", "members": [ann]}),
            json.dumps({"grip": "join", "channel": "room", **bob}),
            json.dumps({"grip": "leave", "channel": "room", **ann}),
            "plain text",
            json.dumps({"note": "an app's JSON"}),
            reset("room", 97),  # repeated by a second reply: not a second loss
            event("room", 99),
        ):
            await ws.send(message)
        await wait_for(page, "seen.events.length >= 2")

        assert await seen(page, "resets") == [{"channel": "room", "id": 97}]
        assert event_ids(await seen(page, "events")) == [98, 99]
        assert await seen(page, "presence") == ["members:1", "join:c2", "leave:c1"]
        members = await page.evaluate("[...client.members.get('room').values()]")
        assert members == [bob]
        assert await seen(page, "messages") == ["plain text", '{"note": "an app\'s JSON"}']
        assert (await page.evaluate("client.stats"))["resets"] == 1


@pytest.mark.anyio
async def test_socket_handles_each_event_of_a_batch_as_a_single_one(
    page: Page, server: ScriptedServer
) -> None:
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    with anyio.fail_after(TIMEOUT):
        await open_socket(page, server)
        ws = await server.accept()
        await ws.send(event("room", 1))
        not_an_event = {"channel": "room", "id": "5", "data": "x"}
        await ws.send(batch(event("room", 1), event("room", 2, "two", "msg"), event("room", 4)))
        await ws.send(batch(not_an_event, event("room", 5), [1]))
        # 1 is a duplicate, 2 follows, 4 and 5 wait for 3: one sync.
        assert await recv_json(ws) == sync("room:2")
        # The reply: a batch, then a tip that finds the client caught up (no sync) ...
        await ws.send(batch(event("room", 3), event("room", 4), event("room", 5)))
        await ws.send(tip(room=5))
        # ... and a batch, then a tip ahead of it: a sync from the batch's last event.
        await ws.send(batch(event("room", 6)))
        await ws.send(tip(room=8))
        assert await recv_json(ws) == sync("room:6")
        await wait_for(page, "seen.events.length >= 6")

        events = await seen(page, "events")
        assert event_ids(events) == [1, 2, 3, 4, 5, 6]
        assert events[1] == {"channel": "room", "id": 2, "data": "two", "event": "msg"}
        stats = await page.evaluate("client.stats")
        assert (stats["delivered"], stats["duplicates"], stats["repairs"]) == (6, 3, 2)
        assert await seen(page, "messages") == []
        skipped = [w for w in warnings if "malformed event in a batch" in w]
        assert len(skipped) == 2


@pytest.mark.parametrize("code", [4000, 4999, 1008])
@pytest.mark.anyio
async def test_socket_stops_for_good_when_the_server_closes_with_a_final_code(
    page: Page, server: ScriptedServer, code: int
) -> None:
    with anyio.fail_after(TIMEOUT):
        await page.goto(f"http://{server.origin}/")
        await page.evaluate(OPEN_FAST_SOCKET)
        ws = await server.accept()
        await ws.send(event("room", 1))
        await wait_for(page, "seen.events.length >= 1")
        await ws.close(code, "left the room")
        await wait_for(page, "seen.closes.length >= 1")

        assert await seen(page, "closes") == [[code, "left the room"]]
        assert await seen(page, "statuses") == ["connecting", "open", "closed"]
        assert await page.evaluate("client.state") == "closed"
        assert await page.evaluate("client.send('late')") is False
        # No reconnection, though the backoff is a few hundredths of a second.
        with pytest.raises(TimeoutError):
            await server.accept(timeout=0.5)
        assert (await page.evaluate("client.stats"))["reconnects"] == 0


@pytest.mark.anyio
async def test_socket_reconnects_after_the_other_closes(page: Page, server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        await page.goto(f"http://{server.origin}/")
        await page.evaluate(OPEN_FAST_SOCKET)
        ws = await server.accept()
        for id, code in enumerate([1000, 1001, 1011, 3999], start=1):
            await ws.send(event("room", id))
            await ws.close(code)
            ws = await server.accept()
            assert resumed_at(ws) == f"room:{id}"
        ws.transport.abort()  # 1006: no close frame
        ws = await server.accept()
        assert resumed_at(ws) == "room:4"
        await wait_for(page, "client.state === 'open' && client.stats.reconnects === 5")
        assert await seen(page, "closes") == []
        assert (await seen(page, "statuses")).count("reconnecting") == 5


@pytest.mark.anyio
async def test_socket_reports_its_first_status_after_the_constructor_returns(
    page: Page, server: ScriptedServer
) -> None:
    with anyio.fail_after(TIMEOUT):
        await page.goto(f"http://{server.origin}/")
        # The handler reads the socket: it must be assigned by the time the handler runs.
        during_constructor = await page.evaluate(
            """() => {
              window.held = [];
              const socket = new GripClient.ReliableSocket('/chat/room', {
                onstatus: (s) => held.push([s, socket.state]),
              });
              window.client = socket;
              return held.length;
            }"""
        )
        assert during_constructor == 0
        await server.accept()
        await wait_for(page, "held.length >= 2")
        assert await page.evaluate("held") == [["connecting", "connecting"], ["open", "open"]]


# --- ReliableEventSource -----------------------------------------------------------------------


class SseStream:
    """One SSE request the scripted server holds: the test writes its events."""

    def __init__(self, target: str, headers: dict[str, str], writer: asyncio.StreamWriter):
        self.query = parse_qs(urlsplit(target).query)
        self.last_event_id = headers.get("last-event-id")
        self.writer = writer

    async def send(self, data: str, id: str, event: str | None = None) -> None:
        lines = ([f"event: {event}"] if event else []) + [f"id: {id}", f"data: {data}"]
        self.writer.write(("\n".join(lines) + "\n\n").encode())
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class SseServer:
    """A raw asyncio HTTP/1.1 server on loopback: the page, the script, and held SSE streams
    on ``/events`` handed to the test by :meth:`accept`."""

    def __init__(self) -> None:
        self._streams: asyncio.Queue[SseStream] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SseServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await self._server.wait_closed()

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def accept(self, timeout: float = 5) -> SseStream:
        with anyio.fail_after(timeout):
            return await self._streams.get()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._answer(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        target = head[0].split(" ")[1]
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:] if line)}
        path = urlsplit(target).path
        if path != "/events":
            content_type, body = PAGES.get(path, ("text/plain", b"not found"))
            status = "200 OK" if path in PAGES else "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: "
                f"{len(body)}\r\nCache-Control: no-store\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            b"Connection: close\r\n\r\nretry: 100\n\n"  # EventSource reconnects in 0.1 s
        )
        await writer.drain()
        await self._streams.put(SseStream(target, headers, writer))
        await reader.read()  # held until either side closes
        return False


@pytest.fixture
async def sse_server() -> AsyncIterator[SseServer]:
    async with SseServer() as scripted:
        yield scripted


@pytest.mark.anyio
async def test_event_source_drops_duplicates_reports_resets_and_resumes(
    page: Page, sse_server: SseServer
) -> None:
    with anyio.fail_after(TIMEOUT):
        await page.goto(f"http://{sse_server.origin}/")
        await page.evaluate(OPEN_EVENT_SOURCE)
        first = await sse_server.accept()
        assert (first.query, first.last_event_id) == ({}, None)
        await first.send("hello", "news:12,alerts:3")
        await first.send("again", "news:12,alerts:3")  # moves nothing forward: a duplicate
        await first.send("alert", "news:12,alerts:4", event="msg")
        await first.send("older", "news:11,alerts:4")  # a duplicate too
        reset_data = json.dumps({"channel": "news", "current_id": 40})
        await first.send(reset_data, "news:40,alerts:4", event="stream-reset")
        await first.send(reset_data, "news:40,alerts:4", event="stream-reset")  # repeated
        await wait_for(page, "seen.resets.length >= 1 && seen.events.length >= 2")
        first.close()  # EventSource reconnects by itself, with Last-Event-ID

        second = await sse_server.accept()
        assert second.last_event_id == "news:40,alerts:4"
        await second.send("news", "news:41,alerts:4")
        await wait_for(page, "seen.events.length >= 3")

        events = await seen(page, "events")
        assert [(e["channel"], e["id"], e["data"], e["event"]) for e in events] == [
            (None, None, "hello", "message"),  # the first event moves every channel
            ("alerts", 4, "alert", "msg"),
            ("news", 41, "news", "message"),
        ]
        assert events[2]["lastEventId"] == "news:41,alerts:4"
        assert await seen(page, "resets") == [{"channel": "news", "id": 40}]
        stats = await page.evaluate("client.stats")
        assert stats == {"delivered": 3, "duplicates": 3, "resets": 1}

        await page.reload()  # the new page resumes from sessionStorage, with the query
        await page.evaluate(OPEN_EVENT_SOURCE)
        third = await sse_server.accept()
        assert (third.query, third.last_event_id) == ({"last_event_id": ["news:41,alerts:4"]}, None)
        await third.send("old", "news:41,alerts:4")
        await third.send("new", "news:42,alerts:4")
        await wait_for(page, "seen.events.length >= 1")
        assert [e["data"] for e in await seen(page, "events")] == ["new"]
        await page.evaluate("client.close()")
        assert await page.evaluate("client.source.readyState") == 2  # CLOSED
