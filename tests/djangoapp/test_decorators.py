"""websocket_only, set_hold_longpoll and set_hold_stream, on sync and async views."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path

from grip_asgi._errors import InstructAlreadyStartedError
from grip_asgi.testing import GripTestProxy, open_event, read_instruct, text_event
from grip_django import GripHttpRequest, set_hold_longpoll, set_hold_stream, websocket_only
from grip_django.middleware import GripMiddleware

from .settings import GRIP_KEY

proxy = GripTestProxy(key=GRIP_KEY)


@websocket_only
def sync_echo(request: GripHttpRequest) -> None:
    ws = request.grip.ws
    assert ws is not None
    ws.accept()
    for message in ws:
        ws.send(message)


@websocket_only
async def async_echo(request: GripHttpRequest, room: str) -> None:
    ws = request.grip.ws
    assert ws is not None
    ws.accept()
    async for message in ws:
        assert isinstance(message, str)
        ws.send(f"{room}: {message}")


@websocket_only
def answers_itself(request: GripHttpRequest) -> HttpResponse:
    return HttpResponse("custom", status=403)


@websocket_only
async def async_answers_itself(request: GripHttpRequest) -> HttpResponse:
    return HttpResponse("custom", status=403)


urlpatterns = [
    path("sync", sync_echo),
    path("async/<str:room>", async_echo),
    path("refuses", answers_itself),
    path("async-refuses", async_answers_itself),
]


def ws_kwargs(*events: Any) -> dict[str, Any]:
    request = proxy.websocket(*events)
    headers = dict(request.headers)
    return {
        "data": request.content,
        "content_type": headers.pop("Content-Type"),
        "headers": headers,
    }


@override_settings(ROOT_URLCONF=__name__)
def test_sync_websocket_view_through_the_client_with_csrf_checks() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/sync", **ws_kwargs(open_event(), text_event("hi")))
    assert response.status_code == 200
    assert response.content == b"OPEN\r\nTEXT 4\r\nm:hi\r\n"


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.anyio
async def test_async_websocket_view_through_the_async_client_with_csrf_checks() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.post("/async/lobby", **ws_kwargs(open_event(), text_event("hi")))
    assert response.status_code == 200
    assert response.content == b"OPEN\r\nTEXT b\r\nm:lobby: hi\r\n"


@pytest.mark.parametrize("url", ["/sync", "/async/lobby"])
@override_settings(ROOT_URLCONF=__name__)
def test_other_requests_get_400(url: str) -> None:
    for response in (
        Client().get(url),
        Client().post(url, data=b"OPEN\r\n", content_type="application/websocket-events"),
        Client().get(url, headers=proxy.headers()),
    ):
        assert response.status_code == 400
        assert response.content == b"Not a WebSocket-over-HTTP request\n"


@pytest.mark.parametrize("url", ["/refuses", "/async-refuses"])
@override_settings(ROOT_URLCONF=__name__)
def test_a_view_response_other_than_none_is_kept(url: str) -> None:
    response = Client().post(url, **ws_kwargs(open_event()))
    assert (response.status_code, response.content) == (403, b"custom")


def test_decorated_views_keep_their_identity_and_kind() -> None:
    assert sync_echo.__name__ == "sync_echo" and async_echo.__name__ == "async_echo"
    assert getattr(sync_echo, "csrf_exempt", False) and getattr(async_echo, "csrf_exempt", False)
    from asgiref.sync import iscoroutinefunction

    assert iscoroutinefunction(async_echo) and not iscoroutinefunction(sync_echo)


def test_without_the_middleware_the_error_says_what_to_add() -> None:
    request = RequestFactory().post("/sync")
    with pytest.raises(RuntimeError, match="add 'grip_django.middleware.GripMiddleware'"):
        sync_echo(request)  # type: ignore[arg-type]  # the point: a request without grip


def run(view: Any, headers: dict[str, str]) -> HttpResponseBase:
    response = GripMiddleware(view)(RequestFactory().get("/", headers=headers))
    assert isinstance(response, HttpResponseBase)
    return response


def test_set_hold_longpoll() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        set_hold_longpoll(request, ["a", "b"], timeout=20)
        return HttpResponse("timeout")

    instruct = read_instruct(run(view, proxy.headers()))  # type: ignore[arg-type]
    assert (instruct.hold, instruct.channel_names, instruct.timeout) == ("response", ["a", "b"], 20)


@pytest.mark.parametrize(
    ("keep_alive", "header"),
    [
        ({}, None),
        ({"keep_alive_data": ":\n\n"}, ":\\n\\n; format=cstring; timeout=55"),
        ({"keep_alive_data": b"\x00", "keep_alive_timeout": 20}, "AA==; format=base64; timeout=20"),
    ],
)
def test_set_hold_stream(keep_alive: dict[str, Any], header: str | None) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        instruct = set_hold_stream(request, "news", **keep_alive)
        instruct.set_meta("user", "ann")  # the instruct comes back for more
        return HttpResponse("[open]")

    response = run(view, proxy.headers())
    assert response["Grip-Hold"] == "stream" and response["Grip-Channel"] == "news"
    assert response.get("Grip-Keep-Alive") == header
    assert response["Grip-Set-Meta"] == 'user="ann"'


def test_the_helpers_add_to_an_instruct_already_started() -> None:
    def view(request: GripHttpRequest) -> HttpResponse:
        request.grip.start_instruct().set_next_link("/next")
        set_hold_stream(request, "s")
        with pytest.raises(InstructAlreadyStartedError):
            request.grip.start_instruct()
        return HttpResponse()

    response = run(view, proxy.headers())
    assert response["Grip-Link"] == "</next>; rel=next" and response["Grip-Hold"] == "stream"


def hold_both_ways(request: HttpRequest) -> HttpResponse:
    set_hold_longpoll(request, "c", timeout=20)
    set_hold_stream(request, "s")
    return HttpResponse("no news")


urlpatterns += [path("hold", hold_both_ways)]


@pytest.mark.parametrize("headers", [{}, {"Grip-Sig": "forged"}])
def test_the_helpers_drop_holds_for_direct_requests_as_django_grip_did(
    headers: dict[str, str],
) -> None:
    """A view serving proxied and direct clients alike keeps working for the direct ones."""
    response = run(hold_both_ways, headers)
    assert (response.status_code, response.content) == (200, b"no news")  # type: ignore[attr-defined]
    assert not any(name.lower().startswith("grip-") for name in response.headers)


@override_settings(GRIP_PROXY_REQUIRED=True, ROOT_URLCONF=__name__)
@pytest.mark.parametrize("client_class", [Client, AsyncClient])
@pytest.mark.anyio
async def test_with_proxy_required_the_helpers_answer_direct_requests_501(
    client_class: type[Client] | type[AsyncClient],
) -> None:
    response: HttpResponseBase
    if client_class is AsyncClient:
        response = await AsyncClient().get("/hold")
    else:
        response = await sync_to_async(Client().get)("/hold")
    assert isinstance(response, HttpResponse)
    assert response.status_code == 501
    assert response.content == b"Not Implemented: this endpoint needs a GRIP proxy\n"
    assert "Grip-Hold" not in response.headers


def test_with_proxy_required_a_signed_hold_still_works() -> None:
    with override_settings(GRIP_PROXY_REQUIRED=True):
        response = run(hold_both_ways, proxy.headers())
    assert (response["Grip-Hold"], response["Grip-Channel"]) == ("stream", "c, s")
