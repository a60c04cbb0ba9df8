"""grip_asgi.metrics: known traffic, then a scrape read with prometheus_client's own parser.

Each scrape goes through the app's middleware like any request, so it counts itself as one
direct request.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zmq
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from grip_asgi import (
    GripMiddleware,
    HttpStreamFormat,
    Item,
    Publisher,
    PublishError,
    SyncPublisher,
    WebSocketEvent,
    get_grip_context,
    get_publisher,
    metrics,
)
from grip_asgi.events import get_events
from grip_asgi.history import MemoryHistory, open_history
from grip_asgi.pushpin import _free_ports
from grip_asgi.testing import (
    GripTestProxy,
    close_event,
    make_grip_sig,
    open_event,
    text_event,
)
from grip_django import sse_response, websocket_only
from grip_django.conf import grip_conf
from grip_django.metrics import metrics_view
from tests.djangoapp import isolate_grip, setup_django
from tests.djangoapp.settings import GRIP_KEY
from tests.history.conftest import running_redis

setup_django()

KEY = "metrics-test-key"
GRIP_URL = f"http://pushpin.test:5561/?verify-iss=pushpin&verify-key={KEY}"
#: How the metrics name the proxy of GRIP_URL: its control URI without the query.
PROXY = "http://pushpin.test:5561"
Sample = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    metrics.disable()  # from zero, whatever ran before in this process (the docs' examples)
    registry = CollectorRegistry()
    metrics.enable(registry)
    try:
        yield registry
    finally:
        metrics.disable()


def parse(text: str) -> dict[Sample, float]:
    """Every ``grip_*`` sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("grip_")
        for sample in family.samples
    }


def counters(samples: dict[Sample, float]) -> dict[Sample, float]:
    """The counter samples: everything but the publish duration histogram's."""
    return {k: v for k, v in samples.items() if not k[0].startswith("grip_publish_duration")}


def s(name: str, **labels: str) -> Sample:
    return (name, tuple(sorted(labels.items())))


# --- ASGI: a Starlette app behind GripMiddleware ----------------------------------------------

proxy = GripTestProxy(key=KEY)


def fake_pushpin(attempts: Counter[str]) -> httpx.MockTransport:
    """Answers by channel: "flaky" fails once, "refused" is a 400, "down" never connects."""

    def handler(request: httpx.Request) -> httpx.Response:
        channel = json.loads(request.content)["items"][0]["channel"]
        attempts[channel] += 1
        if channel == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if channel == "refused":
            return httpx.Response(400, text="bad item")
        if channel == "flaky" and attempts[channel] == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, text="Published\n")

    return httpx.MockTransport(handler)


async def stream(request: Request) -> Response:
    get_grip_context(request).start_instruct().add_channel("news").set_hold_stream()
    return PlainTextResponse("[stream open]\n")


async def plain(request: Request) -> Response:
    return PlainTextResponse("hello\n")


async def echo(request: Request) -> Response:
    ws = get_grip_context(request).ws
    assert ws is not None
    if ws.is_opening():
        ws.accept()
    for message in ws:
        ws.send(message)
    return Response()


async def publish(request: Request) -> Response:
    channel = request.path_params["channel"]
    try:
        await get_publisher(request).publish(channel, HttpStreamFormat("x\n"), id="1")
    except PublishError as exc:
        return PlainTextResponse(type(exc).__name__, 502)
    return PlainTextResponse("published\n")


async def reliable(request: Request) -> Response:
    await get_publisher(request).publish_reliable("news", (await request.body()).decode())
    return PlainTextResponse("published\n")


async def events(request: Request) -> Response:
    page_size = int(request.query_params.get("page_size", 100))
    return await get_events(request).sse("news", page_size=page_size)


async def poll(request: Request) -> Response:
    return await get_events(request).longpoll("news")


