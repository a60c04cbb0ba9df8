"""django-grip 3.5's behaviour, as cases run on django-grip itself and on our names.

The views are django-grip's README examples (streaming, long-polling, the WebSocket echo with
its broadcast endpoint) and the instructs of its repository's middleware tests, written anew:
its source distribution ships no tests. They call ``API.dg`` (django_grip's names) and
``API.gc`` (gripcontrol's), bound to the real libraries in the peer process and to
``grip_asgi.compat`` in ours. Requests go through Django's test client, so every middleware
hook runs as it does in a server. This module is also the ``ROOT_URLCONF`` of both.
"""

from __future__ import annotations

import json
import time
from struct import pack
from typing import Any

import jwt
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from django.test import Client, override_settings
from django.urls import path

from .harness import CaseRegistry, Harness, api, published_items, reply_events

KEY = "a-key-of-at-least-thirty-two-bytes"
ETAG = '"v1"'
#: Bound by prepare_peer, or by the test: ``API.dg`` and ``API.gc``.
API: Any = None

CASES = CaseRegistry()
case = CASES


def settings_for(capture_url: str) -> dict[str, Any]:
    """The GRIP settings both sides run with; the middleware is each side's own."""
    return {
        "GRIP_URL": f"{capture_url}/?iss=app&key={KEY}",
        "GRIP_VERIFY_KEY": None,
        "GRIP_PREFIX": "",
        "GRIP_PROXY_REQUIRED": False,
        "ROOT_URLCONF": __name__,
    }


def prepare_peer(h: Harness) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="compat",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[],
        MIDDLEWARE=["django_grip.GripMiddleware"],
        DATABASES={},
        **settings_for(h.capture.url),
    )
    django.setup()
    import django_grip  # builds its publisher at import, from the settings above
    import gripcontrol
    import pubcontrol

    bind(django_grip, gripcontrol, pubcontrol)
    h.api = API


def bind(django_grip: Any, gripcontrol: Any, pubcontrol: Any) -> None:
    global API
    API = api(dg=django_grip, gc=gripcontrol, pc=pubcontrol)


# --- The views ------------------------------------------------------------------------------


def stream(request: HttpRequest) -> HttpResponse:
    """django-grip's README: HTTP streaming."""
    if request.method == "GET":
        if not request.grip_proxied:  # type: ignore[attr-defined]
            return HttpResponse("Not Implemented\n", status=501)
        resp = HttpResponse("[stream open]\n", content_type="text/plain")
        API.dg.set_hold_stream(request, "test")
        return resp
    if request.method == "POST":
        API.dg.publish("test", API.gc.HttpStreamFormat(request.POST["data"] + "\n"))
        return HttpResponse("Ok\n")
    return HttpResponseNotAllowed(["GET", "POST"])


def longpoll(request: HttpRequest) -> HttpResponse:
    """django-grip's README: HTTP long-polling, with an ETag."""
    if request.method == "GET":
        if request.META.get("HTTP_IF_NONE_MATCH") == ETAG:
            resp: HttpResponse = HttpResponseNotModified()
            API.dg.set_hold_longpoll(request, "test", timeout=30)
        else:
            resp = HttpResponse("object v1\n")
        resp["ETag"] = ETAG
        return resp
    headers = {"ETag": '"v2"'}
    API.dg.publish("test", API.gc.HttpResponseFormat(body="object v2\n", headers=headers))
    return HttpResponse("Ok\n")


def echo(request: HttpRequest) -> HttpResponse | None:
    """django-grip's README: the WebSocket echo (decorated below)."""
    ws = request.wscontext  # type: ignore[attr-defined]
    if ws.is_opening():
        ws.accept()
        ws.subscribe("test")
    while ws.can_recv():
        message = ws.recv()
        if message is None:
            ws.close()
            break
        ws.send(message)
    return None


def broadcast(request: HttpRequest) -> HttpResponse:
    """django-grip's README: the echo's broadcast endpoint."""
    if request.method == "POST":
        API.dg.publish("test", API.gc.WebSocketMessageFormat(request.POST["data"]))
        return HttpResponse("Ok\n")
    return HttpResponseNotAllowed(["POST"])


def instruct(request: HttpRequest) -> HttpResponse:
    """What django-grip's middleware tests build: ``?hold=stream`` or channels and meta only."""
    instruct = request.grip.start_instruct()  # type: ignore[attr-defined]
    instruct.add_channel("apple")
    instruct.add_channel(API.gc.Channel("banana", prev_id="1"))
    if request.GET.get("hold") == "stream":
        instruct.set_hold_stream()
        instruct.set_next_link("/endpoint")
        instruct.set_keep_alive("keepalive\n", 25)
    else:
        instruct.meta = {"user": "123", "id_format": "channel_1:%(events-channel_1)s"}
    return HttpResponse()


