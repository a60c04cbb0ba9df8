"""GripMiddleware with RequestFactory and AsyncRequestFactory, in sync and in async mode."""

from __future__ import annotations

import copy
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncRequestFactory, RequestFactory, override_settings

from grip_asgi._context import GripContext
from grip_asgi._errors import InstructTooLateError
from grip_asgi._instruct import GripInstruct
from grip_asgi._websocket import WebSocketEvent
from grip_asgi.testing import (
    GripTestProxy,
    close_event,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)
from grip_django import GripMiddleware
from grip_django.conf import grip_conf

from .settings import GRIP_KEY, GRIP_URL

proxy = GripTestProxy(key=GRIP_KEY)
View = Callable[[HttpRequest], HttpResponseBase]


def run_sync(view: View, request: HttpRequest) -> HttpResponseBase:
    middleware = GripMiddleware(view)
    assert not iscoroutinefunction(middleware)
    response = middleware(request)
    assert isinstance(response, HttpResponseBase)
    return response


async def run_async(view: View, request: HttpRequest) -> HttpResponseBase:
    async def get_response(request: HttpRequest) -> HttpResponseBase:
        return view(request)

    middleware = GripMiddleware(get_response)
    assert iscoroutinefunction(middleware)
    response = middleware(request)
    assert not isinstance(response, HttpResponseBase)  # an awaitable
    result: HttpResponseBase = await response
    return result


def get(headers: dict[str, str] | None = None) -> HttpRequest:
    return RequestFactory().get("/", headers=headers)


def post_websocket(
    *events: WebSocketEvent,
    factory: type[RequestFactory] | type[AsyncRequestFactory] = RequestFactory,
    body: bytes | None = None,
    meta: dict[str, str] | None = None,
) -> HttpRequest:
    """A signed WebSocket-over-HTTP POST carrying ``events`` (or ``body``)."""
    request = proxy.websocket(*events, meta=meta)
    headers = dict(request.headers)
    content_type = headers.pop("Content-Type")
    data = request.content if body is None else body
    return factory().post("/ws", data=data, content_type=content_type, headers=headers)


def apost_websocket(*events: WebSocketEvent) -> HttpRequest:
    return post_websocket(*events, factory=AsyncRequestFactory)


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def echo(request: HttpRequest) -> HttpResponse:
    ws = request.grip.ws  # type: ignore[attr-defined]
    assert ws is not None and request.wscontext is ws  # type: ignore[attr-defined]
    if ws.is_opening():
        ws.accept()
    for message in ws:
        ws.send(message)
    return HttpResponse("ignored", headers={"Content-Length": "7", "X-App": "kept"})


def test_the_middleware_is_sync_and_async_capable() -> None:
    assert GripMiddleware.sync_capable and GripMiddleware.async_capable


def test_unproxied_request_passes_through_untouched() -> None:
    seen: list[GripContext] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.grip)  # type: ignore[attr-defined]
        assert request.wscontext is None  # type: ignore[attr-defined]
        return HttpResponse("ok")

    response = run_sync(view, get())
    assert response.status_code == 200 and not response.has_header("Grip-Hold")
    assert not seen[0].is_proxied and not seen[0].proxied and seen[0].needs_signed