def asgi_app(registry: CollectorRegistry, publisher: Publisher) -> Starlette:
    app = Starlette(
        routes=[
            Route("/stream", stream),
            Route("/plain", plain),
            Route("/echo", echo, methods=["POST"]),
            Route("/publish/{channel}", publish, methods=["POST"]),
            Route("/reliable", reliable, methods=["POST"]),
            Route("/events", events),
            Route("/poll", poll),
            Mount("/metrics", app=make_asgi_app(registry)),
        ]
    )
    app.add_middleware(GripMiddleware, grip=GRIP_URL, publisher=publisher)
    return app


def websocket_post(client: TestClient, *events: WebSocketEvent) -> None:
    response = client.post("/echo", **proxy.websocket(*events).kwargs())
    assert response.status_code == 200


def test_asgi_metrics_count_known_traffic_exactly(registry: CollectorRegistry) -> None:
    attempts: Counter[str] = Counter()
    publisher = Publisher(
        GRIP_URL,
        client=httpx.AsyncClient(transport=fake_pushpin(attempts)),
        backoff=0,
        history=MemoryHistory(),
    )
    with TestClient(asgi_app(registry, publisher)) as client:
        # Proxied, direct and rejected requests.
        for _ in range(2):
            assert client.get("/stream", headers=proxy.headers()).headers["grip-hold"] == "stream"
        assert client.get("/plain").status_code == 200
        forged = {"Grip-Sig": make_grip_sig("not-the-key")}
        expired = {"Grip-Sig": make_grip_sig(KEY, expires_in=-60)}
        for headers in (forged, expired):
            assert client.get("/plain", headers=headers).status_code == 200  # as a direct one
        malformed = proxy.websocket(open_event()).headers
        assert client.post("/echo", headers=malformed, content=b"TEXT zz\r\n").status_code == 400
        no_id = {k: v for k, v in malformed.items() if k != "Connection-Id"}
        assert client.post("/echo", headers=no_id, content=b"OPEN\r\n").status_code == 400

        # WebSocket-over-HTTP: events in and out, by type (the client's CLOSE is echoed).
        websocket_post(client, open_event(), text_event("hi"))
        ping = WebSocketEvent("PING", b"p")
        websocket_post(client, ping, text_event("a"), text_event("b"), close_event())

        # Publishes: one that works, one retried once, a 400 and a proxy that is down.
        for channel, status in [("ok", 200), ("flaky", 200), ("refused", 502), ("down", 502)]:
            assert client.post(f"/publish/{channel}").status_code == status
        assert attempts == {"ok": 1, "flaky": 2, "refused": 1, "down": 3}

        # History appends and recoveries.
        for text in ("m1", "m2", "m3"):
            assert client.post("/reliable", content=text).status_code == 200
        resumed = client.get("/events", headers={**proxy.headers(), "Last-Event-ID": "news:1"})
        assert resumed.text.count("\ndata: ") == 2
        assert (
            "stream-reset"
            in client.get("/events?last_event_id=news:9", headers=proxy.headers()).text
        )
        paged = client.get("/events?last_event_id=news:0&page_size=1", headers=proxy.headers())
        assert "grip-link" in paged.headers and paged.text.count("\ndata: ") == 1
        assert client.get("/events", headers=proxy.headers()).status_code == 200  # a new one
        polled = client.get("/poll?last_event_id=news:2", headers=proxy.headers()).json()
        assert [event["id"] for event in polled["events"]] == [3]

        scrape = client.get("/metrics/")
    assert scrape.status_code == 200
    samples = parse(scrape.text)

    assert counters(samples) == {
        # 2 streams, 2 WebSocket posts, 4 SSE and 1 long-poll requests
        s("grip_requests_total", result="proxied", reason=""): 9,
        # /plain, 4 publishes, 3 reliable publishes and the scrape itself
        s("grip_requests_total", result="direct", reason=""): 9,
        s("grip_requests_total", result="rejected", reason="bad signature"): 1,
        s("grip_requests_total", result="rejected", reason="expired"): 1,
        s("grip_requests_total", result="rejected", reason="malformed events"): 1,
        s("grip_requests_total", result="rejected", reason="missing connection-id"): 1,
        s("grip_websocket_events_received_total", type="OPEN"): 1,
        s("grip_websocket_events_received_total", type="PING"): 1,
        s("grip_websocket_events_received_total", type="TEXT"): 3,
        s("grip_websocket_events_received_total", type="CLOSE"): 1,
        s("grip_websocket_events_sent_total", type="OPEN"): 1,
        s("grip_websocket_events_sent_total", type="PONG"): 1,
        s("grip_websocket_events_sent_total", type="TEXT"): 3,
        s("grip_websocket_events_sent_total", type="CLOSE"): 1,
        # ok 1, flaky 2, refused 1, down 3, reliable 3
        s("grip_publish_requests_total", proxy=PROXY): 10,
        s("grip_publish_retries_total", proxy=PROXY): 3,
        s("grip_publish_items_total", proxy=PROXY): 5,
        s("grip_publish_failures_total", proxy=PROXY, error="PublishError"): 1,
        s("grip_publish_failures_total", proxy=PROXY, error="PublishConnectionError"): 1,
        s("grip_history_appends_total", backend="memory"): 3,
        s("grip_recoveries_total", transport="sse"): 3,
        s("grip_recovery_replayed_events_total", transport="sse"): 3,
        s("grip_recovery_resets_total", transport="sse"): 1,
        s("grip_recovery_pages_total", transport="sse"): 1,
        s("grip_recoveries_total", transport="longpoll"): 1,
        s("grip_recovery_replayed_events_total", transport="longpoll"): 1,
        s("grip_recovery_resets_total", transport="longpoll"): 0,
        s("grip_recovery_pages_total", transport="longpoll"): 0,
    }
    # One observation per publish request; the times themselves are the machine's.
    assert samples[s("grip_publish_duration_seconds_count", proxy=PROXY)] == 10
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "grip_publish_duration_seconds_bucket"
    )
    assert [le for le, _ in buckets][-1] == float("inf") and buckets[-1][1] == 10
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))
    assert samples[s("grip_publish_duration_seconds_sum", proxy=PROXY)] > 0


