"""FastAPI dependencies for GRIP. The only module that imports FastAPI.

.. code-block:: python

    from grip_asgi.fastapi import Grip, GripWebSocket

    @app.get("/stream/{channel}")
    async def stream(channel: str, grip: Grip) -> PlainTextResponse:
        grip.start_instruct().add_channel(channel).set_hold_stream()
        return PlainTextResponse("[stream open]\\n")

    @app.post("/echo")
    async def echo(ws: GripWebSocket) -> None:
        if ws.is_opening():
            ws.accept()
        async for message in ws:
            ws.send(message)

    @app.get("/events/{channel}")  # recoverable SSE, fed by publisher.publish_reliable()
    async def events(channel: str, events: GripEvents) -> Response:
        return await events.sse(channel)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ._context import GripContext
from ._publish import Publisher
from ._websocket import WebSocketContext
from .events import GripEvents as _GripEvents
from .middleware import get_grip_context, get_publisher

__all__ = (
    "Grip",
    "GripEvents",
    "GripPublisher",
    "GripWebSocket",
    "get_grip",
    "get_grip_events",
    "get_grip_publisher",
    "get_grip_websocket",
)


# The dependencies are async so FastAPI calls them inline rather than in its thread pool.
async def get_grip(request: Request) -> GripContext:
    """The request's :class:`GripContext` (needs ``GripMiddleware``)."""
    return get_grip_context(request)


async def get_grip_websocket(request: Request) -> WebSocketContext:
    """The WebSocket-over-HTTP context; answers 400 when the request is not one."""
    ws = get_grip_context(request).ws
    if ws is None:
        raise HTTPException(400, "Not a WebSocket-over-HTTP request")
    return ws


async def get_grip_publisher(request: Request) -> Publisher:
    """The middleware's :class:`Publisher`, for the proxies the app is configured with."""
    return get_publisher(request)


async def get_grip_events(request: Request) -> _GripEvents:
    """Recoverable SSE and long-poll answers for this request (see ``grip_asgi.events``)."""
    return _GripEvents(request)


#: ``async def handler(grip: Grip)``: the request's GRIP context.
Grip = Annotated[GripContext, Depends(get_grip)]
#: ``async def handler(ws: GripWebSocket)``: the WebSocket-over-HTTP context (400 if none).
GripWebSocket = Annotated[WebSocketContext, Depends(get_grip_websocket)]
#: ``async def handler(publisher: GripPublisher)``: publish to the app's proxies.
GripPublisher = Annotated[Publisher, Depends(get_grip_publisher)]
#: ``async def handler(events: GripEvents)``: ``return await events.sse(channel)``.
GripEvents = Annotated[_GripEvents, Depends(get_grip_events)]
