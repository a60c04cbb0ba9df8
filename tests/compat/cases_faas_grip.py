"""faas-grip 1.0.1's behaviour, as cases run on faas-grip itself and on our two answers to it.

faas-grip ships no tests (and no documentation in its source distribution): the cases follow
its README, whose chat handler, ported by changing its imports, is
``tests/e2e/ported/faas_chat_compat.py``; they feed it API Gateway REST API events (payload
1.0, the only kind faas-grip reads). ``h.api.handler(event)`` is that file turned back into
the original on faas-grip, the file itself on ``grip_asgi.compat.faas_grip``, or, on our
Mangum path, the ASGI port in ``tests/e2e/ported/faas_chat.py``. faas-grip runs here with
gripcontrol 4.4.0: its own pin, gripcontrol < 4, cannot be installed next to a current PyJWT
(landscape D13), and the names it uses are the same in 4.x.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from struct import pack
from typing import Any

import jwt

from .harness import CaseRegistry, Harness, api, load_original, published_items, reply_events

KEY = "a-key-of-at-least-thirty-two-bytes"

CASES = CaseRegistry()
case = CASES


def environment(capture_url: str) -> dict[str, str]:
    return {"GRIP_URL": f"{capture_url}/?iss=app&key={KEY}", "GRIP_PREFIX": ""}


#: faas-grip's README chat, ported by changing its imports (the peer runs it turned back).
PORTED_HANDLER = Path(__file__).resolve().parents[1] / "e2e" / "ported" / "faas_chat_compat.py"


def prepare_peer(h: Harness) -> None:
    os.environ.update(environment(h.capture.url))
    original = load_original(PORTED_HANDLER)
    h.api = api(handler=lambda event: original.handler(event, None))


# --- Events in, results out -----------------------------------------------------------------


def rest_event(
    method: str, headers: dict[str, str], body: bytes | str | None, *, base64_body: bool = True
) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload 1.0), as for a ``{proxy+}`` resource."""
    headers = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", **headers}
    if isinstance(body, bytes) and base64_body:
        body = base64.b64encode(body).decode("ascii")
    elif isinstance(body, bytes):
        body = body.decode("utf-8")
    return {
        "resource": "/{proxy+}",
        "path": "/",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": "/prod/",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": None},
        },
        "body": body,
        "isBase64Encoded": body is not None and base64_body,
    }


def grip_sig() -> str:
    return jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 3600}, KEY)


def websocket_event(
    body: bytes,
    *,
    signed: bool = True,
    base64_body: bool = True,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_headers = {
        "Content-Type": "application/websocket-events",
        "Connection-Id": "conn-1",
        **({"Grip-Sig": grip_sig()} if signed else {}),
        **(headers or {}),
    }
    return rest_event("POST", all_headers, body, base64_body=base64_body)


def seen(result: dict[str, Any]) -> dict[str, Any]:
    """What API Gateway hands the proxy: status, the GRIP headers, and the body's events."""
    headers = {str(k).lower(): v for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name).lower()] = ", ".join(values)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    content_type = headers.get("content-type", "").split(";")[0]
    out: dict[str, Any] = {
        "status": result["statusCode"],
        "content_type": content_type,
        "grip": {
            name: value
            for name, value in sorted(headers.items())
            if name.startswith("set-meta-") or name == "sec-websocket-extensions"
        },
    }
    if content_type == "application/websocket-events":
        out["events"] = reply_events(raw)
    else:
        out["body"] = raw.decode()
    return out


def chat(h: Harness, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "reply": seen(h.api.handler(event)),
        "published": published_items(h.capture.take(), KEY),
    }


@case
def open_is_accepted_and_subscribed(h: Harness) -> object:
    return chat(h, websocket_event(b"OPEN\r\n"))


@case
def nick_sets_meta_and_answers(h: Harness) -> object:
    return chat(h, websocket_event(b"TEXT b\r\n/nick alice\r\n"))


@case
def message_is_published_with_the_nick(h: Harness) -> object:
    return chat(h, websocket_event(b"TEXT 5\r\nhello\r\n", headers={"Meta-Nick": "alice"}))


@case
def message_from_someone_without_a_nick(h: Harness) -> object:
    return chat(h, websocket_event(b"TEXT 2\r\nhi\r\n"))


@case
def several_messages_in_one_request(h: Harness) -> object:
    body = b"TEXT 1\r\na\r\nTEXT 9\r\n/nick bob\r\nTEXT 1\r\nb\r\n"
    return chat(h, websocket_event(body))


@case
def binary_message(h: Harness) -> object:
    return chat(h, websocket_event(b"BINARY 2\r\n\x00\xff\r\n"))


@case
def ping_is_answered(h: Harness) -> object:
    return chat(h, websocket_event(b"PING 4\r\nping\r\n"))


@case
def body_not_base64_encoded(h: Harness) -> object:
    return chat(h, websocket_event(b"TEXT 2\r\nhi\r\n", base64_body=False))


@case
def client_close(h: Harness) -> object:
    return chat(h, websocket_event(b"CLOSE 2\r\n" + pack(">H", 1000) + b"\r\n"))


@case
def not_a_websocket_request(h: Harness) -> object:
    return chat(h, rest_event("GET", {"Grip-Sig": grip_sig()}, None))


@case
def wrong_content_type(h: Harness) -> object:
    return chat(h, websocket_event(b"OPEN\r\n", headers={"Content-Type": "text/plain"}))


@case
def request_the_proxy_did_not_sign(h: Harness) -> object:
    return chat(h, websocket_event(b"OPEN\r\n", signed=False))


@case
def truncated_body(h: Harness) -> object:
    return chat(h, websocket_event(b"TEXT 5\r\nhi"))
