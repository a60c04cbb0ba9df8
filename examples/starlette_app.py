"""The smallest grip-asgi app on plain Starlette: a WebSocket echo and an HTTP stream.

    GRIP_URL='http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme' \\
        uvicorn examples.starlette_app:app --port 8000
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, get_grip_context


async def echo(request: Request) -> Response:
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse("Not a WebSocket-over-HTTP request\n", status_code=400)
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    return Response()  # replaced by the events the context queued


async def stream(request: Request) -> Response:
    grip = request.state.grip
    if not grip.is_proxied:
        return PlainTextResponse("Connect through the GRIP proxy\n", status_code=501)
    grip.start_instruct().add_channel(request.path_params["channel"]).set_hold_stream()
    return PlainTextResponse("[stream open]\n")


app = Starlette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/stream/{channel}", stream)],
    middleware=[Middleware(GripMiddleware)],
)
