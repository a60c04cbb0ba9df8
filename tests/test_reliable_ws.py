"""Reliable WebSockets without a proxy: resume, gap repair, the tip and presence.

The rules (``grip_asgi._reliable_ws``) run on raw WebSocket-over-HTTP events with in-memory
stores and a clock the tests move; the adapters run behind ``GripMiddleware`` with requests
signed as Pushpin signs them and a publisher on ``httpx.MockTransport``. The end-to-end
tests (``tests/e2e/test_reliable_ws.py``) run the same endpoints through a real Pushpin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from grip_asgi import GripConfigError, GripMiddleware, GripProtocolError, GripSettings, Publisher
from grip_asgi._recovery import PresenceCall, run, run_sync
from grip_asgi._reliable_ws import (
    SocketOptions,
    SocketReply,
    SocketRequest,
    presence_notice,
    publish_notices_sync,
    websocket_steps,
)
from grip_asgi._websocket import WebSocketContext, WebSocketEvent, decode_websocket_events
from grip_asgi.events import get_events
from grip_asgi.history import MemoryHistory, Retention
from grip_asgi.presence import MemoryPresence
from grip_asgi.testing import GripTestProxy

from .history.conftest import FakeClock

CONNECTION = "conn-1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def history(clock: FakeClock) -> MemoryHistory:
    return MemoryHistory(Retention(max_events=5, max_age=None), clock=clock)


@pytest.fixture
def presence(clock: FakeClock) -> MemoryPresence:
    return MemoryPresence(clock=clock)


def fill(history: MemoryHistory, channel: str, count: int) -> None:
    for _ in range(count):
        history.sync.append(channel, f"{channel} says {history.sync.last_id(channel) + 1}")


def opening(query: dict[str, str] | None = None, connection: str = CONNECTION) -> SocketRequest:
    ws = WebSocketContext(connection, {}, [WebSocketEvent("OPEN")])
    return SocketRequest(ws, query or {})


def later(
    *events: WebSocketEvent,
    channels: str = "room",
    presence: bool = False,
    connection: str = CONNECTION,
) -> SocketRequest:
    # Told the tip a moment ago: only the tests of the rule that it is due get one.
    meta = {"grip-channels": channels, "grip-tipped": str(int(time.time()))}
    if presence:
        meta["grip-presence"] = "1"
    return SocketRequest(WebSocketContext(connection, meta, list(events)), {})


def text(message: str | dict[str, Any]) -> WebSocketEvent:
    body = message if isinstance(message, str) else json.dumps(message)
    return WebSocketEvent("TEXT", body)


def serve(
    request: SocketRequest,
    store: MemoryHistory,
    presence: MemoryPresence | None = None,
    /,
    **options: Any,
) -> SocketReply:
    options.setdefault("channels", ("room",))
    steps = websocket_steps(request, SocketOptions(**options))
    return run_sync(steps, store.sync, presence=presence.sync if presence else None)


def sent(reply: SocketReply) -> list[Any]:
    """What the client gets, in order: messages as JSON, control messages as ("c", dict),
    and other events as their type."""
    status, _, body = reply.ws.to_response()
    assert status == 200
    out: list[Any] = []
    for event in decode_websocket_events(body):
        content = event.content or b""
        if event.type == "TEXT" and content.startswith(b"m:"):
            out.append(json.loads(content[2:]))
        elif event.type == "TEXT" and content.startswith(b"c:"):
            out.append(("c", json.loads(content[2:])))
        else:
            out.append(event.type)
    return out


def headers(reply: SocketReply) -> dict[str, str]:
    return dict(reply.ws.to_response()[1])


def event(channel: str, id: int) -> dict[str, Any]:
    return {"channel": channel, "id": id, "data": f"{channel} says {id}"}


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"grip": "events", "events": list(events)}


def tip(**ids: int) -> dict[str, Any]:
    return {"grip": "tip", "ids": ids}


SUBSCRIBE_ROOM = ("c", {"type": "subscribe", "channel": "reliable:room"})


# --- Opening ------------------------------------------------------------------------------------


def test_a_new_client_is_subscribed_from_the_tip(history: MemoryHistory) -> None:
    fill(history, "room", 3)
    reply = serve(opening(), history)
    assert sent(reply) == ["OPEN", tip(room=3), SUBSCRIBE_ROOM]
    assert reply.opened and not reply.closed and reply.channels == ("room",)
    # Pushpin keeps the channels and calls the app when the connection idles.
    assert headers(reply)["Set-Meta-grip-channels"] == "room"
    assert headers(reply)["Keep-Alive-Interval"] == "20"


def test_a_new_client_gets_the_latest_history_first(history: MemoryHistory) -> None:
    fill(history, "room", 4)
    reply = serve(opening(), history, history=2)
    assert sent(reply) == [
        "OPEN",
        batch(event("room", 3), event("room", 4)),
        tip(room=4),
        SUBSCRIBE_ROOM,
    ]


def test_a_resuming_client_gets_what_it_missed_before_the_subscription(
    history: MemoryHistory,
) -> None:
    fill(history, "room", 4)
    reply = serve(opening({"last_event_id": "room:2"}), history, history=50)
    assert sent(reply) == [
        "OPEN",
        batch(event("room", 3), event("room", 4)),
        tip(room=4),
        SUBSCRIBE_ROOM,
    ]


def test_a_resume_of_several_channels_replays_in_publish_order(
    history: MemoryHistory, clock: FakeClock
) -> None:
    for channel in ("a", "b", "a", "b"):
        clock.now += 1
        fill(history, channel, 1)
    reply = serve(opening({"last_event_id": "a:0,b:0"}), history, channels=("a", "b"))
    assert sent(reply)[1] == batch(event("a", 1), event("b", 1), event("a", 2), event("b", 2))
    assert sent(reply)[2] == tip(a=2, b=2)
    assert headers(reply)["Set-Meta-grip-channels"] == "a,b"


def test_a_long_backlog_goes_a_page_at_a_time(history: MemoryHistory) -> None:
    fill(history, "room", 5)
    reply = serve(opening({"last_event_id": "room:0"}), history, page_size=2)
    # The tip tells the client it is still behind: it asks for the next page itself.
    assert sent(reply) == [
        "OPEN",
        batch(event("room", 1), event("room", 2)),
        tip(room=5),
        SUBSCRIBE_ROOM,
    ]


def test_a_resume_past_the_retention_is_a_reset_not_a_silent_skip(history: MemoryHistory) -> None:
    fill(history, "room", 9)  # the history keeps 5: ids 5 to 9
    reply = serve(opening({"last_event_id": "room:2"}), history)
    assert sent(reply) == [
        "OPEN",
        {"grip": "reset", "channel": "room", "id": 9},
        tip(room=9),
        SUBSCRIBE_ROOM,
    ]


@pytest.mark.parametrize(
    ("query", "channels", "problem"),
    [
        ({"last_event_id": "room=3"}, ("room",), "not of the form channel:id"),
        ({}, ("bad room",), "cannot hold"),
    ],
)
def test_a_bad_open_is_refused_with_a_400_naming_the_problem(
    history: MemoryHistory, query: dict[str, str], channels: tuple[str, ...], problem: str
) -> None:
    reply = serve(opening(query), history, channels=channels)
    status, _, body = reply.ws.to_response()
    assert status == 400 and problem in body.decode()
    assert not reply.opened


def test_an_open_the_handler_refused_stays_refused(history: MemoryHistory) -> None:
    request = opening()
    request.ws.reject(403, "members only")
    reply = serve(request, history)
    assert reply.ws.to_response()[0] == 403
    assert not reply.opened


def test_an_open_the_handler_accepted_is_not_accepted_twice(history: MemoryHistory) -> None:
    request = opening()
    request.ws.accept("chat")
    reply = serve(request, history)
    assert sent(reply)[0] == "OPEN" and sent(reply).count("OPEN") == 1
    assert headers(reply)["Sec-WebSocket-Protocol"] == "chat"


# --- Later requests: the application's messages, sync, keep-alive -------------------------------


def test_the_applications_messages_pass_through_in_order(history: MemoryHistory) -> None:
    reply = serve(
        later(
            text("hello"),
            WebSocketEvent("BINARY", b"\x00\x01"),
            text('{"say": "json without grip"}'),
            text("{not json"),
        ),
        history,
    )
    assert reply.messages == ["hello", b"\x00\x01", '{"say": "json without grip"}', "{not json"]
    assert sent(reply) == []


def test_a_sync_gets_the_missing_range_then_the_tip(history: MemoryHistory) -> None:
    fill(history, "room", 4)
    reply = serve(later(text({"grip": "sync", "last_event_id": "room:1"})), history)
    assert sent(reply) == [batch(event("room", 2), event("room", 3), event("room", 4)), tip(room=4)]
    assert reply.messages == []


def test_a_sync_is_paged_and_tells_the_tip(history: MemoryHistory) -> None:
    fill(history, "room", 5)
    reply = serve(later(text({"grip": "sync", "last_event_id": "room:0"})), history, page_size=3)
    assert sent(reply) == [batch(event("room", 1), event("room", 2), event("room", 3)), tip(room=5)]


def test_a_sync_past_the_retention_is_a_reset(history: MemoryHistory) -> None:
    fill(history, "room", 8)
    reply = serve(later(text({"grip": "sync", "last_event_id": "room:1"})), history)
    assert sent(reply) == [{"grip": "reset", "channel": "room", "id": 8}, tip(room=8)]


def test_the_channels_come_from_the_connection_meta_not_the_handler(
    history: MemoryHistory,
) -> None:
    fill(history, "news", 2)
    request = later(text({"grip": "sync", "last_event_id": "news:0"}), channels="news")
    reply = serve(request, history, channels=("room",))
    assert sent(reply) == [batch(event("news", 1), event("news", 2)), tip(news=2)]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"grip": "subscribe", "channel": "x"}, "unknown request 'subscribe'"),
        ({"grip": "sync"}, "a sync needs last_event_id"),
        ({"grip": "sync", "last_event_id": 3}, "a sync needs last_event_id"),
        ({"grip": "sync", "last_event_id": "room"}, "not of the form channel:id"),
        ({"grip": "sync", "last_event_id": "secret:0"}, "not subscribed to 'secret'"),
    ],
)
def test_a_bad_protocol_message_gets_an_error_and_the_connection_stays(
    history: MemoryHistory, message: dict[str, Any], problem: str
) -> None:
    reply = serve(later(text(message), text("after")), history)
    [error] = sent(reply)
    assert error["grip"] == "error" and problem in error["message"]
    assert reply.messages == ["after"] and not reply.closed


def test_a_replay_is_packed_into_batches_that_fit_one_frame() -> None:
    history = MemoryHistory()
    for n in range(6):
        history.sync.append("big", "x" * 6000 if n != 3 else "y" * 16000)
    reply = serve(
        later(text({"grip": "sync", "last_event_id": "big:0"}), channels="big"),
        history,
        channels=("big",),
    )
    messages = sent(reply)
    # Two 6 KB events fit in a batch; the 16 KB one (too large for any) goes alone.
    shapes = [[e["id"] for e in m["events"]] if "events" in m else m.get("id") for m in messages]
    assert shapes == [[1, 2], [3], 4, [5, 6], None]
    assert messages[-1] == tip(big=6)
    status, _, body = reply.ws.to_response()
    for message in decode_websocket_events(body):
        if message.content and b'"events"' in message.content:
            assert len(message.content) <= 15_000 + 2


def test_a_replay_over_several_channels_stops_at_the_page_size(
    history: MemoryHistory, clock: FakeClock
) -> None:
    for channel in ("a", "b", "a", "b", "a"):
        clock.now += 1
        fill(history, channel, 1)
    request = later(text({"grip": "sync", "last_event_id": "a:0,b:0"}), channels="a,b")
    reply = serve(request, history, channels=("a", "b"), page_size=3)
    assert sent(reply) == [batch(event("a", 1), event("b", 1), event("a", 2)), tip(a=3, b=2)]


def test_a_keep_alive_call_pings_the_client_and_tells_the_tip(history: MemoryHistory) -> None:
    fill(history, "room", 7)
    reply = serve(later(), history)
    assert sent(reply) == ["PING", tip(room=5 + 2)]


def test_a_clients_own_ping_gets_the_tip_it_would_get_on_an_idle_call(
    history: MemoryHistory,
) -> None:
    """Pushpin makes no idle call on a connection whose client pings: its ping does the work."""
    fill(history, "room", 2)
    reply = serve(later(WebSocketEvent("PING", b"p")), history)
    assert sent(reply) == ["PONG", tip(room=2)]
    chatty = serve(later(WebSocketEvent("PING"), text("hi")), history)
    assert sent(chatty) == ["PONG"] and chatty.messages == ["hi"]


def test_a_ping_sweeps_expired_members_as_an_idle_call_does(
    history: MemoryHistory, presence: MemoryPresence, clock: FakeClock
) -> None:
    for client in ("gone", "pinger"):
        serve(opening(connection=client), history, presence, presence=True)
    clock.now += 35
    reply = serve(
        later(WebSocketEvent("PING"), presence=True, connection="pinger"),
        history,
        presence,
        presence=True,
    )
    assert [m.client for m in reply.left] == ["gone"]
    assert [m.client for m in reply.joined] == ["pinger"]  # it had expired too, and is back


@pytest.mark.parametrize("tipped", ["", "soon", "1000"])
def test_a_client_that_talks_too_often_for_idle_calls_still_gets_the_tip(
    history: MemoryHistory, tipped: str
) -> None:
    """Pushpin makes no idle call on a connection whose client sends often; when the last
    tip is older than keep_alive (or unknown), the client's own request brings one."""
    fill(history, "room", 4)
    meta = {"grip-channels": "room", "grip-tipped": tipped}
    request = SocketRequest(WebSocketContext(CONNECTION, meta, [text("hi")]), {}, now=1030)
    reply = serve(request, history)
    assert sent(reply) == [tip(room=4)] and reply.messages == ["hi"]
    assert headers(reply)["Set-Meta-grip-tipped"] == "1030"
    fresh = {**meta, "grip-tipped": "1011"}  # 19 s ago: not yet
    again = SocketRequest(WebSocketContext(CONNECTION, fresh, [text("hi")]), {}, now=1030)
    assert sent(serve(again, history)) == []


