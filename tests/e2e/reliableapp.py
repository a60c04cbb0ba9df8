"""A Starlette app with recoverable endpoints, for the reliable-delivery tests (uvicorn).

- ``GET /events/{channels}``: a recoverable SSE stream of ``channels`` (comma-separated).
- ``GET /poll/{channels}``: a recoverable long-poll of ``channels``.
- ``POST /ws/{channels}``: a reliable WebSocket of ``channels`` (WebSocket-over-HTTP, so
  Pushpin POSTs here for ``ws://.../ws/{channels}``); its clients send no messages of their own.
- ``POST /publish/{channel}``: ``publish_reliable(channel, body)``; 200 ``{"id": N}``, or
  502 ``{"error": ...}`` when a proxy did not take it (the message is stored all the same).

Configured from the environment: ``GRIP_URL`` / ``GRIP_PROXIES`` and ``GRIP_HISTORY_URL``
as any app, plus ``RELIABLE_LINK_TIMEOUT`` (seconds between Pushpin's next-link refreshes),
``RELIABLE_PAGE_SIZE`` (events per catch-up page, WebSocket syncs included) and
``RELIABLE_POLL_TIMEOUT`` (seconds a long-poll is held). Every SSE and long-poll request is
logged by :mod:`tests.e2e.reliable_log`.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import PublishError
from grip_asgi.events import get_events
from grip_asgi.middleware import GripMiddleware, get_grip_context, get_publisher

from .reliable_log import note_request

LINK_TIMEOUT = int(os.environ.get("RELIABLE_LINK_TIMEOUT", "60"))
PAGE_SIZE = int(os.environ.get("RELIABLE_PAGE_SIZE", "100"))
POLL_TIMEOUT = int(os.environ.get("RELIABLE_POLL_TIMEOUT", "55"))


def _channels(request: Request) -> list[str]:
    channels: str = request.path_params["channels"]
    return channels.split(",")


def _noted(kind: str, request: Request, response: Response) -> Response:
    note_request(
        kind,
        get_grip_context(request),
        request.query_params,
        request.headers.get("last-event-id"),
        response.status_code,
        bytes(response.body),
    )
    return response


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def events(request: Request) -> Response:
    response = await get_events(request).sse(
        _channels(request), link_timeout=LINK_TIMEOUT, page_size=PAGE_SIZE
    )
    return _noted("sse", request, response)


async def poll(request: Request) -> Response:
    response = await get_events(request).longpoll(
        _channels(request), timeout=POLL_TIMEOUT, page_size=PAGE_SIZE
    )
    return _noted("poll", request, response)


async def socket(request: Request) -> Response:
    await get_events(request).websocket(_channels(request), page_size=PAGE_SIZE)
    return Response()  # the middleware answers with the events on request.state.grip.ws


async def publish(request: Request) -> Response:
    data = (await request.body()).decode()
    try:
        stored = await get_publisher(request).publish_reliable(request.path_params["channel"], data)
    except PublishError as exc:
        return JSONResponse({"error": str(exc)}, status_code=502)
    return JSONResponse({"id": stored.id})


app = Starlette(
    routes=[
        Route("/", health),
        Route("/events/{channels}", events),
        Route("/poll/{channels}", poll),
        Route("/ws/{channels}", socket, methods=["POST"]),
        Route("/publish/{channel}", publish, methods=["POST"]),
    ],
    middleware=[Middleware(GripMiddleware)],  # GRIP_URL and GRIP_HISTORY_URL from the env
)
