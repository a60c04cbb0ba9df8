"""The grip-asgi example app: WebSocket echo and chat, HTTP stream, SSE and long-poll, and
a recoverable SSE stream (``/events/{channel}``) that loses nothing across reconnects.

Run it behind Pushpin (route ``* 127.0.0.1:8000,over_http``)::

    GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme' \\
        uvicorn examples.fastapi_app:app --port 8000

Every connection is held by the proxy; this app only answers short requests, so any number
of workers (or containers) serve it, and a publish from any process reaches every client.
Reliable channels keep their history in ``GRIP_HISTORY_URL`` (default: a SQLite file here).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from grip_asgi import GripMiddleware, PublishError, encode_sse_event, parse_last_event_id
from grip_asgi.fastapi import Grip, GripEvents, GripPublisher, GripWebSocket

from .shared import BAD_ROOM, CHAT_HISTORY, CHAT_PAGE, LEAVE, NOT_PROXIED, ROOM_NAME

logger = logging.getLogger(__name__)
app = FastAPI(title="grip-asgi example")
app.add_middleware(GripMiddleware)  # GRIP_URL, GRIP_PREFIX, ... from the environment


@app.get("/", response_class=HTMLResponse)
async def chat_page() -> str:
    """A tiny chat client: a browser WebSocket to /chat/{room}, through the proxy."""
    return CHAT_PAGE.read_text(encoding="utf-8")


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
async def chat(room: str, ws: GripWebSocket, publisher: GripPublisher) -> None:
    """Every member of the room gets every text message, published through the proxy.

    A new member first gets the room's recent history, so the page survives a reload; the
    room is also a reliable channel, readable at ``/events/{room}``. ``/leave`` closes the
    connection with code 4000; a bad room name is refused on open.
    """
    if ws.is_opening():
        if not ROOM_NAME.fullmatch(room):
            ws.reject(400, BAD_ROOM)
            return
        ws.accept()
        ws.subscribe(room)
        for said in await publisher.history.latest(room, CHAT_HISTORY):
            ws.send(said.data)
    async for message in ws:
        if message == LEAVE:
            ws.close(4000, "left the room")
            break
        if isinstance(message, str):
            try:
                await publisher.publish_reliable(room, message)  # history and /events
                await publisher.publish_websocket(room, message)  # the room's members
            except PublishError as exc:
                # A proxy that is down must not cost this client its connection (the 500
                # would): the members on the other proxies got it, and the log says who didn't.
                logger.warning("chat: publishing to %s failed: %s", room, exc)


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
