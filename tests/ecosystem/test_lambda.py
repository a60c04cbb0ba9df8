"""The FastAPI example on AWS Lambda: API Gateway events in, through Mangum, Lambda results out.

The events are shaped as API Gateway sends them for a request Pushpin forwards: a REST API
(payload 1.0, ``multiValueHeaders``) and an HTTP API (payload 2.0, ``rawPath``, cookies),
with WebSocket-over-HTTP bodies base64-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from mangum import Mangum
from mangum.types import LambdaContext

from examples.fastapi_app import app
from examples.shared import NOT_PROXIED
from grip_asgi import WebSocketEvent, encode_websocket_events
from grip_asgi.testing import (
    GripTestProxy,
    close_event,
    make_grip_sig,
    open_event,
    read_instruct,
    read_websocket_reply,
    text_event,
)

KEY = "lambda-verify-key"
GRIP_URL = f"http://pushpin.internal:5561/?verify-iss=pushpin&verify-key={KEY}"
API_HOST = "abc123.execute-api.eu-west-1.amazonaws.com"
proxy = GripTestProxy(key=KEY)

Event = dict[str, Any]


#: What the Lambda runtime passes as ``context``: Mangum only puts it in the scope.
LAMBDA_CONTEXT = cast(
    "LambdaContext",
    SimpleNamespace(
        function_name="grip-example",
        aws_request_id="8f5c0e4e-1f0b-4d6e-9c2a-5d1f3b7a9e10",
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:grip-example",
    ),
)


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mangum]:
    """The example's handler, with GRIP_URL read afresh and an event loop for Mangum."""
    for name in ("GRIP_PROXIES", "GRIP_VERIFY_KEY", "GRIP_PREFIX", "GRIP_PROXY_REQUIRED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIP_URL", GRIP_URL)
    # The chat keeps its history and members here, not in a SQLite file in the working directory.
    monkeypatch.setenv("GRIP_HISTORY_URL", "memory:")
    # FastAPI builds its middleware (and so reads GRIP_URL) on the first request and keeps
    # it; whatever another test left there must not decide this one.
    built = app.middleware_stack
    app.middleware_stack = None
    # Mangum runs each invocation on the thread's event loop, and looks for one when the
    # handler is made: so the loop first, then the import (not at collection).
    loop = _event_loop()
    from examples.lambda_handler import handler

    try:
        yield handler
    finally:
        app.middleware_stack = built
        # Closed here, or the loop would be collected unclosed whenever the next test sets
        # another (a ResourceWarning in whichever test that is).
        loop.close()
        asyncio.set_event_loop(None)


def _event_loop() -> asyncio.AbstractEventLoop:
    """The thread's current event loop, made if there is none.

    A Lambda process always has one (Mangum makes it). In a test run there may be none:
    ``asyncio.run()``, and the ``handler`` fixture's teardown, leave none behind.
    """
    with warnings.catch_warnings():
        # Before 3.14, asking for a loop that is not there may make one, with a warning.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:  # set to None by asyncio.run(), or 3.14+
            loop = None
    if loop is None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def rest_event(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    query: dict[str, str] | None = None,
) -> Event:
    """An API Gateway REST API proxy event (payload 1.0), as for a ``{proxy+}`` resource."""
    headers = {"Host": API_HOST, "X-Forwarded-Proto": "https", **headers}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": (
            {name: [value] for name, value in query.items()} if query else None
        ),
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "x1y2z3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": "Ab1CdEfGhIjKlM=",
            "requestTime": "01/Jan/2025:12:00:00 +0000",
            "path": "/prod" + path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1735732800000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": None},
            "domainName": API_HOST,
            "apiId": "abc123",
        },
        "body": None if body is None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": body is not None,
    }


def http_api_event(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    query: dict[str, str] | None = None,
) -> Event:
    """An API Gateway HTTP API event (payload 2.0) for the ``$default`` route."""
    raw_query = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    event: Event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        # HTTP APIs lower-case header names and move Cookie to its own list.
        "cookies": ["session=s3cr3t", "theme=dark"],
        "headers": {
            "host": API_HOST,
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            **{name.lower(): value for name, value in headers.items()},
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": API_HOST,
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Pushpin",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2025:12:00:00 +0000",
            "timeEpoch": 1735732800000,
        },
        "isBase64Encoded": body is not None,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


EventBuilder = Callable[..., Event]
GATEWAYS = pytest.mark.parametrize("make_event", [rest_event, http_api_event], ids=["rest", "http"])


@dataclass
class LambdaReply:
    """A Lambda proxy result read back as an HTTP response (what API Gateway sends on)."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    base64_encoded: bool

    @classmethod
    def of(cls, result: dict[str, Any]) -> LambdaReply:
        repeated = result.get("multiValueHeaders") or {}  # REST APIs: repeated headers
        headers = {**result["headers"], **{k: ", ".join(v) for k, v in repeated.items()}}
        encoded = result["isBase64Encoded"]
        body = result["body"]
        content = base64.b64decode(body, validate=True) if encoded else body.encode("utf-8")
        return cls(result["statusCode"], headers, content, encoded)


def invoke(handler: Mangum, event: Event) -> LambdaReply:
    return LambdaReply.of(handler(event, LAMBDA_CONTEXT))


def websocket_event(
    make_event: EventBuilder,
    path: str,
    *events: WebSocketEvent,
    grip_sig: str | None = None,
    query: dict[str, str] | None = None,
) -> Event:
    """The event for a WebSocket-over-HTTP request; ``grip_sig`` replaces the proxy's."""
    request = proxy.websocket(*events, connection_id="conn-1")
    if grip_sig is not None:
        request.headers["Grip-Sig"] = grip_sig
    return make_event("POST", path, request.headers, request.content, query=query)