def test_a_connection_opened_before_the_endpoint_was_reliable_uses_the_handlers_channels(
    history: MemoryHistory,
) -> None:
    fill(history, "room", 1)
    request = SocketRequest(WebSocketContext(CONNECTION, {}, []), {})
    assert sent(serve(request, history)) == ["PING", tip(room=1)]


def test_a_close_is_echoed_and_reported(history: MemoryHistory) -> None:
    reply = serve(later(text("bye"), WebSocketEvent("CLOSE", b"\x03\xe8")), history)
    assert reply.messages == ["bye"] and reply.closed
    assert sent(reply) == ["CLOSE"]


# --- Presence -------------------------------------------------------------------------------------


def members_message(*clients: tuple[str, str | None]) -> dict[str, Any]:
    listed = [{"client": c, "user": u, "info": None} for c, u in clients]
    return {"grip": "members", "channel": "room", "count": len(listed), "members": listed}


def test_an_open_with_presence_joins_and_lists_the_members(
    history: MemoryHistory, presence: MemoryPresence
) -> None:
    first = serve(opening(connection="c1"), history, presence, presence=True, user="ann")
    assert sent(first)[-1] == members_message(("c1", "ann"))
    assert [m.client for m in first.joined] == ["c1"]
    assert first.notices == [
        (
            "room",
            json.dumps(
                {"grip": "join", "channel": "room", "client": "c1", "user": "ann", "info": None},
                separators=(",", ":"),
            ),
        )
    ]
    assert headers(first)["Set-Meta-grip-presence"] == "1"
    second = serve(opening(connection="c2"), history, presence, presence=True, user="bob")
    assert sent(second)[-1] == members_message(("c1", "ann"), ("c2", "bob"))
    assert [m.user for m in second.members["room"]] == ["ann", "bob"]