def test_signed_request_is_proxied_with_last_and_features() -> None:
    seen: list[GripContext] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.grip)  # type: ignore[attr-defined]
        return HttpResponse("ok")

    request = get(proxy.headers(last={"a": "1", "b": "2"}))
    run_sync(view, request)
    grip = seen[0]
    assert grip.is_proxied and grip.is_signed and grip.proxied and grip.signed
    assert dict(grip.last) == {"a": "1", "b": "2"}
    assert "link:next" in grip.features


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda i: i.add_channel("news").set_hold_stream(),
            {"grip-hold": "stream", "grip-channel": "news"},
        ),
        (
            lambda i: i.add_channel("c", prev_id="p1", filters=["skip-self"]).set_hold_longpoll(
                timeout=20
            ),
            {
                "grip-hold": "response",
                "grip-channel": "c; prev-id=p1; filter=skip-self",
                "grip-timeout": "20",
            },
        ),
        (
            lambda i: i.add_channel("s").set_hold_stream().set_keep_alive(b"\x00\x01", 10),
            {"grip-keep-alive": "AAE=; format=base64; timeout=10"},
        ),
        (
            lambda i: (
                i.set_keep_alive("ping", 15, mode="interval").add_channel("s").set_hold_stream()
            ),
            {"grip-keep-alive": "ping; format=cstring; timeout=15; mode=interval"},
        ),
        (
            lambda i: i.set_meta("user", "ann").set_meta("room", "a b"),
            {"grip-set-meta": 'user="ann", room="a b"', "grip-hold": None},
        ),
        (
            lambda i: i.set_next_link("/next", timeout=30).set_gone_link("/gone"),
            {"grip-link": "</next>; rel=next; timeout=30, </gone>; rel=gone"},
        ),
        (lambda i: i.set_status(404, "Nothing Here"), {"grip-status": "404 Nothing Here"}),
        (lambda i: i.set_expose_headers(["X-A", "X-B"]), {"grip-expose-headers": "X-A, X-B"}),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_every_instruct_becomes_headers(
    build: Callable[[GripInstruct], object], expected: dict[str, str | None], mode: str
) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        build(request.grip.start_instruct())  # type: ignore[attr-defined]
        return HttpResponse("body")

    request = get(proxy.headers())
    response = run_sync(view, request) if mode == "sync" else await run_async(view, request)
    assert isinstance(response, HttpResponse) and response.status_code == 200
    for name, value in expected.items():
        assert response.get(name) == value, name
    assert response.content == b"body"


