"""Prometheus metrics: requests, WebSocket-over-HTTP events, publishes, history and recovery.

Off until :func:`enable` is called, and then cheap: the library counts in plain integers,
and ``prometheus_client`` reads them only when the metrics endpoint is scraped (a custom
collector). While metrics are off each counting point is one ``is None`` check, and nothing
imports ``prometheus_client``. Install the extra: ``pip install "grip-asgi[metrics]"``.

The counts are per process, like every ``prometheus_client`` metric outside its multiprocess
mode, which these do not join: with several workers, scrape each one.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from ._errors import (
    ConnectionIdMissingError,
    GripProtocolError,
    RequestHeaderTooLargeError,
    RequestTooLargeError,
    WebSocketDecodeError,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ._context import GripContext
    from ._errors import PublishError
    from ._websocket import WebSocketEvent

__all__ = ("disable", "enable")

logger = logging.getLogger("grip_asgi.metrics")

#: Upper bounds of the ``grip_publish_duration_seconds`` buckets: a local Pushpin answers
#: in about a millisecond, Fastly Fanout in tens, and a publish times out at 10 s.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The ``reason`` of a request the middleware answered with a 4xx itself.
_REJECTIONS = {
    WebSocketDecodeError: "malformed events",
    ConnectionIdMissingError: "missing connection-id",
    RequestTooLargeError: "body too large",
    RequestHeaderTooLargeError: "header too large",
}
#: The ``reason`` of a direct request refused with 501 (``proxy_only``).
_PROXY_REQUIRED = "proxy required"
_PROXIED = ("proxied", "")
_DIRECT = ("direct", "")
_K = TypeVar("_K", str, tuple[str, str])


class _Histogram:
    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        # One count per bound, plus +Inf; not cumulative until collected.
        self.buckets = [0] * (len(_DURATION_BUCKETS) + 1)
        self.sum = 0.0


class _Recorder:
    """The counts, in plain ints: the library's counting points call these methods, and the
    collector copies the dicts at scrape time. One lock, taken once per call, as Django and
    the SyncPublisher count from several threads (an unlocked ``d[k] += 1`` can lose counts);
    a call costs about what a bound ``prometheus_client`` child's ``inc()`` does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Present from the start, so that a dashboard sees zeros rather than no series.
        self.requests: dict[tuple[str, str], int] = {_PROXIED: 0, _DIRECT: 0}
        self.events_received: dict[str, int] = {}
        self.events_sent: dict[str, int] = {}
        self.publish_requests: dict[str, int] = {}
        self.publish_retries: dict[str, int] = {}
        self.publish_items: dict[str, int] = {}
        self.publish_failures: dict[tuple[str, str], int] = {}
        self.publish_durations: dict[str, _Histogram] = {}
        self.history_appends: dict[str, int] = {}
        self.recoveries: dict[str, int] = {}
        self.recovered_events: dict[str, int] = {}
        self.recovery_resets: dict[str, int] = {}
        self.recovery_pages: dict[str, int] = {}

    def request(self, ctx: GripContext, refused: bool = False) -> None:
        """A request the app gets, classed by its context, and the WebSocket-over-HTTP events
        it brought; ``refused``: answered 501 instead (``proxy_only``), counted as rejected."""
        if ctx.is_proxied:
            key = _PROXIED
        elif ctx.sig_error is not None:
            key = ("rejected", ctx.sig_error)
        elif refused:
            key = ("rejected", _PROXY_REQUIRED)
        else:
            key = _DIRECT
        requests, received, ws = self.requests, self.events_received, ctx.ws
        with self.lock:  # once per request: the increments are inlined
            requests[key] = requests.get(key, 0) + 1
            if ws is not None:
                for event in ws.in_events:
                    received[event.type] = received.get(event.type, 0) + 1

    def rejected(self, error: GripProtocolError) -> None:
        """A request the middleware answered with ``error``'s 4xx, before the app."""
        key = ("rejected", _REJECTIONS.get(type(error), type(error).__name__))
        with self.lock:
            _add(self.requests, key)

    def websocket_sent(self, events: Iterable[WebSocketEvent]) -> None:
        counts = self.events_sent
        with self.lock:
            for event in events:
                counts[event.type] = counts.get(event.type, 0) + 1

    def publish_attempt(self, proxy: str, items: int, retry: int, succeeded: bool) -> None:
        with self.lock:
            _add(self.publish_requests, proxy)
            if retry:
                _add(self.publish_retries, proxy)
            if succeeded:
                _add(self.publish_items, proxy, items)

    def zmq_publish(self, proxy: str, items: int, error: PublishError | None) -> None:
        """One publish request over ZeroMQ, which confirms no delivery: its items count once
        queued on the socket, and ``error`` says how many were not."""
        queued = items if error is None else len(error.delivered_items)
        with self.lock:
            _add(self.publish_requests, proxy)
            _add(self.publish_items, proxy, queued)
            if error is not None:
                _add(self.publish_failures, (proxy, type(error).__name__))

    def publish_failed(self, proxy: str, error: str) -> None:
        with self.lock:
            _add(self.publish_failures, (proxy, error))

    def publish_duration(self, proxy: str, seconds: float) -> None:
        with self.lock:
            histogram = self.publish_durations.get(proxy)
            if histogram is None:
                histogram = self.publish_durations[proxy] = _Histogram()
            histogram.buckets[bisect.bisect_left(_DURATION_BUCKETS, seconds)] += 1
            histogram.sum += seconds

    def history_append(self, backend: str) -> None:
        with self.lock:
            _add(self.history_appends, backend)

    def recovery(self, transport: str, replayed: int, resets: int, more: bool) -> None:
        """One recoverable response: ``replayed`` missed events and ``resets`` stream-resets
        sent, ``more`` when it stopped at a page with more to come."""
        with self.lock:
            if replayed or resets:
                _add(self.recoveries, transport)
            _add(self.recovered_events, transport, replayed)
            _add(self.recovery_resets, transport, resets)
            _add(self.recovery_pages, transport, 1 if more else 0)


