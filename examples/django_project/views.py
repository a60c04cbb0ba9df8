"""The grip-asgi example on Django: a chat with history and presence that loses nothing
across reloads and reconnects (a reliable WebSocket, ``/chat/<room>``), WebSocket echo, HTTP
stream, SSE and long-poll, and a recoverable SSE stream (``/events/<channel>``).

The same routes, with the same behaviour, as ``examples/fastapi_app.py``. Run it behind
Pushpin (route ``* 127.0.0.1:8000,over_http``), under ASGI or WSGI::

    export GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme'
    uvicorn examples.django_project.asgi:application --port 8000
    gunicorn examples.django_project.wsgi:application -b 127.0.0.1:8000 -w 2

Echo, chat and SSE are async views, the others sync: GripMiddleware runs natively either way.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from grip_asgi import encode_sse_event, parse_last_event_id
from grip_django import (
    GripHttpRequest,
    apublish_reliable,
    asse_response,
    awebsocket_events,
    get_publisher,
    publish_reliable,
    set_hold_longpoll,
    set_hold_stream,
    websocket_only,
)

from ..shared import (
    CHAT_HISTORY,
    CHAT_PAGE,
    CLIENT_SCRIPT,
    JAVASCRIPT,
    NOT_PROXIED,
    chat_refusal,
    relay_chat,
)


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page: a reliable browser WebSocket to /chat/<room>, through the proxy."""
    return HttpResponse(CHAT_PAGE.read_text(encoding="utf-8"))


@require_GET
def client_script(request: HttpRequest) -> HttpResponse:
    """grip-asgi's browser client (``GripClient.ReliableSocket``), which the chat page uses."""
    return HttpResponse(CLIENT_SCRIPT.read_text(encoding="utf-8"), content_type=JAVASCRIPT)


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
    """The chat: a reliable WebSocket of the room, with history and presence.

    Connect as ``/chat/<room>?name=ann`` (``grip-client.js``'s ``ReliableSocket``, or
    ``grip_asgi.client.ReliableClient``): a new member first gets the room's latest messages,
    a client that reconnects gets exactly what it missed, and every member sees who is here
    and who joins or leaves. Every text message is published to the whole room as JSON
    with its author, ``{"user": "ann", "text": "hello"}``; ``/leave`` closes the connection
    with code 4000. A bad room or name is refused on open (400).
    """
    ws = request.grip.ws
    assert ws is not None  # websocket_only lets only WebSocket-over-HTTP requests in
    name = request.GET.get("name")
    if ws.is_opening() and (refusal := chat_refusal(room, name)) is not None:
        ws.reject(400, refusal)
        return
    socket = await awebsocket_events(request, room, history=CHAT_HISTORY, presence=True, user=name)
    await relay_chat(socket, room, apublish_reliable, user=name)


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
