"""The example's routes: the same as examples/fastapi_app.py."""

from __future__ import annotations

from django.urls import path

from ..shared import CLIENT_SCRIPT_PATH
from . import views

urlpatterns = [
    path("", views.chat_page),
    path(CLIENT_SCRIPT_PATH.removeprefix("/"), views.client_script),
    path("echo", views.echo),
    path("chat/<str:room>", views.chat),
    path("stream/<str:channel>", views.stream),
    path("sse/<str:channel>", views.sse),
    path("poll/<str:channel>", views.poll),
    path("events/<str:channel>", views.events),
    path("publish/<str:channel>", views.publish),
]