def _add(counts: dict[_K, int], key: _K, amount: int = 1) -> None:
    counts[key] = counts.get(key, 0) + amount


#: Counting is on when this is set; every counting point in the library checks it first.
_recorder: _Recorder | None = None
_lock = threading.Lock()
_registries: list[CollectorRegistry] = []


class _Collector:
    """Exposes the counts to prometheus_client at scrape time (its custom collector protocol:
    a ``collect()`` that yields metric families)."""

    def collect(self) -> Iterator[Metric]:
        return _families(_recorder or _Recorder())

    def describe(self) -> Iterator[Metric]:
        # The names, for the registry's duplicate check, without reading any count.
        return _families(_Recorder())


def _families(recorder: _Recorder) -> Iterator[Metric]:
    """The metric families, with ``recorder``'s counts."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    with recorder.lock:  # copies, so that counting never waits on the text being built
        requests = dict(recorder.requests)
        received = dict(recorder.events_received)
        sent = dict(recorder.events_sent)
        publish = [
            dict(recorder.publish_requests),
            dict(recorder.publish_retries),
            dict(recorder.publish_items),
        ]
        failures = dict(recorder.publish_failures)
        durations = {
            proxy: (list(h.buckets), h.sum) for proxy, h in recorder.publish_durations.items()
        }
        appends = dict(recorder.history_appends)
        recovery = [
            dict(recorder.recoveries),
            dict(recorder.recovered_events),
            dict(recorder.recovery_resets),
            dict(recorder.recovery_pages),
        ]

    def counter(name: str, doc: str, labels: Sequence[str], values: dict[_K, int]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, value in sorted(values.items()):
            family.add_metric(key if isinstance(key, tuple) else (key,), value)
        return family

    yield counter(
        "grip_requests",
        "HTTP requests GripMiddleware saw: proxied (Grip-Sig accepted), direct (no Grip-Sig) "
        "or rejected (Grip-Sig not accepted, or answered 4xx/501 by the middleware).",
        ("result", "reason"),
        requests,
    )
    yield counter(
        "grip_websocket_events_received",
        "WebSocket-over-HTTP events the proxy sent the app, by type.",
        ("type",),
        received,
    )
    yield counter(
        "grip_websocket_events_sent",
        "WebSocket-over-HTTP events the app replied with, by type.",
        ("type",),
        sent,
    )
    for (name, doc), values in zip(_PUBLISH_COUNTERS, publish, strict=True):
        yield counter(name, doc, ("proxy",), values)
    yield counter(
        "grip_publish_failures",
        "Publish requests that failed for good (retries spent, or not retryable), by error.",
        ("proxy", "error"),
        failures,
    )
    histogram = HistogramMetricFamily(
        "grip_publish_duration_seconds",
        "Time from starting a publish request to its outcome (Publisher: a wait for a "
        "max_in_flight slot included).",
        labels=("proxy",),
    )
    bounds = [*map(floatToGoString, _DURATION_BUCKETS), "+Inf"]
    for proxy, (buckets, total) in sorted(durations.items()):
        cumulative, running = [], 0
        for bound, count in zip(bounds, buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        histogram.add_metric((proxy,), cumulative, total)
    yield histogram
    yield counter(
        "grip_history_appends",
        "Events appended to a channel history, by backend.",
        ("backend",),
        appends,
    )
    for (name, doc), values in zip(_RECOVERY_COUNTERS, recovery, strict=True):
        yield counter(name, doc, ("transport",), values)


_PUBLISH_COUNTERS = (
    ("grip_publish_requests", "Publish requests sent to a proxy, resends included."),
    ("grip_publish_retries", "Publish requests that resent a failed one."),
    ("grip_publish_items", "Items a proxy took (answered 2xx; over ZeroMQ, queued on its socket)."),
)
_RECOVERY_COUNTERS = (
    (
        "grip_recoveries",
        "Recoverable SSE and long-poll responses that gave a returning subscriber what it "
        "missed (events or a stream-reset).",
    ),
    ("grip_recovery_replayed_events", "Missed events replayed from the history."),
    (
        "grip_recovery_resets",
        "stream-reset events sent: what a subscriber missed was no longer stored.",
    ),
    (
        "grip_recovery_pages",
        "Recoverable responses cut at page_size, with the rest of the backlog to follow.",
    ),
)
_COLLECTOR = _Collector()


def enable(registry: CollectorRegistry | None = None) -> None:
    """Start counting, and expose the ``grip_*`` metrics through ``registry``.

    Call it once at start-up, before the app serves requests. ``registry`` defaults to
    ``prometheus_client.REGISTRY``, which ``prometheus_client.make_asgi_app()`` and
    ``grip_django.metrics.metrics_view`` serve. Calling it again adds a registry and keeps
    the counts. Raises ImportError when ``prometheus_client`` is not installed.
    """
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:
        raise ImportError(
            'grip_asgi.metrics needs prometheus_client: pip install "grip-asgi[metrics]"'
        ) from exc
    global _recorder
    target = REGISTRY if registry is None else registry
    with _lock:
        if not any(known is target for known in _registries):
            target.register(_COLLECTOR)
            _registries.append(target)
        if _recorder is None:
            _recorder = _Recorder()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "grip: the grip_* metrics are per process and do not join prometheus_client's "
            "multiprocess mode (PROMETHEUS_MULTIPROC_DIR is set): scrape each worker"
        )


def disable() -> None:
    """Stop counting, forget the counts, and leave every registry :func:`enable` joined."""
    global _recorder
    with _lock:
        _recorder = None
        for registry in _registries:
            registry.unregister(_COLLECTOR)
        _registries.clear()
