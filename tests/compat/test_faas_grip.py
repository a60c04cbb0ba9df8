"""faas-grip 1.0.1 against ``grip_asgi.compat.faas_grip``, and against our Mangum path.

faas-grip's source distribution ships no tests, so these are ours: faas-grip's README chat
handler, fed API Gateway events, on faas-grip's published code and on our compat names;
and the same events through Mangum into that chat ported to an ASGI app
(``tests/e2e/ported/faas_chat.py``). The differences we keep are listed with their reasons.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import pytest

from . import cases_faas_grip as cases
from .harness import CaptureServer, Harness, api
from .verdict import Difference, cases_for, check, raises, value

PEER = "faas-grip 1.0.1"

_NOT_WEBSOCKET = {
    "status": 400,
    "content_type": "text/plain",
    "grip": {},
    "body": "Not a WebSocket-over-HTTP request\n",
}
_OPENED = {
    "status": 200,
    "content_type": "application/websocket-events",
    "grip": {"sec-websocket-extensions": "grip"},
    "events": [["OPEN"], ["TEXT", "c", {"channel": "room", "type": "subscribe"}]],
}


def _closed(code: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "status": 200,
        "content_type": "application/websocket-events",
        "grip": {},
        "events": [["CLOSE", code]],
    }
    return value({"reply": reply, "published": []})


def _truncated_published() -> dict[str, Any]:
    message = {"content": b"anonymous: hi", "type": "text"}
    item = {"channel": "room", "formats": {"ws-message": message}}
    publish = {
        "path": "/publish/",
        "content_type": "application/json",
        "authentication": {"jwt": {"iss": "app", "has_exp": True}},
        "item": item,
    }
    reply: dict[str, Any] = {
        "status": 200,
        "content_type": "application/websocket-events",
        "grip": {},
        "events": [],
    }
    return value({"reply": reply, "published": [publish]})


_CLOSE = Difference(
    "ws.close() without a code sends 1000 (normal closure); faas-grip sent code 0, which no "
    "endpoint may send (RFC 6455 §7.4.2)",
    peer=_closed(b"\x00\x00"),
    ours=_closed(b"\x03\xe8"),
)
_UNSIGNED_REASON = (
    "an event without a valid Grip-Sig is not from the proxy: lambda_get_websocket raises "
    "ValueError once a key is configured (here GRIP_URL's key); faas-grip checked no signature"
)
_TRUNCATED_REASON = (
    "a body shorter than its sizes is malformed (spec §5.3) and refused; faas-grip published "
    "the half message it read"
)

#: The compat names: what we do differently from faas-grip on purpose.
EXPECTED = {
    "client_close": _CLOSE,
    "request_the_proxy_did_not_sign": Difference(
        _UNSIGNED_REASON,
        peer=value({"reply": _OPENED, "published": []}),
        ours=value({"reply": _NOT_WEBSOCKET, "published": []}),
    ),
    "truncated_body": Difference(
        _TRUNCATED_REASON,
        peer=_truncated_published(),
        ours=value({"reply": _NOT_WEBSOCKET, "published": []}),
    ),
}

#: The ASGI port on Mangum: what it does differently from faas-grip's handler on purpose.
EXPECTED_ON_MANGUM = {
    "client_close": Difference(
        "a client's close is answered for the handler, with the client's own code (1000 here); "
        "faas-grip's handler sent code 0, which no endpoint may send (RFC 6455 §7.4.2)",
        peer=_CLOSE.peer,
        ours=_CLOSE.ours,
    ),
    "request_the_proxy_did_not_sign": Difference(
        "the middleware checks Grip-Sig, so the port sees no WebSocket (ws is None) in a "
        "request the proxy did not sign, and answers 400; faas-grip checked no signature",
        peer=value({"reply": _OPENED, "published": []}),
        ours=value({"reply": _NOT_WEBSOCKET, "published": []}),
    ),
    "truncated_body": Difference(
        _TRUNCATED_REASON + "; the middleware answers 400 with the problem",
        peer=_truncated_published(),
        ours=value(
            {
                "reply": {
                    "status": 400,
                    "content_type": "text/plain",
                    "grip": {},
                    "body": "malformed WebSocket-over-HTTP body: content truncated: 5 bytes "
                    "announced, 2 left at byte 8\n",
                },
                "published": [],
            }
        ),
    ),
    "binary_message": Difference(
        "the port's chat is text and ignores a binary message; faas-grip's README handler "
        "called str.startswith on its bytes and failed (TypeError, a failed invocation)",
        peer=raises("TypeError"),
        ours=value(
            {
                "reply": {
                    "status": 200,
                    "content_type": "application/websocket-events",
                    "grip": {},
                    "events": [],
                },
                "published": [],
            }
        ),
    ),
}


@pytest.fixture(scope="module")
def peer(peer_observations: Any) -> dict[str, Any]:
    observations: dict[str, Any] = peer_observations(cases.__name__)
    return observations


@pytest.fixture(scope="module")
def grip_environment(capture: CaptureServer) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("GRIP_PROXIES", "GRIP_VERIFY_KEY", "GRIP_PROXY_REQUIRED", "GRIP_PROXY_ONLY"):
            monkeypatch.delenv(name, raising=False)
        for name, setting in cases.environment(capture.url).items():
            monkeypatch.setenv(name, setting)
        yield


@pytest.fixture(scope="module")
def compat(grip_environment: None, capture: CaptureServer) -> Harness:
    from tests.e2e.ported import faas_chat_compat

    return Harness(api(handler=lambda event: faas_chat_compat.handler(event, None)), capture)


@pytest.fixture(scope="module")
def mangum(grip_environment: None, capture: CaptureServer) -> Iterator[Harness]:
    # Mangum runs each invocation on the thread's event loop, as a Lambda process has one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from tests.e2e.ported import faas_chat

    built = faas_chat.app.middleware_stack
    faas_chat.app.middleware_stack = None  # GripMiddleware reads this environment

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = faas_chat.handler(event, cast(Any, None))
        return result

    try:
        yield Harness(api(handler=handler), capture)
    finally:
        faas_chat.app.middleware_stack = built
        loop.close()
        asyncio.set_event_loop(None)


@pytest.mark.parametrize("name", cases_for(cases.CASES, EXPECTED))
def test_behaves_like_faas_grip(name: str, peer: dict[str, Any], compat: Harness) -> None:
    check(name, cases.CASES[name], compat, peer, EXPECTED)


@pytest.mark.parametrize("name", cases_for(cases.CASES, EXPECTED_ON_MANGUM))
def test_the_asgi_port_on_mangum_behaves_like_faas_grip(
    name: str, peer: dict[str, Any], mangum: Harness
) -> None:
    check(name, cases.CASES[name], mangum, peer, EXPECTED_ON_MANGUM)
