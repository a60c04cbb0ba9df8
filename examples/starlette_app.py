"""The grip-asgi example on plain Starlette: the chat (a reliable WebSocket with history and
presence, the same as ``examples/fastapi_app.py``'s), a WebSocket echo and an HTTP stream.

    GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme' \\
        uvicorn examples.starlette_app:app --port 8000
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, get_grip_context, get_publisher
from grip_asgi.events import get_events

from .shared import (
    CHAT_HISTORY,
    CHAT_PAGE,
    CLIENT_SCRIPT,
    CLIENT_SCRIPT_PATH,
    JAVASCRIPT,
    chat_refusal,
    relay_chat,
)

NOT_WEBSOCKET = "Not a WebSocket-over-HTTP request\n"


async def chat_page(request: Request) -> Response:
    return HTMLResponse(CHAT_PAGE.read_text(encoding="utf-8"))


async def client_script(request: Request) -> Response:
    return Response(CLIENT_SCRIPT.read_text(encoding="utf-8"), media_type=JAVASCRIPT)


async def echo(request: Request) -> Response:
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse(NOT_WEBSOCKET, status_code=400)
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    return Response()  # replaced by the events the context queued


async def chat(request: Request) -> Response:
    """``/chat/{room}?name=ann``: history on join, resume, presence; ``/leave`` closes (4000)."""
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse(NOT_WEBSOCKET, status_code=400)
    room: str = request.path_params["room"]
    name = request.query_params.get("name")
    if ws.is_opening() and (refusal := chat_refusal(room, name)) is not None:
        ws.reject(400, refusal)
        return Response()
    events = get_events(request)
    socket = await events.websocket(room, history=CHAT_HISTORY, presence=True, user=name)
    await relay_chat(socket, room, get_publisher(request).publish_reliable, user=name)
    return Response()


async def stream(request: Request) -> Response:
    grip = request.state.grip
    if not grip.is_proxied:
        return PlainTextResponse("Connect through the GRIP proxy\n", status_code=501)
    grip.start_instruct().add_channel(request.path_params["channel"]).set_hold_stream()
    return PlainTextResponse("[stream open]\n")


app = Starlette(
    routes=[
        Route("/", chat_page),
        Route(CLIENT_SCRIPT_PATH, client_script),
        Route("/echo", echo, methods=["POST"]),
        Route("/chat/{room}", chat, methods=["POST"]),
        Route("/stream/{channel}", stream),
    ],
    middleware=[Middleware(GripMiddleware)],
)