def test_a_members_list_too_long_for_one_frame_is_cut_and_says_so(
    history: MemoryHistory, presence: MemoryPresence
) -> None:
    for n in range(300):
        presence.sync.join("room", f"client-{n:03}", ttl=60, user="a name of some length")
    reply = serve(opening(connection="late"), history, presence, presence=True, user="zed")
    status, _, body = reply.ws.to_response()
    [members] = [
        e.content for e in decode_websocket_events(body) if e.content and b'"members"' in e.content
    ]
    assert len(members) <= 15_000 + 2  # m: and the JSON: one WebSocket frame
    message = json.loads(members[2:])
    assert message["count"] == 301 and message["truncated"] is True
    listed = [m["client"] for m in message["members"]]
    assert 100 < len(listed) < 301 and listed == sorted(listed)[: len(listed)]
    assert len(reply.members["room"]) == 301  # the server side has them all


def test_a_close_and_a_disconnect_leave_at_once(
    history: MemoryHistory, presence: MemoryPresence
) -> None:
    for client in ("c1", "c2", "c3"):
        serve(opening(connection=client), history, presence, presence=True)
    closed = serve(
        later(WebSocketEvent("CLOSE", b"\x03\xe8"), presence=True, connection="c1"),
        history,
        presence,
        presence=True,
    )
    vanished = serve(
        later(WebSocketEvent("DISCONNECT"), presence=True, connection="c2"),
        history,
        presence,
        presence=True,
    )
    assert [m.client for m in closed.left] == ["c1"]
    assert [m.client for m in vanished.left] == ["c2"]
    assert json.loads(vanished.notices[0][1])["grip"] == "leave"
    assert [m.client for m in presence.sync.members("room")] == ["c3"]


