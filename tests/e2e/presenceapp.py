"""A Starlette app with a presence-enabled reliable WebSocket, for the presence tests (uvicorn).

- ``POST /room/{room}?user=NAME``: the WebSocket-over-HTTP endpoint of channel ``room``, with
  presence on (``user`` is the member's name, ``info`` its ``{"via": "starlette"}``), the
  shortest keep-alive Pushpin allows (20 s); the client's messages are published reliably.
- ``GET /members/{room}``: the members' users, JSON, as ``members()`` lists them.
- ``POST /publish/{room}``: ``publish_reliable(room, body)``; 200 ``{"id": N}``.

Each WebSocket-over-HTTP request's events are logged (:mod:`tests.e2e.presence_log`), so a
failed test's server log shows what Pushpin sent.

Configured from the environment: ``GRIP_URL`` and ``GRIP_HISTORY_URL`` (which also holds the
members).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi.events import get_events
from grip_asgi.middleware import GripMiddleware, get_grip_context, get_publisher

from .presence_log import note_events

KEEP_ALIVE = 20


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def room(request: Request) -> Response:
    name = request.path_params["room"]
    note_events(get_grip_context(request).ws)
    socket = await get_events(request).websocket(
        name,
        presence=True,
        user=request.query_params.get("user"),
        info={"via": "starlette"},
        keep_alive=KEEP_ALIVE,
    )
    for message in socket.messages:
        text = message if isinstance(message, str) else message.decode(errors="replace")
        await get_publisher(request).publish_reliable(name, text)
    return Response()


async def members(request: Request) -> Response:
    present = await get_events(request).members(request.path_params["room"])
    return JSONResponse([member.user for member in present])


async def publish(request: Request) -> Response:
    data = (await request.body()).decode()
    stored = await get_publisher(request).publish_reliable(request.path_params["room"], data)
    return JSONResponse({"id": stored.id})


app = Starlette(
    routes=[
        Route("/", health),
        Route("/room/{room}", room, methods=["POST"]),
        Route("/members/{room}", members),
        Route("/publish/{room}", publish, methods=["POST"]),
    ],
    middleware=[Middleware(GripMiddleware)],  # GRIP_URL and GRIP_HISTORY_URL from the env
)
