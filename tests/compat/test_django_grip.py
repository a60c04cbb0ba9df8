"""django-grip 3.5.2 against ``grip_asgi.compat.django_grip`` (that is, grip_django).

Each case of :mod:`tests.compat.cases_django_grip` runs on django-grip's published code (with
gripcontrol 4.4.0) and on our names, through Django's test client; the differences we keep
are listed below, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.djangoapp import isolate_grip, setup_django

from . import cases_django_grip as cases
from .harness import CaptureServer, Harness
from .verdict import Difference, cases_for, check, raises, value

setup_django()

PEER = "django-grip 3.5.2"

_STREAM_OPEN = "[stream open]\n"


def _stream(keep_alive: str) -> dict[str, Any]:
    return {
        "status": 200,
        "grip": {"grip-channel": "test", "grip-hold": "stream", "grip-keep-alive": keep_alive},
        "content_type": "text/html; charset=utf-8",
        "body": _STREAM_OPEN,
    }


def _events(*events: Any) -> dict[str, Any]:
    return {
        "status": 200,
        "grip": {},
        "content_type": "application/websocket-events",
        "events": list(events),
    }


_ATTRIBUTES = (
    '{"proxied": true, "signed": true, "grip_proxied": true, "grip_signed": true, '
    '"features": [], "last": {}, "wscontext": false}'
)

#: What we do differently from django-grip on purpose: case -> (why, theirs, ours).
EXPECTED = {
    "instruct_on_a_direct_request": Difference(
        "request.grip.start_instruct() raises InstructNotAvailableError (a RuntimeError) for a "
        "request that did not come through the proxy: django-grip sent the Grip-* headers, "
        "with the channel names, to the client; check request.grip.proxied first",
        peer=value(
            {
                "status": 200,
                "grip": {
                    "grip-channel": "apple, banana; prev-id=1",
                    "grip-hold": "stream",
                    "grip-keep-alive": "keepalive\\n; format=cstring; timeout=25",
                    "grip-link": "</endpoint>; rel=next",
                },
                "content_type": "text/html; charset=utf-8",
                "body": "",
            }
        ),
        ours=raises("RuntimeError"),
    ),
    "set_hold_on_a_direct_request": Difference(
        "set_hold_stream() and set_hold_longpoll() drop the hold of a direct request and the "
        "view's response goes out as it is: django-grip sent the Grip-* headers to the client, "
        "which has no proxy to act on them (GRIP_PROXY_REQUIRED answers 501 in both)",
        peer=value(_stream("x; format=cstring; timeout=20")),
        ours=value({**_stream(""), "grip": {}}),
    ),
    "keep_alive_with_a_backslash": Difference(
        "landscape D3: django-grip escaped a backslash as three, corrupting Grip-Keep-Alive data",
        peer=value(_stream("a\\\\\\b; format=cstring; timeout=20")),
        ours=value(_stream("a\\\\b; format=cstring; timeout=20")),
    ),
    "keep_alive_bytes": Difference(
        "landscape D4: django-grip wrote the repr of bytes (b'AQI=') into Grip-Keep-Alive",
        peer=value(_stream("b'AQI='; format=base64; timeout=20")),
        ours=value(_stream("AQI=; format=base64; timeout=20")),
    ),
    "proxies_setting_is_left_alone": Difference(
        "landscape D1: django-grip appended GRIP_URL's proxy to settings.GRIP_PROXIES on every "
        "signed request (1 entry became 4 after 3 requests); grip_django never modifies settings",
        peer=value([_ATTRIBUTES, 4]),
        ours=value([_ATTRIBUTES, 1]),
    ),
    "proxy_with_a_verify_key_and_no_key": Difference(
        "landscape D2: a proxy with verify_key but no key made every signed request fail with "
        "KeyError (a 500); it verifies Grip-Sig with its verify_key",
        peer=raises("KeyError"),
        ours=value(
            {
                "status": 200,
                "grip": {},
                "content_type": "application/json",
                "body": _ATTRIBUTES,
            }
        ),
    ),
    "echo_client_close": Difference(
        "ws.close() without a code sends 1000 (normal closure); django-grip sent code 0, which "
        "no endpoint may send (RFC 6455 §7.4.2)",
        peer=value(_events(["CLOSE", b"\x00\x00"])),
        ours=value(_events(["CLOSE", b"\x03\xe8"])),
    ),
    "echo_client_disconnect": Difference(
        "ws.recv() returns None when the client disconnected (ws.disconnected is true), as for "
        "a close; django-grip raised IOError, which ended the request in a 500",
        peer=raises("OSError"),
        ours=value(_events(["CLOSE", b"\x03\xe8"])),
    ),
    "echo_body_from_a_direct_client": Difference(
        "only the proxy's requests carry WebSocket events: a body from a client without a valid "
        "Grip-Sig gets no request.wscontext, so websocket_only answers 400; django-grip let "
        "anyone drive a connection's handler",
        peer=value(
            {
                "status": 200,
                "grip": {"sec-websocket-extensions": "grip"},
                "content_type": "application/websocket-events",
                "events": [["OPEN"], ["TEXT", "c", {"channel": "test", "type": "subscribe"}]],
            }
        ),
        ours=value(
            {
                "status": 400,
                "grip": {},
                "content_type": "text/plain; charset=utf-8",
                "body": "Not a WebSocket-over-HTTP request\n",
            }
        ),
    ),
    "websocket_view_returning_a_streaming_response": Difference(
        "landscape D5: a WebSocket view's StreamingHttpResponse made django-grip raise "
        "AttributeError (a 500); it is replaced by the events, unread",
        peer=raises("AttributeError"),
        ours=value(_events()),
    ),
}


@pytest.fixture(scope="module")
def peer(peer_observations: Any) -> dict[str, Any]:
    observations: dict[str, Any] = peer_observations(cases.__name__)
    return observations


@pytest.fixture(scope="module")
def ours(capture: CaptureServer) -> Iterator[Harness]:
    from grip_asgi.compat import django_grip, gripcontrol, pubcontrol

    cases.bind(django_grip, gripcontrol, pubcontrol)
    settings = override_settings(
        MIDDLEWARE=["grip_asgi.compat.django_grip.GripMiddleware"],
        **cases.settings_for(capture.url),
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_grip(monkeypatch)
        with settings:
            yield Harness(cases.API, capture)
        isolate_grip(monkeypatch)


@pytest.mark.parametrize("name", cases_for(cases.CASES, EXPECTED))
def test_behaves_like_django_grip(name: str, peer: dict[str, Any], ours: Harness) -> None:
    check(name, cases.CASES[name], ours, peer, EXPECTED)


def test_legacy_attributes_are_set_for_async_views_too() -> None:
    import asyncio

    from django.http import HttpResponse
    from django.test import AsyncRequestFactory

    from grip_asgi.compat.django_grip import GripMiddleware

    seen: dict[str, bool] = {}

    async def view(request: Any) -> HttpResponse:
        seen.update(proxied=request.grip_proxied, signed=request.grip_signed)
        return HttpResponse()

    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_grip(monkeypatch)
        middleware = GripMiddleware(view)
        response = asyncio.run(middleware.__acall__(AsyncRequestFactory().get("/")))
    assert response.status_code == 200
    assert seen == {"proxied": False, "signed": False}