def test_a_silent_member_expires_and_the_next_keep_alive_sweep_announces_it(
    history: MemoryHistory, presence: MemoryPresence, clock: FakeClock
) -> None:
    for client in ("quiet", "chatty"):
        serve(opening(connection=client), history, presence, presence=True)
    # Within keep_alive + margin (30 s), a pong or a message keeps a member.
    clock.now += 25
    pong = serve(
        later(WebSocketEvent("PONG"), presence=True, connection="chatty"),
        history,
        presence,
        presence=True,
    )
    assert pong.left == [] and pong.joined == []
    clock.now += 10  # "quiet" last answered 35 s ago
    assert [m.client for m in presence.sync.members("room")] == ["chatty"]
    sweep = serve(later(presence=True, connection="chatty"), history, presence, presence=True)
    assert [m.client for m in sweep.left] == ["quiet"]
    assert json.loads(sweep.notices[0][1]) == {
        "grip": "leave",
        "channel": "room",
        "client": "quiet",
        "user": None,
        "info": None,
    }
    # It is announced once: the next sweep finds nothing.
    assert (
        serve(later(presence=True, connection="chatty"), history, presence, presence=True).left
        == []
    )


def test_a_member_that_answers_after_it_expired_joins_again(
    history: MemoryHistory, presence: MemoryPresence, clock: FakeClock
) -> None:
    serve(opening(connection="c1"), history, presence, presence=True, user="ann")
    clock.now += 60
    back = serve(
        later(text("still here"), presence=True, connection="c1"),
        history,
        presence,
        presence=True,
        user="ann",
    )
    assert [m.user for m in back.joined] == ["ann"]
    assert back.messages == ["still here"]