def test_proxy_only_refusals_are_rejections(registry: CollectorRegistry) -> None:
    app = Starlette(routes=[Route("/plain", plain)])
    app.add_middleware(GripMiddleware, grip=GRIP_URL, proxy_only=True)
    client = TestClient(app)
    assert client.get("/plain").status_code == 501
    forged = {"Grip-Sig": make_grip_sig("not-the-key")}
    assert client.get("/plain", headers=forged).status_code == 501
    assert client.get("/plain", headers=proxy.headers()).status_code == 200
    requests = {k: v for k, v in scrape(registry).items() if k[0] == "grip_requests_total"}
    assert requests == {
        s("grip_requests_total", result="proxied", reason=""): 1,
        s("grip_requests_total", result="direct", reason=""): 0,
        s("grip_requests_total", result="rejected", reason="proxy required"): 1,
        s("grip_requests_total", result="rejected", reason="bad signature"): 1,
    }


def scrape(registry: CollectorRegistry) -> dict[Sample, float]:
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


def test_the_sync_publisher_counts_the_same(registry: CollectorRegistry) -> None:
    attempts: Counter[str] = Counter()
    client = httpx.Client(transport=fake_pushpin(attempts))
    with SyncPublisher(GRIP_URL, client=client, backoff=0) as publisher:
        publisher.publish("flaky", HttpStreamFormat("x\n"), id="1")
        with pytest.raises(PublishError):
            publisher.publish("refused", HttpStreamFormat("x\n"))
    samples = scrape(registry)
    assert {k: v for k, v in counters(samples).items() if k[0].startswith("grip_publish")} == {
        s("grip_publish_requests_total", proxy=PROXY): 3,
        s("grip_publish_retries_total", proxy=PROXY): 1,
        s("grip_publish_items_total", proxy=PROXY): 1,
        s("grip_publish_failures_total", proxy=PROXY, error="PublishError"): 1,
    }
    assert samples[s("grip_publish_duration_seconds_count", proxy=PROXY)] == 3


