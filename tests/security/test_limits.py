"""The request limits: safe defaults, enforced by every adapter, configurable, bounded memory.

- body size (``GripLimits.max_body_size``, 1 MiB): 413, and a body is never read past it;
- events per request (``max_events``, 20,000) and event size (``max_event_size``, 1 MiB): 400;
- ``Grip-Sig`` length (8 KiB): longer tokens are rejected unparsed.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import MutableMapping
from typing import Any

import pytest
from django.test import override_settings

from grip_asgi._context import GripLimits
from grip_asgi._websocket import encode_websocket_events
from grip_asgi.middleware import GripMiddleware
from grip_asgi.testing import open_event, text_event
from tests.cases import GRIP_URL, Case, Config, Expected, Request, proxy, websocket
from tests.test_conformance import ADAPTERS, Observed, observe

MiB = 1024 * 1024


DEFAULTS = Config()


def run(
    adapter: str, request: Request, behaviour: str = "ws_echo", config: Config = DEFAULTS
) -> Observed:
    return observe(adapter, Case("limits", behaviour, request, Expected(200), config))


def with_body(body: bytes) -> Request:
    return Request("POST", websocket().headers, body)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"OPEN\r\n" * 20_000, 200, b"", id="20000 events"),
        pytest.param(b"OPEN\r\n" * 20_001, 400, b"more than 20000 events", id="20001 events"),
        pytest.param(
            b"TEXT 100001\r\n", 400, b"content size 1048577 over the limit", id="event over 1 MiB"
        ),
        pytest.param(
            b"BINARY %x\r\n%s\r\n" % (MiB - 16, b"x" * (MiB - 16)), 200, b"", id="body of 1 MiB"
        ),
        pytest.param(
            b"BINARY %x\r\n%s\r\n" % (MiB - 15, b"x" * (MiB - 15)),
            413,
            b"over the 1048576-byte limit",
            id="body over 1 MiB",
        ),
    ],
)
def test_the_default_limits_hold_in_every_adapter(
    adapter: str, body: bytes, status: int, message: bytes
) -> None:
    observed = run(adapter, with_body(body))
    assert observed.status == status, observed.body[:200]
    assert message in observed.body


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_huge_grip_sig_is_rejected_unparsed(adapter: str) -> None:
    request = Request(headers=(("Grip-Sig", "a" * MiB),))
    observed = run(adapter, request, "describe")
    assert observed.status == 200
    assert b'"sig_error": "malformed token"' in observed.body


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(("Grip-Last", "channel; last-id=1, " * 50_000), id="Grip-Last of 1 MiB"),
        pytest.param(("Grip-Feature", "status, " * 120_000), id="Grip-Feature of 1 MiB"),
        pytest.param(("Meta-User", "x" * MiB), id="Meta-User of 1 MiB"),
    ],
)
def test_oversized_grip_headers_get_a_4xx(adapter: str, header: tuple[str, str]) -> None:
    request = websocket(open_event(), text_event("hi"))
    request = Request(request.method, (*request.headers, header), request.body)
    observed = run(adapter, request)
    assert 400 <= observed.status < 500, observed


# --- Configurable ------------------------------------------------------------------------------

TIGHT = {"max_body_size": 64, "max_events": 2, "max_event_size": 8}
DJANGO_SETTINGS = {
    "max_body_size": "GRIP_MAX_BODY_SIZE",
    "max_events": "GRIP_MAX_EVENTS",
    "max_event_size": "GRIP_MAX_EVENT_SIZE",
}
OVER = {
    "max_body_size": (413, encode_websocket_events([open_event(), text_event("y" * 70)])),
    "max_events": (400, encode_websocket_events([open_event(), text_event("a"), text_event("b")])),
    "max_event_size": (400, encode_websocket_events([open_event(), text_event("123456789")])),
}


def limit_params() -> list[Any]:
    params = []
    for limit in TIGHT:
        for adapter in ADAPTERS:
            params.append(pytest.param(limit, adapter, id=f"{limit}-{adapter}"))
    return params


@pytest.mark.parametrize(("limit", "adapter"), limit_params())
def test_every_limit_is_configurable(limit: str, adapter: str) -> None:
    status, body = OVER[limit]
    request = with_body(body)
    if adapter == "asgi":
        app = GripMiddleware(
            _never_called, grip=GRIP_URL, limits=GripLimits(**{limit: TIGHT[limit]})
        )
        observed_status = asyncio.run(_status_of(app, request))
    elif limit == "max_body_size":
        observed_status = run(adapter, request, config=Config(max_body_size=TIGHT[limit])).status
    else:
        with override_settings(**{DJANGO_SETTINGS[limit]: TIGHT[limit]}):
            observed_status = run(adapter, request).status
    assert observed_status == status


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the request should have been refused before the app")


async def _status_of(app: GripMiddleware, request: Request) -> int:
    scope = {
        "type": "http",
        "method": request.method,
        "path": "/",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers],
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


# --- Bounded memory ----------------------------------------------------------------------------


def test_a_huge_streamed_body_is_not_read_past_the_limit() -> None:
    """64 MiB in 64 KiB chunks: 413 after at most the limit plus one chunk, in little memory."""
    chunk = b"x" * 65_536
    total_chunks = 1024
    app = GripMiddleware(_never_called, grip=GRIP_URL)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"grip-sig", proxy.headers()["Grip-Sig"].encode()),
            (b"content-type", b"application/websocket-events"),
            (b"connection-id", b"conn-1"),
        ],
    }
    read = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": read < total_chunks}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    tracemalloc.start()
    try:
        asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sent[0]["status"] == 413
    assert read <= GripLimits().max_body_size // len(chunk) + 1
    assert peak < 4 * MiB, f"peak {peak} bytes"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_requests_used_here_are_answered_when_small(adapter: str) -> None:
    """The control for the tests above: the same headers with a small body are answered."""
    observed = run(adapter, websocket(open_event(), text_event("hi")))
    assert (observed.status, observed.body) == (200, b"OPEN\r\nTEXT 4\r\nm:hi\r\n")