def test_a_second_open_of_one_connection_and_a_late_close_announce_nothing_twice(
    history: MemoryHistory, presence: MemoryPresence, clock: FakeClock
) -> None:
    serve(opening(connection="c1"), history, presence, presence=True)
    again = serve(opening(connection="c1"), history, presence, presence=True)
    assert again.joined == [] and again.notices == []
    clock.now += 60
    serve(later(presence=True, connection="c2"), history, presence, presence=True)  # sweeps c1
    late = serve(
        later(WebSocketEvent("DISCONNECT"), presence=True, connection="c1"),
        history,
        presence,
        presence=True,
    )
    assert late.left == [] and late.notices == []


def test_without_presence_no_presence_store_is_used(history: MemoryHistory) -> None:
    reply = serve(later(WebSocketEvent("CLOSE")), history)
    assert reply.left == [] and reply.notices == []


def test_presence_needs_a_presence_store(history: MemoryHistory) -> None:
    steps = websocket_steps(opening(), SocketOptions(("room",), presence=True))
    with pytest.raises(GripConfigError, match="presence store"):
        run_sync(steps, history.sync)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"channels": ()}, "at least one channel"),
        ({"channels": ("a", "a")}, "channels repeat"),
        ({"history": -1}, "history must be 0 or more"),
        ({"page_size": 0}, "page_size must be 1 or more"),
        ({"keep_alive": 0}, "keep_alive must be 1 or more"),
        ({"presence_margin": float("nan")}, "presence_margin must be above 0"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], problem: str) -> None:
    options.setdefault("channels", ("room",))
    with pytest.raises(ValueError, match=problem):
        SocketOptions(**options)


