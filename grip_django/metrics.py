"""The Prometheus endpoint for Django: ``path("metrics", metrics_view)`` in ``urls.py``.

Counting starts with ``grip_asgi.metrics.enable()``, called once at start-up (an
``AppConfig.ready()``); see :mod:`grip_asgi.metrics`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

__all__ = ("metrics_view",)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """This process's metrics from ``prometheus_client.REGISTRY`` (the ``grip_*`` ones and any
    others), in the format the scraper asks for (Prometheus text, or OpenMetrics)."""
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