def test_zeromq_publishes_count_items_once_queued(registry: CollectorRegistry) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pull = context.socket(zmq.PULL)  # what Pushpin's push_in_spec is
    pull.setsockopt(zmq.RCVTIMEO, 10_000)
    listened = f"zmq+tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"
    (port,) = _free_ports(1)
    unheard = f"zmq+tcp://127.0.0.1:{port}"  # no Pushpin: nothing can be queued
    items = [("news", Item(HttpStreamFormat("one\n"))), ("news", Item(HttpStreamFormat("two\n")))]
    try:
        with SyncPublisher(listened) as publisher:
            publisher.publish_many(items)
        assert [pull.recv()[:1] for _ in items] == [b"J", b"J"]
        with SyncPublisher(unheard, timeout=0.2) as publisher, pytest.raises(PublishError):
            publisher.publish_many(items)
    finally:
        pull.close(linger=0)
    publishes = {k: v for k, v in counters(scrape(registry)).items() if "publish" in k[0]}
    assert publishes == {
        s("grip_publish_requests_total", proxy=listened): 1,
        s("grip_publish_items_total", proxy=listened): 2,
        s("grip_publish_requests_total", proxy=unheard): 1,
        s("grip_publish_items_total", proxy=unheard): 0,
        s("grip_publish_failures_total", proxy=unheard, error="ZmqSendTimeoutError"): 1,
    }


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as server:
        yield server.url


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
@pytest.mark.anyio
async def test_history_appends_count_once_per_event_by_backend(
    backend: str, registry: CollectorRegistry, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    urls = {"memory": "memory:", "sqlite": f"sqlite:///{tmp_path}/history.sqlite3"}
    url = urls.get(backend) or request.getfixturevalue("redis_url")
    store = open_history(url)
    try:
        await store.append("news", "from the async face")
        store.sync.append("news", "from the blocking face")  # the async face calls it, or not
    finally:
        await store.aclose()
    appends = {k: v for k, v in scrape(registry).items() if k[0] == "grip_history_appends_total"}
    assert appends == {s("grip_history_appends_total", backend=backend): 2}


# --- Django: the test client and grip_django.metrics.metrics_view ----------------------------

django_proxy = GripTestProxy(key=GRIP_KEY)


def django_stream(request: HttpRequest) -> HttpResponse:
    request.grip.start_instruct().add_channel("news").set_hold_stream()  # type: ignore[attr-defined]
    return HttpResponse("[stream open]\n")


def django_plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello\n")


@csrf_exempt
@websocket_only
def django_echo(request: HttpRequest) -> HttpResponse:
    ws = request.grip.ws  # type: ignore[attr-defined]
    if ws.is_opening():
        ws.accept()
    for message in ws:
        ws.send(message)
    return HttpResponse()


def django_events(request: HttpRequest) -> HttpResponse:
    return sse_response(request, "news")


urlpatterns = [
    path("stream", django_stream),
    path("plain", django_plain),
    path("echo", django_echo),
    path("events", django_events),
    path("metrics", metrics_view),
]


@pytest.fixture
def django_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_grip(monkeypatch)
    try:
        with override_settings(ROOT_URLCONF=__name__, GRIP_HISTORY_URL="memory:"):
            yield
    finally:
        isolate_grip(monkeypatch)


def test_django_metrics_count_known_traffic_exactly(
    django_site: None, registry: CollectorRegistry
) -> None:
    from prometheus_client import REGISTRY

    metrics.enable()  # the default registry, which metrics_view serves
    client = Client()
    assert client.get("/stream", headers=django_proxy.headers())["Grip-Hold"] == "stream"
    assert client.get("/plain").status_code == 200
    forged = {"Grip-Sig": make_grip_sig("not-the-key")}
    assert client.get("/plain", headers=forged).status_code == 200
    request = django_proxy.websocket(open_event(), text_event("hi"))
    reply = client.generic("POST", "/echo", request.content, headers=request.headers)
    assert reply.status_code == 200
    malformed = client.generic("POST", "/echo", b"TEXT zz\r\n", headers=request.headers)
    assert malformed.status_code == 400
    for text in ("m1", "m2"):
        grip_conf.history.sync.append("news", text)
    resumed = client.get("/events", headers={**django_proxy.headers(), "Last-Event-ID": "news:1"})
    assert resumed.content.count(b"\ndata: ") == 1

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = counters(parse(response.content.decode()))
    assert samples == {
        s("grip_requests_total", result="proxied", reason=""): 3,  # stream, echo, events
        s("grip_requests_total", result="direct", reason=""): 2,  # /plain and the scrape
        s("grip_requests_total", result="rejected", reason="bad signature"): 1,
        s("grip_requests_total", result="rejected", reason="malformed events"): 1,
        s("grip_websocket_events_received_total", type="OPEN"): 1,
        s("grip_websocket_events_received_total", type="TEXT"): 1,
        s("grip_websocket_events_sent_total", type="OPEN"): 1,
        s("grip_websocket_events_sent_total", type="TEXT"): 1,
        s("grip_history_appends_total", backend="memory"): 2,
        s("grip_recoveries_total", transport="sse"): 1,
        s("grip_recovery_replayed_events_total", transport="sse"): 1,
        s("grip_recovery_resets_total", transport="sse"): 0,
        s("grip_recovery_pages_total", transport="sse"): 0,
    }
    # The same counts reach every registry enable() was given.
    assert REGISTRY is not registry
    assert counters(scrape(registry)) == samples


def test_metrics_view_speaks_openmetrics_when_asked(
    django_site: None, registry: CollectorRegistry
) -> None:
    metrics.enable()
    response = Client().get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert b"# TYPE grip_requests counter" in response.content
    assert response.content.endswith(b"# EOF\n")


# --- Switching on and off ---------------------------------------------------------------------


def test_disable_stops_counting_and_leaves_the_registries() -> None:
    metrics.disable()
    registry = CollectorRegistry()
    metrics.enable(registry)
    metrics.enable(registry)  # once per registry: no duplicate error
    app = Starlette(routes=[Route("/plain", plain)])
    app.add_middleware(GripMiddleware, grip=GRIP_URL)
    client = TestClient(app)
    client.get("/plain")
    assert scrape(registry)[s("grip_requests_total", result="direct", reason="")] == 1
    metrics.disable()
    client.get("/plain")
    assert scrape(registry) == {}
    metrics.enable(registry)  # a fresh start
    try:
        assert scrape(registry)[s("grip_requests_total", result="direct", reason="")] == 0
    finally:
        metrics.disable()


def test_enable_names_the_extra_when_prometheus_client_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics.disable()
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r'pip install "grip-asgi\[metrics\]"'):
        metrics.enable()
    assert metrics._recorder is None


def test_enable_warns_that_multiprocess_mode_is_not_joined(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="grip_asgi.metrics"):
        metrics.enable(CollectorRegistry())
    metrics.disable()
    assert "scrape each worker" in caplog.text


def test_nothing_imports_prometheus_client_while_metrics_are_off() -> None:
    # A fresh interpreter: the library's whole request path, publish and history included.
    code = """
import asyncio, sys, httpx
from grip_asgi import GripMiddleware, Publisher, HttpStreamFormat
from grip_asgi.history import MemoryHistory
import grip_asgi.metrics, grip_django.metrics

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def main():
    middleware = GripMiddleware(app, grip="http://pushpin.test:5561/?verify-key=k")
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"grip-sig", b"x")]}
    sent = []
    async def send(message): sent.append(message)
    async def receive(): return {"type": "http.request", "body": b""}
    await middleware(scope, receive, send)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    client = httpx.AsyncClient(transport=transport)
    publisher = Publisher("http://pushpin.test:5561/", client=client)
    await publisher.publish("news", HttpStreamFormat("x"))
    await MemoryHistory().append("news", "x")
    assert sent[0]["status"] == 200

asyncio.run(main())
assert "prometheus_client" not in sys.modules, "prometheus_client was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
