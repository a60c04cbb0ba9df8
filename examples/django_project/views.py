"""The grip-asgi example on Django: WebSocket echo and chat, HTTP stream, SSE, long-poll, and
a recoverable SSE stream (``/events/<channel>``) that loses nothing across reconnects.

The same routes, with the same behaviour, as ``examples/fastapi_app.py``. Run it behind
Pushpin (route ``* 127.0.0.1:8000,over_http``), under ASGI or WSGI::

    export GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme'
    uvicorn examples.django_project.asgi:application --port 8000
    gunicorn examples.django_project.wsgi:application -b 127.0.0.1:8000 -w 2

Echo, chat and SSE are async views, the others sync: GripMiddleware runs natively either way.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from grip_asgi import (
    PublishError,
    WebSocketMessageFormat,
    encode_sse_event,
    parse_last_event_id,
)
from grip_django import (
    GripHttpRequest,
    apublish,
    apublish_reliable,
    asse_response,
    get_publisher,
    publish_reliable,
    set_hold_longpoll,
    set_hold_stream,
    websocket_only,
)
from grip_django.conf import grip_conf

from ..shared import BAD_ROOM, CHAT_HISTORY, CHAT_PAGE, LEAVE, NOT_PROXIED, ROOM_NAME

logger = logging.getLogger(__name__)


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """A tiny chat client: a browser WebSocket to /chat/<room>, through the proxy."""
    return HttpResponse(CHAT_PAGE.read_text(encoding="utf-8"))


@websocket_only
async def echo(request: GripHttpRequest) -> None:
    """The seed article's WebSocket echo: every text and binary message comes back."""
    ws = request.grip.ws
    assert ws is not None  # websocket_only lets only WebSocket-over-HTTP requests in
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    # A client's close is echoed by the context, so the proxy completes the handshake.


@websocket_only
async def chat(request: GripHttpRequest, room: str) -> None:
    """Every member of the room gets every text message, published through the proxy.

    A new member first gets the room's recent history, so the page survives a reload; the
    room is also a reliable channel, readable at ``/events/<room>``. ``/leave`` closes the
    connection with code 4000; a bad room name is refused on open.
    """
    ws = request.grip.ws
    assert ws is not None
    if ws.is_opening():
        if not ROOM_NAME.fullmatch(room):
            ws.reject(400, BAD_ROOM)
            return
        ws.accept()
        ws.subscribe(room)
        for said in await grip_conf.history.latest(room, CHAT_HISTORY):
            ws.send(said.data)
    async for message in ws:
        if message == LEAVE:
            ws.close(4000, "left the room")
            break
        if isinstance(message, str):
            try:
                await apublish_reliable(room, message)  # the history, and /events
                await apublish(room, WebSocketMessageFormat(message))  # the room's members
            except PublishError as exc:
                # A proxy that is down must not cost this client its connection (the 500
                # would): the members on the other proxies got it, and the log says who didn't.
                logger.warning("chat: publishing to %s failed: %s", room, exc)


@require_GET
def stream(request: GripHttpRequest, channel: str) -> HttpResponse:
    """An HTTP streaming hold: the proxy keeps the response open and appends each publish."""
    if not request.grip.is_proxied:
        return _text(NOT_PROXIED, status=501)
    set_hold_stream(request, channel)
    return _text("[stream open]\n")


async def sse(request: GripHttpRequest, channel: str) -> HttpResponse:
    """Server-Sent Events: a stream hold with an SSE keep-alive comment every 20 s."""
    if not request.grip.is_proxied:
        return _text(NOT_PROXIED, status=501)
    set_hold_stream(request, channel, keep_alive_data=":\n\n", keep_alive_timeout=20)
    last_id = parse_last_event_id(request.headers.get("Last-Event-ID"))
    comment = f"resumed after {last_id}" if last_id else None
    hello = encode_sse_event("open", event="stream-open", comment=comment)
    return HttpResponse(hello, content_type="text/event-stream")


@require_GET
def poll(request: GripHttpRequest, channel: str) -> HttpResponse:
    """A long-poll: held until a publish arrives, else this response after ``timeout`` s."""
    timeout_text = request.GET.get("timeout", "30")
    if (
        not (timeout_text.isascii() and timeout_text.isdigit())
        or not 1 <= int(timeout_text) <= 3600
    ):
        return _text("timeout must be a whole number of seconds from 1 to 3600\n", status=400)
    timeout = int(timeout_text)
    if not request.grip.is_proxied:
        return _text(NOT_PROXIED, status=501)
    set_hold_longpoll(request, channel, timeout=timeout)
    return _text("timeout\n")


async def events(request: GripHttpRequest, channel: str) -> HttpResponse:
    """Recoverable SSE: a client that reconnects (``EventSource`` sends ``Last-Event-ID``)
    first gets every message it missed, then the live ones; a new one gets the last 10."""
    return await asse_response(request, channel, history=10)


@csrf_exempt
@require_POST
def publish(request: HttpRequest, channel: str) -> HttpResponse:
    """Publish the body reliably (``/events``) and to every plain subscriber of ``channel``."""
    message = request.body.decode("utf-8", errors="replace")
    publish_reliable(channel, message)
    get_publisher().publish_text(channel, message)
    return _text("published\n")