def test_info_must_be_json() -> None:
    with pytest.raises(TypeError):
        SocketOptions(("room",), info=object())


def test_a_presence_notice_names_the_member() -> None:
    member = MemoryPresence().sync
    member.join("room", "c9", ttl=30, user="zoe", info={"colour": "red"})
    [joined] = member.members("room")
    assert json.loads(presence_notice("join", joined)) == {
        "grip": "join",
        "channel": "room",
        "client": "c9",
        "user": "zoe",
        "info": {"colour": "red"},
    }


def test_a_presence_call_reaches_the_store_with_its_arguments() -> None:
    store = MemoryPresence()

    def steps() -> Any:
        joined = yield PresenceCall("join", "room", ("c1",), {"ttl": 5, "user": "ann"})
        members = yield PresenceCall("members", "room")
        return joined, [m.user for m in members]

    assert run_sync(steps(), MemoryHistory().sync, presence=store.sync) == (True, ["ann"])


# --- The adapters -------------------------------------------------------------------------------

KEY = "a-verify-key-for-the-websocket-tests"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}"
proxy = GripTestProxy(key=KEY)


class Published:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.fail = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.fail:
            return httpx.Response(503, text="proxy down")
        self.items.extend(json.loads(request.content)["items"])
        return httpx.Response(200, text="Published\n")


async def chat(request: Request) -> Response:
    socket = await get_events(request).websocket(
        request.path_params["room"], presence=True, user=request.query_params.get("user")
    )
    for message in socket.messages:
        assert isinstance(message, str)
        await request.app.state.publisher.publish_reliable(request.path_params["room"], message)
    return Response()


async def who(request: Request) -> Response:
    members = await get_events(request).members(request.path_params["room"])
    return Response(json.dumps([m.user for m in members]))


async def not_a_socket(request: Request) -> Response:
    await get_events(request).websocket("room")
    return Response()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def client(
    history: MemoryHistory, presence: MemoryPresence, published: Published
) -> Iterator[TestClient]:
    app = Starlette(
        routes=[
            Route("/chat/{room}", chat, methods=["POST"]),
            Route("/who/{room}", who),
            Route("/plain", not_a_socket),
        ]
    )
    transport = httpx.MockTransport(published.handler)
    publisher = Publisher(
        GripSettings.build("https://pushpin.test/"),
        client=httpx.AsyncClient(transport=transport),
        history=history,
        presence=presence,
        retries=0,
    )
    app.state.publisher = publisher
    wrapped = GripMiddleware(app, grip=GRIP_URL, publisher=publisher)
    with TestClient(wrapped) as test_client:
        yield test_client


