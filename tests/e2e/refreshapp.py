"""A reliable WebSocket endpoint whose idle calls are ten minutes apart, so that within a
test only a refresh makes Pushpin call it (``tests/e2e/test_refresh.py``)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import GripMiddleware
from grip_asgi.events import get_events


async def socket(request: Request) -> Response:
    await get_events(request).websocket(request.path_params["room"], keep_alive=600)
    return Response()


async def ready(request: Request) -> Response:
    return PlainTextResponse("ok\n")


app = Starlette(
    routes=[Route("/ws/{room}", socket, methods=["POST"]), Route("/", ready)],
    middleware=[Middleware(GripMiddleware)],
)
