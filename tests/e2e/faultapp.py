"""A small GripMiddleware app for the fault, forgery and restart tests (run by uvicorn).

- ``GET /health``: 200 ``ok``.
- ``GET /seen``: what the app saw, as JSON: the GRIP context and the request's raw
  ``Grip-*`` and ``Meta-*`` headers.
- ``GET /boom``: the handler raises.
- ``POST /ws/echo``: WebSocket-over-HTTP echo; the text ``raise`` makes the handler raise.
- ``POST /ws/raise-on-open``: the handler raises on the opening request.
- ``POST /ws/seen``: accepts, then sends what ``GET /seen`` would answer, plus ``ws.meta``.
- ``POST /ws/sub/{channel}``: accepts, subscribes to ``channel`` and sends ``subscribed``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi.middleware import GripMiddleware, get_grip_context


class HandlerFailed(RuntimeError):
    """Raised on purpose by the handlers below."""


def _seen(request: Request) -> dict[str, Any]:
    grip = get_grip_context(request)
    return {
        "proxied": grip.is_proxied,
        "signed": grip.is_signed,
        "sig_error": grip.sig_error,
        "last": dict(grip.last),
        "headers": {
            name: value
            for name, value in request.headers.items()
            if name.startswith(("grip-", "meta-"))
        },
    }


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def seen(request: Request) -> Response:
    return JSONResponse(_seen(request))


async def boom(request: Request) -> Response:
    raise HandlerFailed("GET /boom failed on purpose")


def _ws(request: Request) -> Any:
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse("not a WebSocket-over-HTTP request\n", status_code=400)
    return ws


async def ws_echo(request: Request) -> Response:
    ws = _ws(request)
    if isinstance(ws, Response):
        return ws
    if ws.is_opening():
        ws.accept()
    async for message in ws:
        if message == "raise":
            raise HandlerFailed("the echo handler failed on purpose")
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
    return Response()


async def ws_raise_on_open(request: Request) -> Response:
    raise HandlerFailed("the opening request failed on purpose")


async def ws_seen(request: Request) -> Response:
    ws = _ws(request)
    if isinstance(ws, Response):
        return ws
    if ws.is_opening():
        ws.accept()
    ws.send(json.dumps({**_seen(request), "meta": ws.meta}))
    return Response()


async def ws_subscribe(request: Request) -> Response:
    ws = _ws(request)
    if isinstance(ws, Response):
        return ws
    if ws.is_opening():
        ws.accept()
        ws.subscribe(request.path_params["channel"])
        ws.send("subscribed")
    async for _ in ws:
        pass  # reading answers the client's pings (Pushpin relays them)
    return Response()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/seen", seen),
        Route("/boom", boom),
        Route("/ws/echo", ws_echo, methods=["POST"]),
        Route("/ws/raise-on-open", ws_raise_on_open, methods=["POST"]),
        Route("/ws/seen", ws_seen, methods=["POST"]),
        Route("/ws/sub/{channel}", ws_subscribe, methods=["POST"]),
    ],
    middleware=[Middleware(GripMiddleware)],  # GRIP_URL from the environment
)
