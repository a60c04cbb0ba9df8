"""The chat apps the end-to-end benchmark compares ours with, each served by uvicorn.

- ``gripcontrol_app``: the example's chat route hand-written on gripcontrol in a Starlette
  route, behind Pushpin (what a user writes today).
- ``native_app``: the same chat on native Starlette WebSockets: uvicorn holds every
  connection and the app broadcasts to the room itself.

Ours is ``examples.fastapi_app:app``, the project's example.
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ("gripcontrol_app", "native_app")


async def index(request: Request) -> Response:
    return PlainTextResponse("chat\n")


# --- gripcontrol behind Pushpin ------------------------------------------------------------


@cache
def _grip_config() -> dict[str, Any]:
    from gripcontrol import parse_grip_uri

    config: dict[str, Any] = parse_grip_uri(os.environ["GRIP_URL"])
    return config


@cache
def _pubcontrol() -> Any:
    from gripcontrol import GripPubControl

    return GripPubControl(_grip_config())


async def gripcontrol_chat(request: Request) -> Response:
    from gripcontrol import (
        WebSocketContext,
        WebSocketEvent,
        WebSocketMessageFormat,
        decode_websocket_events,
        encode_websocket_events,
        validate_sig,
    )
    from pubcontrol import Item

    config = _grip_config()
    sig = request.headers.get("grip-sig")
    if sig is None or not validate_sig(sig, config["verify_key"], iss=config.get("verify_iss")):
        return PlainTextResponse("Not proxied\n", status_code=403)
    room = request.path_params["room"]
    meta = {name[5:]: value for name, value in request.headers.items() if name.startswith("meta-")}
    try:
        events = decode_websocket_events(await request.body())
    except ValueError:
        return PlainTextResponse("Bad WebSocket events\n", status_code=400)
    ws = WebSocketContext(request.headers["connection-id"], meta, events)
    if ws.is_opening():
        ws.accept()
        ws.subscribe(room)
    while ws.can_recv():
        try:
            message = ws.recv()
        except OSError:  # DISCONNECT
            break
        if message is None:
            ws.close()
            break
        if isinstance(message, str):
            _pubcontrol().publish(room, Item(WebSocketMessageFormat(message)))
    out = [WebSocketEvent("OPEN")] if ws.accepted else []
    out += ws.out_events
    if ws.closed:
        out.append(WebSocketEvent("CLOSE", struct.pack(">H", ws.out_close_code)))
    headers = {"Sec-WebSocket-Extensions": "grip"} if ws.accepted else {}
    return Response(
        encode_websocket_events(out), media_type="application/websocket-events", headers=headers
    )


gripcontrol_app = Starlette(
    routes=[Route("/", index), Route("/chat/{room}", gripcontrol_chat, methods=["POST"])]
)


# --- Native Starlette WebSockets -----------------------------------------------------------

_rooms: defaultdict[str, set[WebSocket]] = defaultdict(set)


async def _broadcast(room: str, message: str) -> None:
    # What the FastAPI docs' ConnectionManager does: one send after the other.
    for member in list(_rooms[room]):
        try:
            await member.send_text(message)
        except (WebSocketDisconnect, RuntimeError):
            _rooms[room].discard(member)


async def native_chat(websocket: WebSocket) -> None:
    room = websocket.path_params["room"]
    await websocket.accept()
    _rooms[room].add(websocket)
    try:
        async for message in websocket.iter_text():
            await _broadcast(room, message)
    finally:
        _rooms[room].discard(websocket)


async def native_publish(request: Request) -> Response:
    """Publishing from outside, for the benchmark: what a publish to the room does."""
    await _broadcast(request.path_params["room"], (await request.body()).decode())
    return PlainTextResponse("published\n")


native_app = Starlette(
    routes=[
        Route("/", index),
        WebSocketRoute("/chat/{room}", native_chat),
        Route("/publish/{room}", native_publish, methods=["POST"]),
    ]
)