def keep_alive(request: HttpRequest) -> HttpResponse:
    data: Any = request.GET["data"]
    if request.GET.get("bytes"):
        data = data.encode()
    API.dg.set_hold_stream(request, "test", keep_alive_data=data, keep_alive_timeout=20)
    return HttpResponse("[stream open]\n")


def attributes(request: HttpRequest) -> HttpResponse:
    grip: Any = request.grip  # type: ignore[attr-defined]
    seen = {
        "proxied": grip.proxied,
        "signed": grip.signed,
        "grip_proxied": request.grip_proxied,  # type: ignore[attr-defined]
        "grip_signed": request.grip_signed,  # type: ignore[attr-defined]
        "features": sorted(grip.features),
        "last": dict(grip.last),
        "wscontext": request.wscontext is not None,  # type: ignore[attr-defined]
    }
    return HttpResponse(json.dumps(seen), content_type="application/json")


def meta(request: HttpRequest) -> HttpResponse | None:
    """Change the connection's meta as ``?user=`` says (empty: delete it)."""
    ws = request.wscontext  # type: ignore[attr-defined]
    if ws.is_opening():
        ws.accept()
    user = request.GET["user"]
    if user:
        ws.meta["user"] = user
    else:
        del ws.meta["user"]
    return None


def streaming(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter(()))


def __getattr__(name: str) -> Any:
    """``urlpatterns``, made when Django first resolves a URL: after :func:`bind`, so that
    each side's ``websocket_only`` decorates the WebSocket views (django-grip's is read by
    its middleware's ``process_view``)."""
    if name != "urlpatterns":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    websocket_only = API.dg.websocket_only
    return [
        path("stream", stream),
        path("longpoll", longpoll),
        path("echo", websocket_only(echo)),
        path("meta", websocket_only(meta)),
        path("streaming", websocket_only(streaming)),
        path("broadcast", broadcast),
        path("instruct", instruct),
        path("keep-alive", keep_alive),
        path("attributes", attributes),
    ]


# --- Requests and what a client sees ---------------------------------------------------------


def grip_sig(key: str = KEY) -> str:
    return jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 3600}, key)


def signed(key: str = KEY, **headers: str) -> dict[str, str]:
    return {"HTTP_GRIP_SIG": grip_sig(key), **headers}


