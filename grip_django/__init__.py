"""GRIP for Django: hand WebSockets, streams, SSE and long-polls to Pushpin or Fastly Fanout.

Add ``"grip_django"`` to ``INSTALLED_APPS`` and ``"grip_django.middleware.GripMiddleware"``
near the top of ``MIDDLEWARE``, and set ``GRIP_URL``. Views then find ``request.grip``;
:mod:`grip_django.conf` describes the settings.
"""

from __future__ import annotations

from .decorators import set_hold_longpoll, set_hold_stream, websocket_only
from .events import (
    alongpoll_response,
    amembers,
    asse_response,
    awebsocket_events,
    is_next_link,
    longpoll_response,
    members,
    sse_response,
    websocket_events,
)
from .middleware import GripHttpRequest, GripMiddleware
from .publish import (
    apublish,
    apublish_reliable,
    get_async_publisher,
    get_publisher,
    publish,
    publish_reliable,
)

__all__ = (
    "GripHttpRequest",
    "GripMiddleware",
    "alongpoll_response",
    "amembers",
    "apublish",
    "apublish_reliable",
    "asse_response",
    "awebsocket_events",
    "get_async_publisher",
    "get_publisher",
    "is_next_link",
    "longpoll_response",
    "members",
    "publish",
    "publish_reliable",
    "set_hold_longpoll",
    "set_hold_stream",
    "sse_response",
    "websocket_events",
    "websocket_only",
)
