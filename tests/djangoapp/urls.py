from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("case/<str:behaviour>", views.case),
    path("async/case/<str:behaviour>", views.async_case),
]
