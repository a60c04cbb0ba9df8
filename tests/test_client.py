"""The reliable WebSocket client: the protocol rules alone (ClientState, raw message lists),
then ReliableClient against a real `websockets` server on loopback that plays a scripted server.

:class:`ScriptedServer` is also what tests/e2e/test_client_js.py drives the browser client with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from grip_asgi.client import (
    Backoff,
    ClientState,
    Event,
    Message,
    Presence,
    ReliableClient,
    Reset,
)

TIMEOUT = 10  # seconds any one socket test may take


# --- Messages as the server writes them --------------------------------------------------------


def event(channel: str, id: int, data: str | None = None, name: str | None = None) -> str:
    message: dict[str, Any] = {"channel": channel, "id": id, "data": data or f"{channel}-{id}"}
    if name is not None:
        message["event"] = name
    return json.dumps(message)


def tip(**ids: int) -> str:
    return json.dumps({"grip": "tip", "ids": ids})


def batch(*events: object) -> str:
    """A batch of events (each given as its own message's text, or as any JSON value)."""
    entries = [json.loads(e) if isinstance(e, str) else e for e in events]
    return json.dumps({"grip": "events", "events": entries})


def reset(channel: str, id: int) -> str:
    return json.dumps({"grip": "reset", "channel": channel, "id": id})


def sync(positions: str) -> dict[str, str]:
    return {"grip": "sync", "last_event_id": positions}


def resumed_at(ws: ServerConnection) -> str | None:
    """The ``last_event_id`` a connection opened with, or None."""
    assert ws.request is not None
    values = parse_qs(urlsplit(ws.request.path).query).get("last_event_id")
    return values[0] if values else None


class ScriptedServer:
    """A real `websockets` server on loopback whose side of the protocol the test plays.

    Each connection is handed to the test by :meth:`accept` and stays open until the test
    closes it (or aborts its transport). ``pages`` maps plain HTTP paths to (content type,
    body) for a browser; ``refuse`` opening handshakes are answered 503 first.
    """

    def __init__(self, pages: Mapping[str, tuple[str, bytes]] | None = None) -> None:
        self.pages = dict(pages or {})
        self.refuse = 0
        self.refused = 0
        self._connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self._server: Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._http)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def origin(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return f"ws://{self.origin}{path}"

    async def accept(self, timeout: float = 5) -> ServerConnection:
        with anyio.fail_after(timeout):
            return await self._connections.get()

    async def _handle(self, ws: ServerConnection) -> None:
        await self._connections.put(ws)
        await ws.wait_closed()

    def _http(self, ws: ServerConnection, request: Request) -> Response | None:
        if "upgrade" not in request.headers.get("Connection", "").lower():
            content_type, body = self.pages.get(request.path.split("?")[0], ("", b""))
            status, reason = (200, "OK") if content_type else (404, "Not Found")
            headers = Headers({"Content-Type": content_type or "text/plain"})
            headers["Content-Length"] = str(len(body))
            headers["Cache-Control"] = "no-store"
            return Response(status, reason, headers, body)
        if self.refused < self.refuse:
            self.refused += 1
            return ws.respond(503, "not now\n")
        return None


async def recv_json(ws: ServerConnection, timeout: float = 5) -> Any:
    with anyio.fail_after(timeout):
        return json.loads(await ws.recv())


# --- ClientState: the protocol rules -----------------------------------------------------------


def feed(state: ClientState, *messages: str | bytes) -> list[Any]:
    return [item for message in messages for item in state.receive(message)]


def sent(state: ClientState) -> list[Any]:
    return [json.loads(message) for message in state.outgoing()]


def ids(items: list[Any]) -> list[tuple[str, int]]:
    return [(item.channel, item.id) for item in items]


def test_a_new_channel_starts_at_its_first_event_and_goes_on_in_order() -> None:
    state = ClientState()
    items = feed(state, event("room", 41), event("room", 42, "hi", "msg"), event("news", 7))
    assert items == [
        Event("room", 41, "room-41"),
        Event("room", 42, "hi", "msg"),
        Event("news", 7, "news-7"),
    ]
    assert state.positions == {"room": 42, "news": 7}
    assert state.stats.delivered == 3
    assert sent(state) == []


def test_an_event_at_or_before_the_position_is_a_duplicate() -> None:
    state = ClientState({"room": 5})
    assert feed(state, event("room", 5), event("room", 3), event("room", 6)) == [
        Event("room", 6, "room-6")
    ]
    assert state.stats.duplicates == 2
    assert state.stats.delivered == 1


def test_a_gap_buffers_syncs_once_and_delivers_in_order_when_filled() -> None:
    state = ClientState({"room": 1, "news": 9})
    assert feed(state, event("room", 3), event("room", 4)) == []
    assert sent(state) == [sync("room:1")]  # one sync for the channel, not one per event
    assert feed(state, event("room", 4)) == []  # already buffered
    assert state.stats.duplicates == 1
    # Another channel's gap is its own sync.
    assert feed(state, event("news", 11)) == []
    assert sent(state) == [sync("news:9")]
    # The sync's reply: the missing event, then the rest again, then the tip.
    items = feed(state, event("room", 2), event("room", 3), event("room", 4), tip(room=4))
    assert ids(items) == [("room", 2), ("room", 3), ("room", 4)]
    assert state.stats.duplicates == 3
    assert state.positions["room"] == 4
    # The tip ends the syncs in flight; news still waits for 10, so it syncs again.
    assert sent(state) == [sync("news:9")]
    assert state.stats.repairs == 3


def test_a_batchs_events_count_as_single_events_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = ClientState({"room": 2})
    not_an_event = {"channel": "room", "id": "5", "data": "x"}
    with caplog.at_level(logging.WARNING, logger="grip_asgi.client"):
        items = feed(
            state,
            batch(event("room", 2), event("room", 3, "three", "msg"), event("room", 5)),
            batch(not_an_event, event("room", 6), [1], event("news", 1)),
        )
    # 2 is a duplicate, 3 follows, 5 and 6 wait for 4 (one sync), the malformed are skipped.
    assert items == [Event("room", 3, "three", "msg"), Event("news", 1, "news-1")]
    assert sent(state) == [sync("room:3")]
    assert [r.getMessage() for r in caplog.records] == [
        "malformed event in a batch skipped: {'channel': 'room', 'id': '5', 'data': 'x'}",
        "malformed event in a batch skipped: [1]",
    ]
    # The sync's reply: a batch, then its tip, which finds the client caught up.
    items = feed(state, batch(*(event("room", i) for i in range(4, 7))), tip(room=6, news=1))
    assert ids(items) == [("room", 4), ("room", 5), ("room", 6)]
    assert sent(state) == []
    assert state.positions == {"room": 6, "news": 1}
    assert (state.stats.delivered, state.stats.duplicates, state.stats.repairs) == (5, 3, 1)
    # A batch, then a tip ahead of it: the client pages on from the batch's last event.
    feed(state, batch(event("room", 7), event("room", 8)), tip(room=20, news=1))
    assert sent(state) == [sync("room:8")]


def test_a_tip_ahead_of_the_position_syncs_and_pages_until_caught_up() -> None:
    state = ClientState({"room": 10, "news": 3})
    feed(state, tip(room=250, news=3))
    assert sent(state) == [sync("room:10")]
    feed(state, tip(room=250))  # e.g. a keep-alive before the reply: the sync is over
    assert sent(state) == [sync("room:10")]
    # A reply of one page, then its tip: still behind, so the next page.
    feed(state, *(event("room", i) for i in range(11, 111)), tip(room=250))
    assert sent(state) == [sync("room:110")]
    # A gap while a sync is in flight waits for that sync.
    feed(state, event("room", 112))
    assert sent(state) == []
    feed(state, *(event("room", i) for i in range(111, 251)), tip(room=250, news=3))
    assert sent(state) == []
    assert state.positions == {"room": 250, "news": 3}
    assert state.stats.delivered == 240
    assert state.stats.repairs == 3


def test_a_tip_with_early_events_waiting_syncs_even_at_the_tip() -> None:
    state = ClientState({"room": 1})
    feed(state, event("room", 3))
    assert sent(state) == [sync("room:1")]
    feed(state, tip(room=1))  # the server's tip was read before event 3 was stored
    assert sent(state) == [sync("room:1")]


def test_a_tip_gives_a_new_channel_its_starting_position() -> None:
    state = ClientState()
    feed(state, tip(room=97))
    assert state.positions == {"room": 97}
    assert sent(state) == []
    # So a lost first live event is noticed.
    assert feed(state, event("room", 99)) == []
    assert sent(state) == [sync("room:97")]


def test_a_reset_jumps_reports_and_delivers_what_follows() -> None:
    state = ClientState({"room": 10})
    feed(state, event("room", 96), event("room", 98), event("room", 99), event("room", 101))
    assert sent(state) == [sync("room:10")]
    items = feed(state, reset("room", 97), tip(room=99))
    assert items == [Reset("room", 97), Event("room", 98, "room-98"), Event("room", 99, "room-99")]
    assert state.positions == {"room": 99}
    assert state.stats.resets == 1
    # Event 96 was dropped with the reset; 101 still waits for 100, so the tip syncs again.
    assert sent(state) == [sync("room:99")]
    # A reset repeated by a second reply is not a second loss.
    assert feed(state, reset("room", 97)) == []
    assert state.stats.resets == 1
    assert state.positions == {"room": 99}


def test_a_reset_of_a_new_channel_is_reported() -> None:
    state = ClientState()
    assert feed(state, reset("room", 5), event("room", 6)) == [
        Reset("room", 5),
        Event("room", 6, "room-6"),
    ]


def test_presence_keeps_the_members_per_channel() -> None:
    state = ClientState()
    ann = {"client": "c1", "user": "ann", "info": {"color": "red"}}
    bob = {"client": "c2", "user": None, "info": None}
    items = feed(
        state,
        json.dumps({"grip": "members", "channel": "room", "members": [ann]}),
        json.dumps({"grip": "join", "channel": "room", **bob}),
        json.dumps({"grip": "leave", "channel": "room", **ann}),
    )
    assert items == [
        Presence("members", "room", (ann,)),
        Presence("join", "room", (bob,)),
        Presence("leave", "room", (ann,)),
    ]
    assert state.members == {"room": {"c2": bob}}


@pytest.mark.parametrize(
    "message",
    ["hello", b"\x00\x01", "[1, 2]", '"text"', '{"channel": "room", "id": "7", "data": "x"}'],
    ids=["text", "binary", "array", "string", "not-an-event"],
)
def test_anything_else_is_the_applications_message(message: str | bytes) -> None:
    state = ClientState()
    assert feed(state, message) == [Message(message)]
    assert state.positions == {}


@pytest.mark.parametrize(
    "message",
    [
        '{"grip": "tip", "ids": {"room": "x"}}',
        '{"grip": "tip"}',
        '{"grip": "reset", "channel": "room"}',
        '{"grip": "reset", "channel": "room", "id": true}',
        '{"grip": "members", "channel": "room", "members": [1]}',
        '{"grip": "events", "events": {"channel": "room", "id": 4, "data": "x"}}',
        '{"grip": "events"}',
    ],
)
def test_a_malformed_protocol_message_is_logged_and_changes_nothing(
    message: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = ClientState({"room": 3})
    with caplog.at_level(logging.WARNING, logger="grip_asgi.client"):
        assert feed(state, message) == []
    assert "malformed" in caplog.text
    assert state.positions == {"room": 3}
    assert state.members == {}
    assert sent(state) == []


def test_an_error_reply_is_logged_and_an_unknown_kind_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = ClientState()
    with caplog.at_level(logging.WARNING, logger="grip_asgi.client"):
        error = json.dumps({"grip": "error", "message": "unknown grip message 'synk'"})
        assert feed(state, error, json.dumps({"grip": "later-feature"})) == []
    assert [r.getMessage() for r in caplog.records] == [
        "the server refused a message: unknown grip message 'synk'"
    ]


def test_the_resume_url_carries_the_positions() -> None:
    state = ClientState()
    assert state.resume_query() == ""
    assert state.resume_url("ws://h/chat/room?x=1") == "ws://h/chat/room?x=1"
    feed(state, event("room", 41), event("news", 3))
    assert state.resume_query() == "last_event_id=room%3A41%2Cnews%3A3"
    url = state.resume_url("ws://h/chat/room?x=1&last_event_id=room%3A2")
    assert url == "ws://h/chat/room?x=1&last_event_id=room%3A41%2Cnews%3A3"


def test_a_lost_connection_forgets_early_events_and_syncs_in_flight() -> None:
    state = ClientState({"room": 1})
    feed(state, event("room", 3))
    state.outgoing()
    state.connection_lost()
    # The resume replays 2 and 3: nothing is left buffered to be delivered twice ...
    assert ids(feed(state, event("room", 2))) == [("room", 2)]
    # ... and a new gap syncs at once, with no sync in flight any more.
    feed(state, event("room", 5))
    assert sent(state) == [sync("room:2")]


def test_an_explicit_sync_names_every_position_and_is_not_a_repair() -> None:
    state = ClientState({"room": 4, "news": 2})
    state.sync()
    assert sent(state) == [sync("room:4,news:2")]
    assert state.stats.repairs == 0


def test_the_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    high, low = Backoff(0.5, 10, rand=lambda: 1.0), Backoff(0.5, 10, rand=lambda: 0.0)
    assert [high.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert [low.next_delay() for _ in range(3)] == [0.25, 0.5, 1]
    high.ended(open_for=9.9)  # a connection that dropped soon: still backing off
    assert high.next_delay() == 10
    high.ended(open_for=10)  # one that stayed up a while: the next drop starts again
    assert high.next_delay() == 0.5
    for _ in range(100):  # far past the largest exponent: still the maximum
        high.next_delay()
    assert high.next_delay() == 10
    with pytest.raises(ValueError, match="minimum <= maximum"):
        Backoff(2, 1)


@pytest.mark.parametrize(
    ("code", "final"),
    [(1000, False), (1001, False), (1006, False), (1008, True), (1011, False)]
    + [(3999, False), (4000, True), (4999, True), (5000, False)],
)
def test_the_apps_codes_and_policy_violation_are_final_closes(code: int, final: bool) -> None:
    assert ClientState.is_final_close(code) is final


# --- ReliableClient against a scripted server --------------------------------------------------


async def take(client: ReliableClient, count: int) -> list[Any]:
    items = []
    async for item in client:
        items.append(item)
        if len(items) == count:
            break
    return items


def fast_client(url: str, positions: dict[str, int] | None = None) -> ReliableClient:
    """A client that reconnects within a few hundredths of a second."""
    return ReliableClient(url, ["room"], backoff_min=0.01, backoff_max=0.05, positions=positions)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as scripted:
        yield scripted


@pytest.mark.anyio
async def test_events_in_order_and_a_resume_after_the_server_closes(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            first = await server.accept()
            assert resumed_at(first) is None
            for message in (event("room", 1), event("room", 2, "two", "msg"), tip(room=2)):
                await first.send(message)
            assert await take(client, 2) == [
                Event("room", 1, "room-1"),
                Event("room", 2, "two", "msg"),
            ]
            await first.close()

            second = await server.accept()
            assert resumed_at(second) == "room:2"
            await second.send(event("room", 2))  # the replay may repeat what it has
            await second.send(event("room", 3))
            assert await take(client, 1) == [Event("room", 3, "room-3")]
            assert client.positions == {"room": 3}
            assert (client.stats.reconnects, client.stats.duplicates) == (1, 1)


@pytest.mark.anyio
async def test_a_connection_dropped_without_a_close_frame_resumes(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            first = await server.accept()
            await first.send(event("room", 7))
            assert await take(client, 1) == [Event("room", 7, "room-7")]
            first.transport.abort()  # a TCP reset: no close frame

            second = await server.accept()
            assert resumed_at(second) == "room:7"
            await second.send(event("room", 8))
            assert await take(client, 1) == [Event("room", 8, "room-8")]


@pytest.mark.anyio
async def test_a_gap_is_repaired_with_a_sync_over_the_socket(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            ws = await server.accept()
            await ws.send(event("room", 1))
            await ws.send(event("room", 3))
            assert await recv_json(ws) == sync("room:1")
            for message in (event("room", 2), event("room", 3), tip(room=3)):
                await ws.send(message)
            assert ids(await take(client, 3)) == [("room", 1), ("room", 2), ("room", 3)]
            assert (client.stats.repairs, client.stats.duplicates) == (1, 1)


@pytest.mark.anyio
async def test_it_keeps_reconnecting_through_refusals_with_its_positions(
    server: ScriptedServer,
) -> None:
    with anyio.fail_after(TIMEOUT):
        client = fast_client(server.url("/chat/room"), {"room": 4, "other": 1})
        async with client:
            first = await server.accept()
            assert resumed_at(first) == "room:4"
            server.refuse = 3  # the next three handshakes get a 503
            first.transport.abort()
            # A connection that opens and drops at once is a failure too.
            second = await server.accept()
            await second.close()
            third = await server.accept()
            assert server.refused == 3
            assert resumed_at(second) == resumed_at(third) == "room:4"
            await third.send(event("room", 5))
            assert await take(client, 1) == [Event("room", 5, "room-5")]
            assert client.stats.reconnects == 2


@pytest.mark.anyio
async def test_send_sync_and_the_applications_messages(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            ws = await server.accept()
            await client.send("hello")
            with anyio.fail_after(5):
                assert await ws.recv() == "hello"
            ann = {"client": "c1", "user": "ann", "info": None}
            await ws.send("welcome")
            await ws.send(json.dumps({"grip": "join", "channel": "room", **ann}))
            await ws.send(event("room", 9))
            assert await take(client, 3) == [
                Message("welcome"),
                Presence("join", "room", (ann,)),
                Event("room", 9, "room-9"),
            ]
            assert client.members == {"room": {"c1": ann}}
            await client.sync()
            assert await recv_json(ws) == sync("room:9")


@pytest.mark.anyio
async def test_iteration_ends_when_the_client_is_closed(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(server.url("/chat/room")) as client:
            await server.accept()
        assert [item async for item in client] == []


@pytest.mark.anyio
async def test_an_unreachable_server_fails_on_entry() -> None:
    async with ScriptedServer() as server:
        url = server.url("/chat/room")
    with anyio.fail_after(TIMEOUT), pytest.raises(OSError):
        async with ReliableClient(url, open_timeout=2):
            pass


@pytest.mark.anyio
async def test_send_without_a_connection_says_so(server: ScriptedServer) -> None:
    with anyio.fail_after(TIMEOUT):
        client = ReliableClient(server.url("/chat/room"), open_timeout=0.2, backoff_min=5)
        async with client:
            (await server.accept()).transport.abort()
            while client.connected:  # until the client has seen the drop
                await asyncio.sleep(0.01)
            with pytest.raises(ConnectionError, match="not connected"):
                await client.send("hello")


@pytest.mark.anyio
async def test_a_failure_of_the_client_itself_ends_the_iteration(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(message: str | bytes) -> list[Any]:
        raise RuntimeError("a bug")

    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            monkeypatch.setattr(client.state, "receive", broken)
            await (await server.accept()).send(event("room", 1))
            with pytest.raises(RuntimeError, match="a bug"):
                await take(client, 1)
            with pytest.raises(RuntimeError, match="a bug"):  # and stays ended
                await take(client, 1)
            with pytest.raises(ConnectionError, match="has stopped"):
                await client.send("hello")
    assert "the connection loop of" in caplog.text


@pytest.mark.parametrize("code", [4000, 4999, 1008])
@pytest.mark.anyio
async def test_a_final_close_ends_the_iteration_without_reconnecting(
    server: ScriptedServer, code: int
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            ws = await server.accept()
            await ws.send(event("room", 1))
            await ws.close(code, "left the room")
            # What came before the close is still delivered, then the iteration ends.
            assert [item async for item in client] == [Event("room", 1, "room-1")]
            assert (client.close_code, client.close_reason) == (code, "left the room")
            assert not client.connected
            with pytest.raises(ConnectionError, match=f"closed .* for good .*{code}"):
                await client.send("hello")
            with pytest.raises(ConnectionError, match=str(code)):
                await client.sync()
            # No reconnection, though the backoff is a few hundredths of a second.
            with pytest.raises(TimeoutError):
                await server.accept(timeout=0.5)
            assert client.stats.reconnects == 0


@pytest.mark.parametrize("code", [1001, 1011, 3999])
@pytest.mark.anyio
async def test_other_closes_from_the_server_reconnect(server: ScriptedServer, code: int) -> None:
    with anyio.fail_after(TIMEOUT):
        async with fast_client(server.url("/chat/room")) as client:
            first = await server.accept()
            await first.send(event("room", 1))
            await first.close(code)
            second = await server.accept()
            assert resumed_at(second) == "room:1"
            await second.send(event("room", 2))
            assert ids(await take(client, 2)) == [("room", 1), ("room", 2)]
            assert (client.close_code, client.stats.reconnects) == (None, 1)


@pytest.mark.anyio
async def test_a_client_left_in_a_cancelled_scope_closes_its_connection_first(
    server: ScriptedServer,
) -> None:
    """Leaving the client inside a cancelled scope (a timeout around it) must not skip the
    client's own close: the connection is closed before ``async with`` returns."""
    with anyio.fail_after(TIMEOUT):
        with anyio.move_on_after(0.5):
            async with fast_client(server.url("/chat/room")):
                ws = await server.accept()
                await anyio.sleep(TIMEOUT)
        # The scope was cancelled while the client was open; its close has run by now.
        assert ws.state in (State.CLOSING, State.CLOSED)