def post(
    client: TestClient, path: str, *events: WebSocketEvent, meta: dict[str, str] | None = None
) -> httpx.Response:
    request = proxy.websocket(*events, connection_id=CONNECTION, meta=meta)
    response: httpx.Response = client.post(path, **request.kwargs())
    return response


def test_the_starlette_adapter_resumes_joins_and_publishes_the_notices(
    client: TestClient, history: MemoryHistory, published: Published
) -> None:
    fill(history, "room", 3)
    answer = post(client, "/chat/room?user=ann&last_event_id=room:1", WebSocketEvent("OPEN"))
    events = decode_websocket_events(answer.content)
    replayed = events[1].content or b""
    assert json.loads(replayed.removeprefix(b"m:")) == batch(event("room", 2), event("room", 3))
    [notice] = published.items
    assert notice["channel"] == "reliable:room"
    assert json.loads(notice["formats"]["ws-message"]["content"])["grip"] == "join"
    assert json.loads(client.get("/who/room").content) == ["ann"]


def test_an_application_message_is_published_reliably(
    client: TestClient, history: MemoryHistory, published: Published
) -> None:
    meta = {"grip-channels": "room", "grip-presence": "1"}
    post(client, "/chat/room", WebSocketEvent("TEXT", b"hi all"), meta=meta)
    assert [e.data for e in history.sync.read("room")] == ["hi all"]
    assert json.loads(published.items[-1]["formats"]["ws-message"]["content"])["id"] == 1


def test_a_notice_that_cannot_be_published_is_logged_and_the_member_still_joins(
    client: TestClient, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    published.fail = True
    answer = post(client, "/chat/room?user=bob", WebSocketEvent("OPEN"))
    assert answer.status_code == 200
    assert "presence notice on 'room' not published" in caplog.text
    assert json.loads(client.get("/who/room").content) == ["bob"]


def test_websocket_on_a_plain_request_is_a_clear_error(client: TestClient) -> None:
    with pytest.raises(GripProtocolError, match="needs a WebSocket-over-HTTP request"):
        client.get("/plain")


def test_the_blocking_notice_publisher_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    from grip_asgi import SyncPublisher

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="down")

    with SyncPublisher(
        GripSettings.build("https://pushpin.test/"),
        client=httpx.Client(transport=httpx.MockTransport(refuse)),
        retries=0,
    ) as publisher:
        publish_notices_sync(publisher, [("room", '{"grip":"join"}')])
    assert "presence notice on 'room' not published" in caplog.text


@pytest.mark.anyio
async def test_the_asyncio_driver_runs_the_same_rules(
    history: MemoryHistory, presence: MemoryPresence
) -> None:
    fill(history, "room", 2)
    steps = websocket_steps(
        opening({"last_event_id": "room:1"}), SocketOptions(("room",), presence=True)
    )
    reply = await run(steps, history, presence=presence)
    assert sent(reply)[1] == batch(event("room", 2))
    assert reply.members["room"][0].client == CONNECTION


def test_websocket_recoveries_are_counted(history: MemoryHistory) -> None:
    from prometheus_client import CollectorRegistry

    from grip_asgi import metrics

    fill(history, "room", 8)
    metrics.enable(CollectorRegistry())
    try:
        serve(opening({"last_event_id": "room:6"}), history)
        serve(later(text({"grip": "sync", "last_event_id": "room:1"})), history)
        recorder = metrics._recorder
        assert recorder is not None
        assert recorder.recoveries["websocket"] == 2
        assert recorder.recovered_events["websocket"] == 2
        assert recorder.recovery_resets["websocket"] == 1
    finally:
        metrics.disable()