def expected_body(*events: WebSocketEvent) -> bytes:
    return encode_websocket_events(events)


@GATEWAYS
def test_websocket_open_is_accepted(handler: Mangum, make_event: EventBuilder) -> None:
    reply = invoke(handler, websocket_event(make_event, "/echo", open_event()))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/websocket-events"
    assert reply.headers["sec-websocket-extensions"] == "grip"
    # Not a text type for Mangum, so the bytes travel base64-encoded and come back intact.
    assert reply.base64_encoded
    assert reply.content == b"OPEN\r\n"
    assert reply.headers["content-length"] == str(len(reply.content))


@GATEWAYS
def test_websocket_messages_are_echoed_byte_for_byte(
    handler: Mangum, make_event: EventBuilder
) -> None:
    binary = bytes(range(256))  # not UTF-8: it must survive base64 both ways
    event = websocket_event(
        make_event, "/echo", text_event("héllo"), WebSocketEvent("BINARY", binary)
    )
    reply = invoke(handler, event)
    assert reply.status_code == 200 and reply.base64_encoded
    assert reply.headers["content-type"] == "application/websocket-events"
    assert reply.content == expected_body(
        WebSocketEvent("TEXT", "m:héllo".encode()), WebSocketEvent("BINARY", b"m:" + binary)
    )
    assert reply.headers["content-length"] == str(len(reply.content))


@GATEWAYS
def test_websocket_close_is_echoed(handler: Mangum, make_event: EventBuilder) -> None:
    reply = invoke(handler, websocket_event(make_event, "/echo", close_event(1001, "bye")))
    assert reply.status_code == 200 and reply.base64_encoded
    assert reply.content == expected_body(close_event(1001, "bye"))


@GATEWAYS
def test_chat_open_subscribes_to_the_room(handler: Mangum, make_event: EventBuilder) -> None:
    # The chat refuses an open without ?name=: the query string must come through Mangum.
    event = websocket_event(make_event, "/chat/lobby", open_event(), query={"name": "ann"})
    reply = read_websocket_reply(invoke(handler, event))
    assert reply.accepted and reply.grip_extension
    # A reliable WebSocket: the room's Pushpin channel is its reliable one.
    assert reply.subscriptions == ["reliable:lobby"]
    # The name from the query is the member's user (presence lists it on open).
    sent = [json.loads(message) for message in reply.messages]
    members = [message["members"] for message in sent if message.get("grip") == "members"]
    assert members == [[{"client": "conn-1", "user": "ann", "info": None}]]


@GATEWAYS
def test_stream_hold_headers_reach_the_proxy(handler: Mangum, make_event: EventBuilder) -> None:
    reply = invoke(handler, make_event("GET", "/stream/news", proxy.headers()))
    instruct = read_instruct(reply)
    assert instruct.hold == "stream"
    assert instruct.channel_names == ["news"]
    assert reply.content == b"[stream open]\n" and not reply.base64_encoded


@GATEWAYS
def test_long_poll_reads_the_query_string(handler: Mangum, make_event: EventBuilder) -> None:
    event = make_event("GET", "/poll/news", proxy.headers(), query={"timeout": "15"})
    instruct = read_instruct(invoke(handler, event))
    assert instruct.hold == "response" and instruct.timeout == 15
    assert instruct.channel_names == ["news"]


FORGED = {
    "unsigned": {},
    "wrong key": {"Grip-Sig": make_grip_sig("not-the-key")},
    "expired": {"Grip-Sig": make_grip_sig(KEY, expires_in=-60)},
    "wrong issuer": {"Grip-Sig": make_grip_sig(KEY, iss="someone")},
}


@GATEWAYS
@pytest.mark.parametrize("headers", FORGED.values(), ids=FORGED.keys())
def test_a_request_the_proxy_did_not_sign_is_not_proxied(
    handler: Mangum, make_event: EventBuilder, headers: dict[str, str]
) -> None:
    reply = invoke(handler, make_event("GET", "/stream/news", headers))
    assert reply.status_code == 501
    assert reply.content.decode() == NOT_PROXIED
    assert not any(name.startswith("grip-") for name in reply.headers)


def test_grip_sig_sent_twice_is_not_proxied(handler: Mangum) -> None:
    # A REST API joins repeated headers; two tokens are never one valid token.
    event = rest_event("GET", "/stream/news", {})
    event["multiValueHeaders"]["Grip-Sig"] = [make_grip_sig(KEY), make_grip_sig(KEY)]
    reply = invoke(handler, event)
    assert reply.status_code == 501


@GATEWAYS
def test_forged_websocket_request_gets_no_websocket_reply(
    handler: Mangum, make_event: EventBuilder
) -> None:
    forged = make_grip_sig("not-the-key")
    event = websocket_event(make_event, "/echo", open_event(), grip_sig=forged)
    reply = invoke(handler, event)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert b"Not a WebSocket-over-HTTP request" in reply.content
