"""Recoverable SSE and long-poll views: nothing lost across reconnects and proxy trouble.

A subscriber of a reliable channel gets every message published with
:func:`grip_django.publish_reliable`, exactly once and in order::

    from grip_django import publish_reliable, sse_response

    def events(request, channel):  # or async def, with: return await asse_response(...)
        return sse_response(request, channel)

    def post(request, channel):
        publish_reliable(channel, request.body.decode())
        return HttpResponse("published\\n")

The history is ``GRIP_HISTORY_URL``'s; next links are signed with ``GRIP_LINK_KEY``, by
default derived from ``SECRET_KEY``. See ``grip_asgi.events`` for what each argument does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse

from grip_asgi._context import GripContext
from grip_asgi._errors import GripProtocolError
from grip_asgi._recovery import (
    LINK_PARAM,
    Reply,
    Rules,
    Snapshot,
    StreamOptions,
    SubscribeRequest,
    channel_names,
    link_signer_for,
    longpoll_steps,
    run,
    run_sync,
    sse_steps,
)
from grip_asgi._reliable_ws import (
    SocketOptions,
    SocketReply,
    SocketRequest,
    publish_notices,
    publish_notices_sync,
    websocket_steps,
)
from grip_asgi.presence import Member

from .conf import grip_conf
from .middleware import plain_response
from .publish import get_async_publisher, get_publisher

__all__ = (
    "alongpoll_response",
    "amembers",
    "asse_response",
    "awebsocket_events",
    "is_next_link",
    "longpoll_response",
    "members",
    "sse_response",
    "websocket_events",
)

Channels = str | Sequence[str]


def is_next_link(request: HttpRequest) -> bool:
    """The proxy is fetching a next link: its signed token names the channels and user, and
    the request carries no session cookie, so let it past your own login check."""
    grip = getattr(request, "grip", None)
    return isinstance(grip, GripContext) and grip.is_proxied and LINK_PARAM in request.GET


def sse_response(
    request: HttpRequest,
    channels: Channels,
    *,
    user: str | None = None,
    history: int = 0,
    snapshot: Snapshot | None = None,
    page_size: int = 100,
    link_timeout: int = 60,
    keep_alive: int = 20,
) -> HttpResponse:
    """A recoverable Server-Sent Events stream of ``channels``, from a sync view. A bad
    channel name gets a 400."""
    options = _options(channels, user, history, page_size, link_timeout, keep_alive)
    return _answer_sync(request, sse_steps, options, snapshot)


async def asse_response(
    request: HttpRequest,
    channels: Channels,
    *,
    user: str | None = None,
    history: int = 0,
    snapshot: Snapshot | None = None,
    page_size: int = 100,
    link_timeout: int = 60,
    keep_alive: int = 20,
) -> HttpResponse:
    """:func:`sse_response` for an async view."""
    options = _options(channels, user, history, page_size, link_timeout, keep_alive)
    return await _answer(request, sse_steps, options, snapshot)


def longpoll_response(
    request: HttpRequest,
    channels: Channels,
    *,
    user: str | None = None,
    timeout: int = 55,
    history: int = 0,
    snapshot: Snapshot | None = None,
    page_size: int = 100,
) -> HttpResponse:
    """A recoverable long-poll of ``channels`` (JSON ``{"events": [...], "last_event_id":
    ...}``), from a sync view."""
    options = _options(channels, user, history, page_size, timeout=timeout)
    return _answer_sync(request, longpoll_steps, options, snapshot)


async def alongpoll_response(
    request: HttpRequest,
    channels: Channels,
    *,
    user: str | None = None,
    timeout: int = 55,
    history: int = 0,
    snapshot: Snapshot | None = None,
    page_size: int = 100,
) -> HttpResponse:
    """:func:`longpoll_response` for an async view."""
    options = _options(channels, user, history, page_size, timeout=timeout)
    return await _answer(request, longpoll_steps, options, snapshot)


def _options(
    channels: Channels,
    user: str | None,
    history: int,
    page_size: int,
    link_timeout: int = 60,
    keep_alive: int = 20,
    timeout: int = 55,
) -> StreamOptions:
    return StreamOptions(
        channel_names(channels),
        user=user,
        history=history,
        page_size=page_size,
        link_timeout=link_timeout,
        keep_alive=keep_alive,
        timeout=timeout,
    )


def _answer_sync(
    request: HttpRequest, rules: Rules, options: StreamOptions, snapshot: Snapshot | None
) -> HttpResponse:
    steps = rules(_subscribe(request), options, link_signer_for(grip_conf.settings), bool(snapshot))
    return _response(run_sync(steps, grip_conf.history.sync, snapshot))


async def _answer(
    request: HttpRequest, rules: Rules, options: StreamOptions, snapshot: Snapshot | None
) -> HttpResponse:
    steps = rules(_subscribe(request), options, link_signer_for(grip_conf.settings), bool(snapshot))
    return _response(await run(steps, grip_conf.history, snapshot))


def _grip(request: HttpRequest) -> GripContext:
    grip = getattr(request, "grip", None)
    if not isinstance(grip, GripContext):
        raise RuntimeError(
            "request.grip is missing: add 'grip_django.middleware.GripMiddleware' to MIDDLEWARE"
        )
    return grip


def _subscribe(request: HttpRequest) -> SubscribeRequest:
    query = {name: request.GET[name] for name in request.GET}
    return SubscribeRequest(
        _grip(request), request.headers.get("Last-Event-ID"), query, time.time()
    )


def websocket_events(
    request: HttpRequest,
    channels: Channels,
    *,
    history: int = 0,
    presence: bool = False,
    user: str | None = None,
    info: Any = None,
    page_size: int = 100,
    keep_alive: int = 20,
) -> SocketReply:
    """Serve a WebSocket-over-HTTP request as a reliable WebSocket of ``channels``, from a
    sync view: resume, gap repair and presence (``grip_asgi.events.GripEvents.websocket``
    says what each argument does). Handle the returned ``.messages``; the view's return
    value is ignored (the middleware answers from ``request.grip.ws``)."""
    options = SocketOptions.of(
        channels,
        history=history,
        presence=presence,
        user=user,
        info=info,
        page_size=page_size,
        keep_alive=keep_alive,
    )
    steps = websocket_steps(_socket_request(request), options)
    presence_store = grip_conf.presence.sync if presence else None
    reply = run_sync(steps, grip_conf.history.sync, presence=presence_store)
    publish_notices_sync(get_publisher(), reply.notices)
    return reply


async def awebsocket_events(
    request: HttpRequest,
    channels: Channels,
    *,
    history: int = 0,
    presence: bool = False,
    user: str | None = None,
    info: Any = None,
    page_size: int = 100,
    keep_alive: int = 20,
) -> SocketReply:
    """:func:`websocket_events` for an async view."""
    options = SocketOptions.of(
        channels,
        history=history,
        presence=presence,
        user=user,
        info=info,
        page_size=page_size,
        keep_alive=keep_alive,
    )
    steps = websocket_steps(_socket_request(request), options)
    presence_store = grip_conf.presence if presence else None
    reply = await run(steps, grip_conf.history, presence=presence_store)
    await publish_notices(get_async_publisher(), reply.notices)
    return reply


def members(channel: str) -> list[Member]:
    """Who is connected to ``channel``'s reliable WebSockets with presence on."""
    return grip_conf.presence.sync.members(channel)


async def amembers(channel: str) -> list[Member]:
    """:func:`members` for an async view."""
    return await grip_conf.presence.members(channel)


def _socket_request(request: HttpRequest) -> SocketRequest:
    ws = _grip(request).ws
    if ws is None:
        raise GripProtocolError("a reliable WebSocket view needs a WebSocket-over-HTTP request")
    # Only an open reads the query (its last_event_id): later requests skip parsing it.
    query = {name: request.GET[name] for name in request.GET} if ws.is_opening() else {}
    return SocketRequest(ws, query)


def _response(reply: Reply) -> HttpResponse:
    if reply.status >= 400:
        return plain_response(reply.status, reply.body.decode().rstrip("\n"))
    return HttpResponse(reply.body, status=reply.status, content_type=reply.media_type)
