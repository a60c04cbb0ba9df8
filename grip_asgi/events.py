"""Recoverable SSE and long-poll endpoints for Starlette (FastAPI: ``grip_asgi.fastapi``).

A subscriber of a reliable channel gets every message published with
``publisher.publish_reliable()``, exactly once and in order, across reconnects, proxy
restarts and Pushpin's own queue limits::

    from grip_asgi.events import get_events

    async def events(request):
        return await get_events(request).sse(request.path_params["channel"])

    async def publish(request):
        await get_publisher(request).publish_reliable("news", (await request.body()).decode())

The history is the middleware's publisher's (``history_url=`` or ``GRIP_HISTORY_URL``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

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
from .middleware import get_grip_context, get_publisher

__all__ = ("GripEvents", "get_events")


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
