"""django-grip 3.x's names, on :mod:`grip_django`.

Port a django-grip project by changing its imports and one setting::

    # was "django_grip.GripMiddleware"
    MIDDLEWARE = ["grip_asgi.compat.django_grip.GripMiddleware", ...]
    INSTALLED_APPS = [..., "grip_django"]  # for its system checks and settings reloads

``GRIP_URL``, ``GRIP_PROXIES``, ``GRIP_VERIFY_KEY``, ``GRIP_PREFIX`` and ``GRIP_PROXY_REQUIRED``
keep their names and meaning. Views keep ``request.grip``, ``request.wscontext`` and the
legacy ``request.grip_proxied`` / ``request.grip_signed``. What differs on purpose, each
checked against django-grip 3.5.2 by ``tests/compat``:

- Only the proxy's requests are proxied: a WebSocket-over-HTTP body from a client that did
  not send a valid ``Grip-Sig`` gets no ``request.wscontext`` (and ``websocket_only`` 400),
  and instructions for a direct request are dropped (501 with ``GRIP_PROXY_REQUIRED``);
  ``request.grip.start_instruct()`` raises ``InstructNotAvailableError`` for one.
- ``request.wscontext`` is a :class:`grip_asgi.WebSocketContext`: ``close()`` sends 1000
  (django-grip sent the invalid code 0), ``recv()`` returns None on a disconnect where it
  raised ``IOError``, and nothing is sent before ``accept()`` on an opening request.
- django-grip's defects D1 to D5 are gone (see ``docs/migrating.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from grip_django import get_publisher
from grip_django import middleware as _middleware
from grip_django.decorators import set_hold_longpoll, set_hold_stream, websocket_only

from .._instruct import GripInstruct
from .gripcontrol import GripPubControl, PublishCallback
from .pubcontrol import Item

__all__ = (
    "GripInstruct",
    "GripMiddleware",
    "get_pubcontrol",
    "publish",
    "set_hold_longpoll",
    "set_hold_stream",
    "websocket_only",
)

_GetResponse = (
    Callable[[HttpRequest], HttpResponseBase] | Callable[[HttpRequest], Awaitable[HttpResponseBase]]
)


class GripMiddleware(_middleware.GripMiddleware):
    """grip_django's middleware, which also sets django-grip's legacy
    ``request.grip_proxied`` and ``request.grip_signed`` for the views."""

    def __init__(self, get_response: _GetResponse) -> None:
        super().__init__(_with_legacy_attributes(get_response))


def _with_legacy_attributes(get_response: _GetResponse) -> _GetResponse:
    if iscoroutinefunction(get_response):

        async def async_view(request: HttpRequest) -> HttpResponseBase:
            _set_legacy_attributes(request)
            pending = get_response(request)
            assert not isinstance(pending, HttpResponseBase)
            response = await pending
            assert isinstance(response, HttpResponseBase)
            return response

        return async_view

    def view(request: HttpRequest) -> HttpResponseBase:
        _set_legacy_attributes(request)
        response = get_response(request)
        assert isinstance(response, HttpResponseBase)
        return response

    return view


def _set_legacy_attributes(request: HttpRequest) -> None:
    grip = request.grip  # type: ignore[attr-defined]
    request.grip_proxied = grip.is_proxied  # type: ignore[attr-defined]
    request.grip_signed = grip.is_signed  # type: ignore[attr-defined]


_lock = threading.Lock()
_pubcontrol: GripPubControl | None = None


def get_pubcontrol() -> GripPubControl:
    """The process's publisher, django-grip style (it publishes with
    :func:`grip_django.get_publisher`, so it follows changes to the GRIP settings)."""
    global _pubcontrol
    with _lock:
        if _pubcontrol is None:
            _pubcontrol = GripPubControl._over(get_publisher)
        return _pubcontrol


def publish(
    channel: str,
    formats: Any,
    id: str | None = None,
    prev_id: str | None = None,
    blocking: bool = False,
    callback: PublishCallback | None = None,
    meta: Mapping[str, str] | None = None,
) -> None:
    """Publish ``formats`` to ``channel`` (with ``GRIP_PREFIX``) on every configured proxy.

    As in django-grip the publish is non-blocking unless ``blocking=True``, which raises
    ``ValueError`` on failure; a non-blocking failure goes to ``callback(success, message)``,
    or to the log when there is no callback. ``grip_django.publish`` always waits and raises.
    """
    get_pubcontrol().publish(
        channel, Item(formats, id=id, prev_id=prev_id, meta=meta), blocking, callback
    )
