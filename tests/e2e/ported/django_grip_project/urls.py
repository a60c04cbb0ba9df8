from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("stream", views.stream),
    path("longpoll", views.longpoll),
    path("echo", views.echo),
    path("broadcast", views.broadcast),
]
