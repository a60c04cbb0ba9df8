"""grip_django's recoverable views, sync and async, through Django's whole request stack.

The rules are ``grip_asgi._recovery``'s (tested in ``tests/test_recovery.py``); these tests
show the Django adapter hands them the right request and history, and answers as they say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from grip_asgi._recovery import LINK_PARAM, link_signer_for
from grip_asgi.history import HistoryStore
from grip_asgi.testing import (
    GripTestProxy,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)
from grip_django import (
    alongpoll_response,
    amembers,
    asse_response,
    awebsocket_events,
    is_next_link,
    longpoll_response,
    members,
    sse_response,
    websocket_events,
)
from grip_django.conf import grip_conf

from .settings import GRIP_KEY

proxy = GripTestProxy(key=GRIP_KEY)


def sync_sse(request: HttpRequest, channel: str) -> HttpResponse:
    return sse_response(request, channel, history=int(request.GET.get("history", 0)))


async def async_sse(request: HttpRequest, channel: str) -> HttpResponse:
    return await asse_response(request, channel, history=int(request.GET.get("history", 0)))


def sync_poll(request: HttpRequest, channel: str) -> HttpResponse:
    return longpoll_response(request, channel, timeout=30)


async def async_poll(request: HttpRequest, channel: str) -> HttpResponse:
    return await alongpoll_response(request, channel, timeout=30)


def sync_chat(request: HttpRequest, room: str) -> HttpResponse:
    socket = websocket_events(request, room, presence=True, user=request.GET.get("user"))
    for message in socket.messages:
        assert isinstance(message, str)
        publish_reliable(room, message)
    return HttpResponse()


async def async_chat(request: HttpRequest, room: str) -> HttpResponse:
    socket = await awebsocket_events(request, room, presence=True, user=request.GET.get("user"))
    for message in socket.messages:
        assert isinstance(message, str)
        await apublish_reliable(room, message)
    return HttpResponse()


def sync_who(request: HttpRequest, room: str) -> HttpResponse:
    return HttpResponse(json.dumps([m.user for m in members(room)]))


async def async_who(request: HttpRequest, room: str) -> HttpResponse:
    return HttpResponse(json.dumps([m.user for m in await amembers(room)]))


def link_check(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json.dumps(is_next_link(request)), content_type="application/json")


urlpatterns = [
    path("sync/events/<str:channel>", sync_sse),
    path("async/events/<str:channel>", async_sse),
    path("sync/poll/<str:channel>", sync_poll),
    path("async/poll/<str:channel>", async_poll),
    path("sync/chat/<str:room>", sync_chat),
    path("async/chat/<str:room>", async_chat),
    path("sync/who/<str:room>", sync_who),
    path("async/who/<str:room>", async_who),
    path("link", link_check),
]


from grip_django import apublish_reliable, publish_reliable  # noqa: E402 (the views above)


@pytest.fixture(autouse=True)
def _memory_history() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__, GRIP_HISTORY_URL="memory:"):
        yield


@pytest.fixture
def history() -> HistoryStore:
    return grip_conf.history


async def get(mode: str, url: str, **headers: str) -> Any:
    if mode == "async":
        return await AsyncClient().get(f"/async{url}", headers=headers)
    return await sync_to_async(Client().get)(f"/sync{url}", headers=headers)


def sse_ids(body: bytes) -> list[str]:
    return [line[4:] for line in body.decode().split("\n") if line.startswith("id: ")]


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
@pytest.mark.anyio
async def test_a_reconnecting_client_gets_what_it_missed_then_the_hold(
    mode: str, history: HistoryStore
) -> None:
    for n in range(4):
        await history.append("news", f"50% {n + 1}")
    response = await get(mode, "/events/news", **proxy.headers(), **{"Last-Event-ID": "news:2"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert sse_ids(response.content) == ["news:3", "news:4"]
    assert b"data: 50%% 3" in response.content  # a template for Pushpin's build-id
    instruct = read_instruct(response)
    assert instruct.hold == "stream"
    assert [(c.name, c.prev_id, c.filters) for c in instruct.channels] == [
        ("reliable:news", "4", ("build-id",))
    ]


@MODES
@pytest.mark.anyio
async def test_a_new_subscriber_gets_the_latest_history(mode: str, history: HistoryStore) -> None:
    for n in range(3):
        await history.append("chat", f"m{n + 1}")
    response = await get(mode, "/events/chat?history=2", **proxy.headers())
    assert sse_ids(response.content) == ["chat:2", "chat:3"]


@MODES
@pytest.mark.anyio
async def test_next_links_are_signed_with_the_secret_key(mode: str, history: HistoryStore) -> None:
    response = await get(mode, "/events/news", **proxy.headers())
    [link] = read_instruct(response).links
    token = link.split(f"{LINK_PARAM}=")[1].split(">")[0]
    assert link_signer_for(grip_conf.settings).verify(token, 0)[0] == ("news",)
    with override_settings(SECRET_KEY="another-secret-key-entirely"):
        refused = await get(mode, f"/events/news?{LINK_PARAM}={token}", **proxy.headers())
    assert refused.status_code == 403 and b"not valid" in refused.content


@MODES
@pytest.mark.anyio
async def test_a_bad_channel_name_is_a_400(mode: str) -> None:
    response = await get(mode, "/events/a%2Cb", **proxy.headers())
    assert response.status_code == 400 and b"channel" in response.content


@MODES
@pytest.mark.anyio
async def test_a_long_poll_gets_missed_events_at_once_or_is_held(
    mode: str, history: HistoryStore
) -> None:
    await history.append("q", "first")
    missed = await get(mode, "/poll/q?last_event_id=q:0", **proxy.headers())
    assert missed.json() == {
        "events": [{"channel": "q", "id": 1, "data": "first"}],
        "last_event_id": "q:1",
    }
    held = await get(mode, "/poll/q?last_event_id=q:1", **proxy.headers())
    instruct = read_instruct(held)
    assert (instruct.hold, instruct.timeout, instruct.channels[0].prev_id) == ("response", 30, "1")


def test_is_next_link_only_for_the_proxy(history: HistoryStore) -> None:
    token = link_signer_for(grip_conf.settings).sign(["news"], None, 0, 10**10)
    assert Client().get(f"/link?{LINK_PARAM}={token}", headers=proxy.headers()).json() is True
    assert Client().get(f"/link?{LINK_PARAM}={token}").json() is False


def test_the_history_follows_the_setting() -> None:
    first = grip_conf.history
    with override_settings(GRIP_HISTORY_URL="memory:?max_events=3"):
        assert grip_conf.history is not first
        assert grip_conf.history.retention.max_events == 3


def test_the_members_are_kept_beside_a_history_that_limits_retention() -> None:
    from grip_asgi.presence import MemoryPresence

    with override_settings(GRIP_HISTORY_URL="memory:?max_events=3"):
        assert isinstance(grip_conf.presence, MemoryPresence)


def test_without_the_middleware_the_views_say_what_is_missing() -> None:
    from django.test import RequestFactory

    with pytest.raises(RuntimeError, match="GripMiddleware"):
        sse_response(RequestFactory().get("/"), "news")


@MODES
@pytest.mark.anyio
async def test_publish_reliable_feeds_the_recoverable_views(
    mode: str, history: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publishers share the views' history (memory: here, so sharing is the only way)."""
    from grip_django import apublish_reliable, publish_reliable
    from grip_django.publish import get_async_publisher, get_publisher

    sent: list[Any] = []

    def no_proxy(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(args)

    async def no_proxy_async(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(args)

    monkeypatch.setattr(type(get_publisher()), "publish", no_proxy)
    monkeypatch.setattr(type(get_async_publisher()), "publish", no_proxy_async)
    if mode == "async":
        stored = await apublish_reliable("feed", "from a view", event="note")
    else:
        stored = await sync_to_async(publish_reliable)("feed", "from a view", event="note")
    assert (stored.id, sent[0][0]) == (1, "reliable:feed")
    response = await get(mode, "/events/feed", **proxy.headers(), **{"Last-Event-ID": "feed:0"})
    assert b"event: note\nid: feed:1\ndata: from a view\n\n" in response.content


async def post(mode: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
    kind = headers.pop("Content-Type", "")
    if mode == "async":
        return await AsyncClient().post(f"/async{url}", body, kind, headers=headers)
    return await sync_to_async(Client().post)(f"/sync{url}", body, kind, headers=headers)


@MODES
@pytest.mark.anyio
async def test_a_reliable_websocket_resumes_joins_and_publishes_what_members_say(
    mode: str, history: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grip_django.publish import get_async_publisher, get_publisher

    sent: list[Any] = []

    def no_proxy(self: Any, channel: str, item: Any) -> None:
        sent.append((channel, item.to_dict(channel)))

    async def no_proxy_async(self: Any, channel: str, item: Any) -> None:
        sent.append((channel, item.to_dict(channel)))

    monkeypatch.setattr(type(get_publisher()), "publish", no_proxy)
    monkeypatch.setattr(type(get_async_publisher()), "publish", no_proxy_async)
    for text in ("one", "two"):
        await history.append("room", text)
    opened = proxy.websocket(open_event(), connection_id="c1")
    answer = await post(
        mode, "/chat/room?user=ann&last_event_id=room:1", opened.content, opened.headers
    )
    reply = read_websocket_reply(answer)
    replayed = {"grip": "events", "events": [{"channel": "room", "id": 2, "data": "two"}]}
    assert json.loads(reply.messages[0]) == replayed
    assert reply.subscriptions == ["reliable:room"]
    assert reply.set_meta["grip-channels"] == "room"
    notice = json.loads(sent[0][1]["formats"]["ws-message"]["content"])
    assert (sent[0][0], notice["grip"], notice["user"]) == ("reliable:room", "join", "ann")
    who = await get(mode, "/who/room")
    assert json.loads(who.content) == ["ann"]

    said = proxy.websocket(text_event("three"), connection_id="c1", meta=reply.set_meta)
    assert (await post(mode, "/chat/room", said.content, said.headers)).status_code == 200
    assert [e.data for e in await history.read("room")] == ["one", "two", "three"]


def test_a_reliable_websocket_view_needs_a_websocket_request() -> None:
    from grip_asgi import GripProtocolError

    with pytest.raises(GripProtocolError, match="WebSocket-over-HTTP"):
        Client().post("/sync/chat/room", b"", "", headers=proxy.headers())
