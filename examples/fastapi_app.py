"""The grip-asgi example app: a chat with history and presence that loses nothing across
reloads and reconnects (a reliable WebSocket, ``/chat/{room}``), WebSocket echo, HTTP stream,
SSE and long-poll, and a recoverable SSE stream (``/events/{channel}``).

Run it behind Pushpin (route ``* 127.0.0.1:8000,over_http``)::

    GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme' \\
        uvicorn examples.fastapi_app:app --port 8000

Every connection is held by the proxy; this app only answers short requests, so any number
of workers (or containers) serve it, and a publish from any process reaches every client.
Reliable channels keep their history, and the chat its member lists, in ``GRIP_HISTORY_URL``
(default: a SQLite file in the working directory, which every worker of the host shares).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from grip_asgi import GripMiddleware, encode_sse_event, parse_last_event_id
from grip_asgi.fastapi import Grip, GripEvents, GripPublisher, GripWebSocket

from .shared import (
    CHAT_HISTORY,
    CHAT_PAGE,
    CLIENT_SCRIPT,
    CLIENT_SCRIPT_PATH,
    JAVASCRIPT,
    NOT_PROXIED,
    chat_refusal,
    relay_chat,
)

app = FastAPI(title="grip-asgi example")
app.add_middleware(GripMiddleware)  # GRIP_URL, GRIP_PREFIX, ... from the environment


@app.get("/", response_class=HTMLResponse)
async def chat_page() -> str:
    """The chat page: a reliable browser WebSocket to /chat/{room}, through the proxy."""
    return CHAT_PAGE.read_text(encoding="utf-8")


@app.get(CLIENT_SCRIPT_PATH)
async def client_script() -> Response:
    """grip-asgi's browser client (``GripClient.ReliableSocket``), which the chat page uses."""
    return Response(CLIENT_SCRIPT.read_text(encoding="utf-8"), media_type=JAVASCRIPT)


@app.post("/echo")
async def echo(ws: GripWebSocket) -> None:
    """The seed article's WebSocket echo: every text and binary message comes back."""
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    # A client's close is echoed by the context, so the proxy completes the handshake.


@app.post("/chat/{room}")
async def chat(
    room: str,
    ws: GripWebSocket,
    events: GripEvents,
    publisher: GripPublisher,
    name: Annotated[str | None, Query()] = None,
) -> None:
    """The chat: a reliable WebSocket of the room, with history and presence.

    Connect as ``/chat/{room}?name=ann`` (``grip-client.js``'s ``ReliableSocket``, or
    ``grip_asgi.client.ReliableClient``): a new member first gets the room's latest messages,
    a client that reconnects gets exactly what it missed, and every member sees who is here
    and who joins or leaves. Every text message is published to the whole room as JSON
    with its author, ``{"user": "ann", "text": "hello"}``; ``/leave`` closes the connection
    with code 4000. A bad room or name is refused on open (400).
    """
    if ws.is_opening() and (refusal := chat_refusal(room, name)) is not None:
        ws.reject(400, refusal)
        return
    socket = await events.websocket(room, history=CHAT_HISTORY, presence=True, user=name)
    await relay_chat(socket, room, publisher.publish_reliable, user=name)


@app.get("/stream/{channel}")
async def stream(channel: str, grip: Grip) -> Response:
    """An HTTP streaming hold: the proxy keeps the response open and appends each publish."""
    if not grip.is_proxied:
        return PlainTextResponse(NOT_PROXIED, status_code=501)
    grip.start_instruct().add_channel(channel).set_hold_stream()
    return PlainTextResponse("[stream open]\n")


@app.get("/sse/{channel}")
async def sse(channel: str, request: Request, grip: Grip) -> Response:
    """Server-Sent Events: a stream hold with an SSE keep-alive comment every 20 s."""
    if not grip.is_proxied:
        return PlainTextResponse(NOT_PROXIED, status_code=501)
    instruct = grip.start_instruct().add_channel(channel).set_hold_stream()
    instruct.set_keep_alive(":\n\n", 20)
    last_id = parse_last_event_id(request.headers.get("last-event-id"))
    hello = encode_sse_event(
        "open", event="stream-open", comment=f"resumed after {last_id}" if last_id else None
    )
    return Response(hello, media_type="text/event-stream")


@app.get("/poll/{channel}")
async def poll(
    channel: str, grip: Grip, timeout: Annotated[int, Query(ge=1, le=3600)] = 30
) -> Response:
    """A long-poll: held until a publish arrives, else this response after ``timeout`` s."""
    if not grip.is_proxied:
        return PlainTextResponse(NOT_PROXIED, status_code=501)
    grip.start_instruct().add_channel(channel).set_hold_longpoll(timeout=timeout)
    return PlainTextResponse("timeout\n")


@app.get("/events/{channel}")
async def events(channel: str, events: GripEvents) -> Response:
    """Recoverable SSE: a client that reconnects (``EventSource`` sends ``Last-Event-ID``)
    first gets every message it missed, then the live ones; a new one gets the last 10."""
    return await events.sse(channel, history=10)


@app.post("/publish/{channel}")
async def publish(channel: str, request: Request, publisher: GripPublisher) -> Response:
    """Publish the body reliably (``/events``) and to every plain subscriber of ``channel``."""
    message = (await request.body()).decode("utf-8", errors="replace")
    await publisher.publish_reliable(channel, message)
    await publisher.publish_text(channel, message)
    return PlainTextResponse("published\n")
