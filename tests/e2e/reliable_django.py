"""A one-file Django project with recoverable endpoints, for the reliable-delivery tests.

This module is the settings, the URLconf and the application at once:
``DJANGO_SETTINGS_MODULE=tests.e2e.reliable_django`` and ``tests.e2e.reliable_django:application``
(gunicorn or uvicorn). ``RELIABLE_DJANGO_VIEWS=sync`` serves sync views through WSGI,
``async`` async views through ASGI. The routes and the other variables are those of
:mod:`tests.e2e.reliableapp`; the GRIP settings (``GRIP_URL``, ``GRIP_PROXIES``,
``GRIP_HISTORY_URL``) come from the environment, and next links are signed with a key
derived from ``SECRET_KEY``, which every worker shares.
"""

from __future__ import annotations

import json
import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

from grip_asgi import PublishError
from grip_django import (
    GripHttpRequest,
    alongpoll_response,
    apublish_reliable,
    asse_response,
    awebsocket_events,
    longpoll_response,
    publish_reliable,
    sse_response,
    websocket_events,
    websocket_only,
)

from .reliable_log import note_request
from .servers import one_file_django_application

# --- Settings -------------------------------------------------------------------------------

SECRET_KEY = "reliable-delivery-e2e-secret-key"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["grip_django"]
MIDDLEWARE = ["grip_django.middleware.GripMiddleware"]  # no CSRF: POST /publish is an API
ROOT_URLCONF = __name__
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

VIEWS = os.environ.get("RELIABLE_DJANGO_VIEWS", "sync")
LINK_TIMEOUT = int(os.environ.get("RELIABLE_LINK_TIMEOUT", "60"))
PAGE_SIZE = int(os.environ.get("RELIABLE_PAGE_SIZE", "100"))
POLL_TIMEOUT = int(os.environ.get("RELIABLE_POLL_TIMEOUT", "55"))

# --- Views ----------------------------------------------------------------------------------


def _noted(kind: str, request: GripHttpRequest, response: HttpResponse) -> HttpResponse:
    query = {name: request.GET[name] for name in request.GET}
    last_event_id = request.headers.get("Last-Event-ID")
    note_request(kind, request.grip, query, last_event_id, response.status_code, response.content)
    return response


def _stored(event_id: int) -> HttpResponse:
    return HttpResponse(json.dumps({"id": event_id}), content_type="application/json")


def _not_taken(exc: PublishError) -> HttpResponse:
    body = json.dumps({"error": str(exc)})
    return HttpResponse(body, status=502, content_type="application/json")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def events(request: GripHttpRequest, channels: str) -> HttpResponse:
    names = channels.split(",")
    response = sse_response(request, names, link_timeout=LINK_TIMEOUT, page_size=PAGE_SIZE)
    return _noted("sse", request, response)


def poll(request: GripHttpRequest, channels: str) -> HttpResponse:
    names = channels.split(",")
    response = longpoll_response(request, names, timeout=POLL_TIMEOUT, page_size=PAGE_SIZE)
    return _noted("poll", request, response)


@websocket_only
def socket(request: GripHttpRequest, channels: str) -> None:
    websocket_events(request, channels.split(","), page_size=PAGE_SIZE)


def publish(request: HttpRequest, channel: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    try:
        stored = publish_reliable(channel, request.body.decode())
    except PublishError as exc:
        return _not_taken(exc)
    return _stored(stored.id)


async def aevents(request: GripHttpRequest, channels: str) -> HttpResponse:
    names = channels.split(",")
    response = await asse_response(request, names, link_timeout=LINK_TIMEOUT, page_size=PAGE_SIZE)
    return _noted("sse", request, response)


async def apoll(request: GripHttpRequest, channels: str) -> HttpResponse:
    names = channels.split(",")
    response = await alongpoll_response(request, names, timeout=POLL_TIMEOUT, page_size=PAGE_SIZE)
    return _noted("poll", request, response)


@websocket_only
async def asocket(request: GripHttpRequest, channels: str) -> None:
    await awebsocket_events(request, channels.split(","), page_size=PAGE_SIZE)


async def apublish(request: HttpRequest, channel: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    try:
        stored = await apublish_reliable(channel, request.body.decode())
    except PublishError as exc:
        return _not_taken(exc)
    return _stored(stored.id)


_SYNC = VIEWS == "sync"
urlpatterns = [
    path("", health),
    path("events/<str:channels>", events if _SYNC else aevents),
    path("poll/<str:channels>", poll if _SYNC else apoll),
    path("ws/<str:channels>", socket if _SYNC else asocket),
    path("publish/<str:channel>", publish if _SYNC else apublish),
]

# --- The application ------------------------------------------------------------------------

application = one_file_django_application(__name__, wsgi=_SYNC)