@override_settings(GRIP_PREFIX="app-")
def test_channels_get_the_prefix_and_instruct_reads_back() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        request.grip.start_instruct().add_channels(["a", "b"]).set_hold_stream()  # type: ignore[attr-defined]
        return HttpResponse("x")

    instruct = read_instruct(run_sync(view, get(proxy.headers())))  # type: ignore[arg-type]
    assert instruct.hold == "stream" and instruct.channel_names == ["app-a", "app-b"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_not_modified_with_instruct_becomes_200_with_grip_status(mode: str) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        request.grip.start_instruct().add_channel("c").set_hold_longpoll()  # type: ignore[attr-defined]
        return HttpResponse(status=304)

    request = get(proxy.headers())
    response = run_sync(view, request) if mode == "sync" else await run_async(view, request)
    assert (response.status_code, response.reason_phrase) == (200, "OK")
    assert response["Grip-Status"] == "304"


def _sync_stream(started: list[str]) -> Iterator[bytes]:
    started.append("sync")
    yield b"one"
    yield b"two"


async def _async_stream(started: list[str]) -> AsyncIterator[bytes]:
    started.append("async")
    yield b"one"
    yield b"two"


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_streaming_response_gets_headers_and_keeps_its_lazy_body(is_async: bool) -> None:
    started: list[str] = []

    def view(request: HttpRequest) -> StreamingHttpResponse:
        request.grip.start_instruct().add_channel("s").set_hold_stream()  # type: ignore[attr-defined]
        stream = _async_stream(started) if is_async else _sync_stream(started)
        return StreamingHttpResponse(stream)

    request = get(proxy.headers())
    response = await run_async(view, request) if is_async else run_sync(view, request)
    assert isinstance(response, StreamingHttpResponse)
    assert response["Grip-Hold"] == "stream"
    assert started == []  # nothing was read
    if is_async:
        assert [chunk async for chunk in response] == [b"one", b"two"]
    else:
        assert list(response) == [b"one", b"two"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_websocket_echo_replaces_the_reply_and_fixes_content_length(mode: str) -> None:
    if mode == "sync":
        request = post_websocket(open_event(), text_event("hello"))
        response = run_sync(echo, request)
    else:
        request = apost_websocket(open_event(), text_event("hello"))
        response = await run_async(echo, request)
    reply = read_websocket_reply(response)  # type: ignore[arg-type]
    assert reply.accepted and reply.grip_extension and reply.messages == ["hello"]
    assert response["Content-Length"] == str(len(response.content))  # type: ignore[attr-defined]
    assert response["X-App"] == "kept"


def test_websocket_reply_keeps_cookies() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = echo(request)
        response.set_cookie("session", "abc")
        return response

    response = run_sync(view, post_websocket(open_event()))
    assert response.cookies["session"].value == "abc"


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_d5_streaming_websocket_reply_is_replaced_unread(is_async: bool) -> None:
    """django-grip read ``len(response.content)``, which fails on a streaming response (D5)."""
    started: list[str] = []
    streams: list[Any] = []

    def view(request: HttpRequest) -> StreamingHttpResponse:
        echo(request)
        stream = _async_stream(started) if is_async else _sync_stream(started)
        streams.append(stream)
        return StreamingHttpResponse(stream)

    if is_async:
        response = await run_async(view, apost_websocket(open_event(), text_event("hi")))
    else:
        response = run_sync(view, post_websocket(open_event(), text_event("hi")))
    assert isinstance(response, StreamingHttpResponse)
    assert response.is_async is is_async  # the server gets the iterator kind it expects
    body = b"".join([chunk async for chunk in response] if is_async else response)
    assert body == b"OPEN\r\nTEXT 4\r\nm:hi\r\n"
    assert response["Content-Length"] == str(len(body))
    assert response["Content-Type"] == "application/websocket-events"
    assert started == []
    response.close()
    if not is_async:
        assert inspect.getgeneratorstate(streams[0]) == inspect.GEN_CLOSED


def test_websocket_reply_drops_the_views_content_encoding() -> None:
    """The events go out as plain bytes: a gzip header left from the view would lie."""

    def view(request: HttpRequest) -> HttpResponse:
        response = echo(request)
        response["Content-Encoding"] = "gzip"
        return response

    response = run_sync(view, post_websocket(open_event()))
    assert isinstance(response, HttpResponse)
    assert response.content == b"OPEN\r\n" and "Content-Encoding" not in response


def test_websocket_meta_with_dashes_round_trips() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        ws = request.grip.ws  # type: ignore[attr-defined]
        assert ws.meta == {"user-name": "ann"}
        ws.meta["user-name"] = "bob"
        return HttpResponse()

    response = run_sync(view, post_websocket(text_event("x"), meta={"User-Name": "ann"}))
    assert response["Set-Meta-user-name"] == "bob"


def test_websocket_reject_with_an_unusual_status() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        request.grip.ws.reject(499, "later")  # type: ignore[attr-defined]
        return HttpResponse(reason="Fine")

    response = run_sync(view, post_websocket(open_event()))
    assert (response.status_code, response.reason_phrase) == (499, "Unknown Status Code")
    assert response.content == b"later"  # type: ignore[attr-defined]


def test_websocket_client_close_is_echoed_in_place_of_a_204() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        assert list(request.grip.ws) == []  # type: ignore[attr-defined]
        return HttpResponse(status=204)

    response = run_sync(view, post_websocket(close_event(4000)))
    assert response.status_code == 200
    assert read_websocket_reply(response).close_code == 4000  # type: ignore[arg-type]


def test_websocket_reply_in_a_response_without_a_body_is_an_error() -> None:
    class Bare(HttpResponseBase):
        pass

    with pytest.raises(TypeError, match="cannot put a WebSocket-over-HTTP reply in a Bare"):
        run_sync(lambda request: Bare(), post_websocket(open_event()))


@override_settings(GRIP_MAX_BODY_SIZE=100_000, DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_djangos_own_body_limit_gives_413() -> None:
    response = run_sync(echo, post_websocket(open_event(), text_event("more than ten bytes")))
    assert response.status_code == 413
    assert response.content == b"WebSocket-over-HTTP body is over the 10-byte limit\n"  # type: ignore[attr-defined]


@override_settings(GRIP_MAX_BODY_SIZE=20)
@pytest.mark.anyio
async def test_body_larger_than_its_content_length_gives_413_under_asgi() -> None:
    """ASGI servers hand over the whole body; it is checked again once read."""
    request = apost_websocket(text_event("x" * 30))
    request.META["CONTENT_LENGTH"] = "5"
    response = await run_async(echo, request)
    assert response.status_code == 413
    assert b"over the 20-byte limit" in response.content  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_malformed_websocket_body_gets_400_before_the_view(mode: str) -> None:
    called: list[bool] = []

    def view(request: HttpRequest) -> HttpResponse:
        called.append(True)
        return HttpResponse()

    factory = RequestFactory if mode == "sync" else AsyncRequestFactory
    request = post_websocket(factory=factory, body=b"TEXT 5\r\nhi")
    response = run_sync(view, request) if mode == "sync" else await run_async(view, request)
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"content truncated" in response.content  # type: ignore[attr-defined]
    assert called == []


@override_settings(GRIP_PROXY_ONLY=True)
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_proxy_only_answers_501_to_direct_clients(mode: str) -> None:
    for headers, status in (({}, 501), ({"Grip-Sig": "forged"}, 501), (proxy.headers(), 200)):
        request = get(headers)
        response = run_sync(ok, request) if mode == "sync" else await run_async(ok, request)
        assert response.status_code == status
        assert isinstance(request.grip, GripContext)  # type: ignore[attr-defined]


def test_settings_changes_apply_to_the_next_request() -> None:
    request = get(proxy.headers())
    run_sync(ok, request)
    assert request.grip.is_signed  # type: ignore[attr-defined]
    with override_settings(GRIP_URL=GRIP_URL.replace(GRIP_KEY, "x" * 32)):
        request = get(proxy.headers())
        run_sync(ok, request)
        assert not request.grip.is_proxied  # type: ignore[attr-defined]
        assert request.grip.sig_error == "bad signature"  # type: ignore[attr-defined]


def test_d1_settings_are_never_modified() -> None:
    """django-grip appended GRIP_URL to GRIP_PROXIES on every signed request (D1)."""
    proxies = [{"control_uri": "http://127.0.0.1:5562", "control_iss": "other", "key": "k"}]
    before = copy.deepcopy(proxies)
    with override_settings(GRIP_PROXIES=proxies, GRIP_VERIFY_KEY="v" * 32):
        for _ in range(3):
            request = get(proxy.headers())
            run_sync(ok, request)
            assert request.grip.is_signed  # type: ignore[attr-defined]
            grip_conf.reload()  # as if the settings were read afresh every time
        assert [p.verify_key for p in grip_conf.settings.proxies] == [GRIP_KEY, "v" * 32]
    assert proxies == before


def test_d2_a_proxy_with_verify_key_and_no_key_works() -> None:
    """django-grip evaluated ``entry["key"]`` eagerly: KeyError, hence a 500 (D2)."""
    proxies = [{"control_uri": "http://127.0.0.1:5561", "verify_key": GRIP_KEY}]
    with override_settings(GRIP_URL=None, GRIP_PROXIES=proxies):
        request = get(proxy.headers())
        assert run_sync(ok, request).status_code == 200
        assert request.grip.is_signed  # type: ignore[attr-defined]
        request = get({"Grip-Sig": "forged"})
        assert run_sync(ok, request).status_code == 200
        assert not request.grip.is_proxied  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.anyio
async def test_not_modified_rewrite_drops_the_entitys_content_length(mode: str) -> None:
    """A 304 may carry the entity's Content-Length; the 200 that replaces it has no body."""

    def view(request: HttpRequest) -> HttpResponse:
        request.grip.start_instruct().add_channel("c").set_hold_longpoll()  # type: ignore[attr-defined]
        return HttpResponse(status=304, headers={"Content-Length": "1234", "ETag": '"v1"'})

    request = get(proxy.headers())
    response = run_sync(view, request) if mode == "sync" else await run_async(view, request)
    assert response.status_code == 200 and response["Grip-Status"] == "304"
    assert not response.has_header("Content-Length")
    assert response["ETag"] == '"v1"'


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_an_instruct_started_in_a_streaming_body_raises(is_async: bool) -> None:
    """The middleware read the instruct when the view returned: a later one would be lost."""

    def view(request: HttpRequest) -> StreamingHttpResponse:
        grip: GripContext = request.grip  # type: ignore[attr-defined]

        def late() -> Iterator[bytes]:
            yield b"[open]\n"
            grip.start_instruct().add_channel("late").set_hold_stream()
            yield b"never\n"  # pragma: no cover

        async def alate() -> AsyncIterator[bytes]:
            for chunk in late():
                yield chunk

        return StreamingHttpResponse(alate() if is_async else late())

    request = get(proxy.headers())
    response = await run_async(view, request) if is_async else run_sync(view, request)
    assert isinstance(response, StreamingHttpResponse) and not response.has_header("Grip-Hold")
    chunks: list[bytes] = []
    with pytest.raises(InstructTooLateError, match="after the response started"):
        if is_async:
            async for chunk in response:
                chunks.append(chunk)
        else:
            chunks.extend(response)
    assert chunks == [b"[open]\n"]
