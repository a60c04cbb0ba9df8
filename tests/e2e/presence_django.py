"""A one-file Django project with a presence-enabled reliable WebSocket, for the presence tests.

This module is the settings, the URLconf and the application at once:
``DJANGO_SETTINGS_MODULE=tests.e2e.presence_django`` and
``tests.e2e.presence_django:application`` (gunicorn or uvicorn). ``PRESENCE_DJANGO_VIEWS=sync``
serves sync views through WSGI (``websocket_events``, ``members``), ``async`` async views
through ASGI (``awebsocket_events``, ``amembers``). The routes are those of
:mod:`tests.e2e.presenceapp` (a member's ``info`` is ``{"via": "django-sync"}`` or
``{"via": "django-async"}``); ``GRIP_URL`` and ``GRIP_HISTORY_URL`` come from the environment.
"""

from __future__ import annotations

import json
import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

from grip_django import (
    GripHttpRequest,
    amembers,
    apublish_reliable,
    awebsocket_events,
    members,
    publish_reliable,
    websocket_events,
)

from .presence_log import note_events
from .servers import one_file_django_application

# --- Settings -------------------------------------------------------------------------------

SECRET_KEY = "presence-e2e-secret-key"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["grip_django"]
MIDDLEWARE = ["grip_django.middleware.GripMiddleware"]  # no CSRF: POST /publish is an API
ROOT_URLCONF = __name__
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

VIEWS = os.environ.get("PRESENCE_DJANGO_VIEWS", "sync")
KEEP_ALIVE = 20
INFO = {"via": f"django-{VIEWS}"}

# --- Views ----------------------------------------------------------------------------------


def _json(value: object) -> HttpResponse:
    return HttpResponse(json.dumps(value), content_type="application/json")


def _text(message: str | bytes) -> str:
    return message if isinstance(message, str) else message.decode(errors="replace")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def room(request: GripHttpRequest, name: str) -> HttpResponse:
    note_events(request.grip.ws)
    user = request.GET.get("user")
    socket = websocket_events(
        request, name, presence=True, user=user, info=INFO, keep_alive=KEEP_ALIVE
    )
    for message in socket.messages:
        publish_reliable(name, _text(message))
    return HttpResponse()


def who(request: HttpRequest, name: str) -> HttpResponse:
    return _json([member.user for member in members(name)])


def publish(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return _json({"id": publish_reliable(name, request.body.decode()).id})


async def aroom(request: GripHttpRequest, name: str) -> HttpResponse:
    note_events(request.grip.ws)
    user = request.GET.get("user")
    socket = await awebsocket_events(
        request, name, presence=True, user=user, info=INFO, keep_alive=KEEP_ALIVE
    )
    for message in socket.messages:
        await apublish_reliable(name, _text(message))
    return HttpResponse()


async def awho(request: HttpRequest, name: str) -> HttpResponse:
    return _json([member.user for member in await amembers(name)])


async def apublish(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    stored = await apublish_reliable(name, request.body.decode())
    return _json({"id": stored.id})


_SYNC = VIEWS == "sync"
urlpatterns = [
    path("", health),
    path("room/<str:name>", room if _SYNC else aroom),
    path("members/<str:name>", who if _SYNC else awho),
    path("publish/<str:name>", publish if _SYNC else apublish),
]

# --- The application ------------------------------------------------------------------------

application = one_file_django_application(__name__, wsgi=_SYNC)
