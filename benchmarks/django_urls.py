"""The Django views the benchmark times: the same code under every middleware stack.

Each view uses only what grip_django and django-grip share (``request.grip.proxied``,
``start_instruct()``, ``request.wscontext``), and does no GRIP work when neither is there, so
bare Django answers the same requests. Sync views serve WSGI, async ones ASGI (an async view
under WSGI, or a sync one under ASGI, would add a thread hop of Django's own).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

__all__ = ("urlpatterns",)


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello\n", content_type="text/plain")


def hold(request: HttpRequest) -> HttpResponse:
    grip: Any = getattr(request, "grip", None)
    if grip is not None and grip.proxied:
        instruct = grip.start_instruct()
        instruct.add_channel("room")
        instruct.set_hold_stream()
    return HttpResponse("[stream open]\n", content_type="text/plain")


def echo(request: HttpRequest) -> HttpResponse:
    ws: Any = getattr(request, "wscontext", None)
    if ws is not None:
        if ws.is_opening():
            ws.accept()
        while ws.can_recv():
            message = ws.recv()
            if message is None:
                break
            if isinstance(message, bytes):
                ws.send_binary(message)
            else:
                ws.send(message)
    # Empty, so django-grip replaces it too (it only replaces an empty 200).
    return HttpResponse()


async def async_plain(request: HttpRequest) -> HttpResponse:
    return plain(request)


async def async_hold(request: HttpRequest) -> HttpResponse:
    return hold(request)


async def async_echo(request: HttpRequest) -> HttpResponse:
    return echo(request)


urlpatterns = [
    path("plain", plain),
    path("hold", hold),
    path("echo", echo),
    path("async/plain", async_plain),
    path("async/hold", async_hold),
    path("async/echo", async_echo),
]
