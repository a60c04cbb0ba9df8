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
from grip_asgi.testing import GripTestProxy, read_instruct
from grip_django import (
    alongpoll_response,
    asse_response,
    is_next_link,
    longpoll_response,
    sse_response,
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


def link_check(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json.dumps(is_next_link(request)), content_type="application/json")


urlpatterns = [
    path("sync/events/<str:channel>", sync_sse),
    path("async/events/<str:channel>", async_sse),
    path("sync/poll/<str:channel>", sync_poll),
    path("async/poll/<str:channel>", async_poll),
    path("link", link_check),
]


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