def seen(response: Any) -> dict[str, Any]:
    """The response as the proxy sees it: status, GRIP headers and the body."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    body = b"".join(response.streaming_content) if response.streaming else response.content
    out: dict[str, Any] = {
        "status": response.status_code,
        "grip": {
            name: value
            for name, value in sorted(headers.items())
            if name.startswith(("grip-", "set-meta-"))
            or name in ("etag", "sec-websocket-extensions")
        },
        "content_type": headers.get("content-type"),
    }
    if headers.get("content-type") == "application/websocket-events":
        out["events"] = reply_events(body)
    else:
        out["body"] = body.decode()
    return out


def get(path: str, **headers: Any) -> dict[str, Any]:
    return seen(Client().get(path, **headers))


def websocket(path: str, body: bytes, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = signed(HTTP_CONNECTION_ID="conn-1") if headers is None else headers
    response = Client().post(
        path, data=body, content_type="application/websocket-events", **headers
    )
    return seen(response)


def close_body(code: int) -> bytes:
    return b"CLOSE 2\r\n" + pack(">H", code) + b"\r\n"


# --- Holds and instructs --------------------------------------------------------------------


@case
def stream_hold_on_a_proxied_request(h: Harness) -> object:
    return get("/stream", **signed())


@case
def stream_on_a_direct_request(h: Harness) -> object:
    return get("/stream")


@case
def stream_with_a_forged_signature(h: Harness) -> object:
    return get("/stream", **signed("not-the-key-but-thirty-two-bytes!!"))


@case
def stream_with_a_prefix(h: Harness) -> object:
    with override_settings(GRIP_PREFIX="myapp-"):
        return get("/stream", **signed())


@case
def longpoll_hold_turns_304_into_grip_status(h: Harness) -> object:
    return get("/longpoll", HTTP_IF_NONE_MATCH=ETAG, **signed())


@case
def longpoll_with_a_changed_object_answers_at_once(h: Harness) -> object:
    return get("/longpoll", HTTP_IF_NONE_MATCH='"v0"', **signed())


@case
def instruct_stream_with_next_link_and_keep_alive(h: Harness) -> object:
    return get("/instruct?hold=stream", **signed())


@case
def instruct_channels_and_meta_without_a_hold(h: Harness) -> object:
    return get("/instruct", **signed())


@case
def instruct_on_a_direct_request(h: Harness) -> object:
    return get("/instruct?hold=stream")


@case
def set_hold_on_a_direct_request(h: Harness) -> object:
    return get("/keep-alive?data=x")


@case
def set_hold_on_a_direct_request_with_proxy_required(h: Harness) -> object:
    with override_settings(GRIP_PROXY_REQUIRED=True):
        response = get("/keep-alive?data=x")
    return response["status"], response["grip"]


@case
def keep_alive_text(h: Harness) -> object:
    return get("/keep-alive?data=keepalive%0A", **signed())


@case
def keep_alive_with_a_backslash(h: Harness) -> object:
    return get("/keep-alive?data=a%5Cb", **signed())


@case
def keep_alive_bytes(h: Harness) -> object:
    return get("/keep-alive?data=%01%02&bytes=1", **signed())


# --- request.grip -------------------------------------------------------------------------


@case
def attributes_of_a_proxied_request(h: Harness) -> object:
    headers = signed(
        HTTP_GRIP_FEATURE="status, link:next", HTTP_GRIP_LAST="a; last-id=1, b; last-id=2"
    )
    return get("/attributes", **headers)


@case
def attributes_of_a_direct_request(h: Harness) -> object:
    return get("/attributes")


@case
def attributes_with_no_key_configured(h: Harness) -> object:
    with override_settings(GRIP_URL=h.capture.url):
        return get("/attributes", HTTP_GRIP_SIG="anything")


@case
def proxies_setting_is_left_alone(h: Harness) -> object:
    proxies = [{"control_uri": h.capture.url, "key": KEY}]
    with override_settings(GRIP_PROXIES=proxies):
        statuses = [get("/attributes", **signed())["body"] for _ in range(3)]
        from django.conf import settings

        return statuses[-1], len(settings.GRIP_PROXIES)  # type: ignore[misc]


@case
def proxy_with_a_verify_key_and_no_key(h: Harness) -> object:
    proxies = [{"control_uri": h.capture.url, "verify_key": KEY}]
    with override_settings(GRIP_URL=None, GRIP_PROXIES=proxies):
        return get("/attributes", **signed())


# --- WebSockets -----------------------------------------------------------------------------


@case
def echo_refuses_a_plain_request(h: Harness) -> object:
    return get("/echo")["status"]


@case
def echo_open(h: Harness) -> object:
    return websocket("/echo", b"OPEN\r\n")


@case
def echo_open_with_a_prefix(h: Harness) -> object:
    with override_settings(GRIP_PREFIX="myapp-"):
        return websocket("/echo", b"OPEN\r\n")


@case
def echo_messages(h: Harness) -> object:
    return websocket("/echo", b"TEXT 5\r\nhello\r\nPING 1\r\np\r\nBINARY 2\r\n\x00\xff\r\n")


@case
def echo_client_close(h: Harness) -> object:
    return websocket("/echo", close_body(1000))


@case
def echo_client_disconnect(h: Harness) -> object:
    return websocket("/echo", b"DISCONNECT\r\n")


@case
def echo_body_from_a_direct_client(h: Harness) -> object:
    return websocket("/echo", b"OPEN\r\n", headers={"HTTP_CONNECTION_ID": "conn-1"})


@case
def meta_set_changed_and_removed(h: Harness) -> object:
    return [
        websocket("/meta?user=alice", b"OPEN\r\n"),
        websocket(
            "/meta?user=bob",
            b"TEXT 1\r\nx\r\n",
            headers=signed(HTTP_CONNECTION_ID="conn-1", HTTP_META_USER="alice"),
        ),
        websocket(
            "/meta?user=",
            b"TEXT 1\r\nx\r\n",
            headers=signed(HTTP_CONNECTION_ID="conn-1", HTTP_META_USER="bob"),
        ),
    ]


@case
def websocket_view_returning_a_streaming_response(h: Harness) -> object:
    return websocket("/streaming", b"TEXT 1\r\nx\r\n")


# --- Publishing -----------------------------------------------------------------------------


def published(h: Harness) -> list[dict[str, Any]]:
    API.dg.get_pubcontrol().wait_all_sent()
    return published_items(h.capture.take(), KEY)


@case
def publish_from_the_stream_view(h: Harness) -> object:
    response = Client().post("/stream", {"data": "hello"})
    return seen(response)["body"], published(h)


@case
def publish_from_the_broadcast_view_with_a_prefix(h: Harness) -> object:
    with override_settings(GRIP_PREFIX="myapp-"):
        response = Client().post("/broadcast", {"data": "hi all"})
        return seen(response)["body"], published(h)


@case
def publish_a_long_poll_response(h: Harness) -> object:
    Client().post("/longpoll")
    return published(h)


@case
def publish_blocking_with_ids_and_meta(h: Harness) -> object:
    fmt = API.gc.HttpStreamFormat("x")
    API.dg.publish("test", fmt, "2", "1", blocking=True, meta={"sender": "alice"})
    return published(h)


@case
def publish_non_blocking_with_a_callback(h: Harness) -> object:
    results: list[tuple[bool, Any]] = []
    fmt = API.gc.WebSocketMessageFormat("x")
    API.dg.publish("test", fmt, callback=lambda ok, message: results.append((ok, message)))
    items = published(h)
    return results, items
