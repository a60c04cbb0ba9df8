"""Recoverable SSE, long-poll and WebSocket endpoints for Starlette (FastAPI:
``grip_asgi.fastapi``).

A subscriber of a reliable channel gets every message published with
``publisher.publish_reliable()``, exactly once and in order, across reconnects, proxy
restarts and Pushpin's own queue limits::

    from grip_asgi.events import get_events

    async def events(request):
        return await get_events(request).sse(request.path_params["channel"])

    async def publish(request):
        await get_publisher(request).publish_reliable("news", (await request.body()).decode())

A reliable WebSocket endpoint (a client resumes, repairs gaps and sees who is here; the
clients are ``grip_asgi.client`` and ``grip-client.js``)::

    async def chat(request):  # the route Pushpin sends WebSocket-over-HTTP to
        room = request.path_params["room"]
        socket = await get_events(request).websocket(room, history=50, presence=True)
        for message in socket.messages:
            await get_publisher(request).publish_reliable(room, message)

The history is the middleware's publisher's (``history_url=`` or ``GRIP_HISTORY_URL``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ._errors import GripProtocolError
from ._recovery import (
    LINK_PARAM,
    Rules,
    Snapshot,
    StreamOptions,
    SubscribeRequest,
    channel_names,
    link_signer_for,
    longpoll_steps,
    run,
    sse_steps,
)
from ._reliable_ws import (
    SocketOptions,
    SocketReply,
    SocketRequest,
    publish_notices,
    websocket_steps,
)
from .middleware import get_grip_context, get_publisher

if TYPE_CHECKING:
    from .presence import Member

__all__ = ("GripEvents", "SocketReply", "get_events")


class GripEvents:
    """Answers a request as a recoverable SSE stream or long-poll (see :func:`get_events`)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._grip = get_grip_context(request)
        self._publisher = get_publisher(request)

    @property
    def is_next_link(self) -> bool:
        """The proxy is fetching a next link: the channels and user come from its signed
        token, and the request carries no cookies, so let it past your own auth check."""
        return self._grip.is_proxied and LINK_PARAM in self._request.query_params

    async def sse(
        self,
        channels: str | Sequence[str],
        *,
        user: str | None = None,
        history: int = 0,
        snapshot: Snapshot | None = None,
        page_size: int = 100,
        link_timeout: int = 60,
        keep_alive: int = 20,
    ) -> Response:
        """A recoverable Server-Sent Events stream of ``channels``.

        A client that reconnects with ``Last-Event-ID`` (``EventSource`` does) or
        ``?last_event_id=`` first gets what it missed; past the history's retention, a
        ``stream-reset`` event. A new subscriber gets the latest ``history`` events, or the
        ``snapshot(channel, last_id)`` hook's text as a ``snapshot`` event. ``user`` travels
        in the signed next link, for your code to see on the proxy's later requests.
        A bad channel name gets a 400.
        """
        options = StreamOptions(
            channel_names(channels),
            user=user,
            history=history,
            page_size=page_size,
            link_timeout=link_timeout,
            keep_alive=keep_alive,
        )
        return await self._answer(sse_steps, options, snapshot)

    async def longpoll(
        self,
        channels: str | Sequence[str],
        *,
        user: str | None = None,
        timeout: int = 55,
        history: int = 0,
        snapshot: Snapshot | None = None,
        page_size: int = 100,
    ) -> Response:
        """A recoverable long-poll of ``channels``: JSON ``{"events": [...],
        "last_event_id": ...}``. Poll again with ``?last_event_id=`` set to it."""
        options = StreamOptions(
            channel_names(channels),
            user=user,
            timeout=timeout,
            history=history,
            page_size=page_size,
        )
        return await self._answer(longpoll_steps, options, snapshot)

    async def websocket(
        self,
        channels: str | Sequence[str],
        *,
        history: int = 0,
        presence: bool = False,
        user: str | None = None,
        info: Any = None,
        page_size: int = 100,
        keep_alive: int = 20,
    ) -> SocketReply:
        """Serve this WebSocket-over-HTTP request as a reliable WebSocket of ``channels``.

        On open: accepts, replays what a resuming client (``?last_event_id=``) missed or
        gives a new one the latest ``history`` events, and subscribes. Later: answers the
        client's repair requests, and on Pushpin's keep-alive calls tells the client the
        latest ids. Returns the request's outcome: ``.messages`` are the application's
        messages to handle; with ``presence=True``, ``.members`` (at open), ``.joined`` and
        ``.left``, and join and leave notices are published to the channels' members
        (``user`` and the JSON value ``info`` are what they see of this member). To refuse a
        connection, ``ws.reject()`` before calling this. A bad channel name or
        ``last_event_id`` refuses the opening connection with a 400.

        Raises:
            GripProtocolError: the request is not WebSocket-over-HTTP.
        """
        ws = self._grip.ws
        if ws is None:
            raise GripProtocolError("websocket() needs a WebSocket-over-HTTP request")
        options = SocketOptions.of(
            channels,
            history=history,
            page_size=page_size,
            presence=presence,
            user=user,
            info=info,
            keep_alive=keep_alive,
        )
        publisher = self._publisher
        # Only an open reads the query (its last_event_id): later requests skip parsing it.
        query = self._request.query_params if ws.is_opening() else {}
        steps = websocket_steps(SocketRequest(ws, query), options)
        reply = await run(
            steps, publisher.history, presence=publisher.presence if presence else None
        )
        await publish_notices(publisher, reply.notices)
        return reply

    async def members(self, channel: str) -> list[Member]:
        """Who is connected to ``channel``'s reliable WebSockets with presence on."""
        return await self._publisher.presence.members(channel)

    async def _answer(
        self, rules: Rules, options: StreamOptions, snapshot: Snapshot | None
    ) -> Response:
        request = self._request
        subscribe = SubscribeRequest(
            self._grip, request.headers.get("last-event-id"), request.query_params, time.time()
        )
        steps = rules(subscribe, options, link_signer_for(self._publisher.settings), bool(snapshot))
        reply = await run(steps, self._publisher.history, snapshot)
        return Response(reply.body, reply.status, media_type=reply.media_type)


def get_events(request: Request) -> GripEvents:
    """The recoverable-endpoint helper of a request (needs ``GripMiddleware``)."""
    return GripEvents(request)
