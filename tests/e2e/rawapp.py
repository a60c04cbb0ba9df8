"""A GRIP backend written by hand in raw ASGI, with no grip_asgi code.

It proves the e2e harness and the Pushpin config on their own, so a failure in the library's
own e2e tests points at the library.

- ``GET /health``: 200 ``ok``.
- ``GET /stream/{channel}``: a stream hold on ``channel`` (``Grip-Hold: stream``), body ``[open]``.
- ``GET /sig``: the ``Grip-Sig`` header the request arrived with (empty if none).
- ``POST /ws``: WebSocket-over-HTTP echo. A TEXT message ``subscribe:{channel}`` subscribes
  the connection to ``channel`` instead of being echoed.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]

WS_EVENTS = b"application/websocket-events"


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "http"
    method, path = scope["method"], scope["path"]
    headers = dict(scope["headers"])
    if method == "GET" and path == "/health":
        await respond(send, 200, [], b"ok\n")
    elif method == "GET" and path.startswith("/stream/"):
        channel = path.removeprefix("/stream/").encode()
        hold = [(b"grip-hold", b"stream"), (b"grip-channel", channel)]
        await respond(send, 200, hold, b"[open]\n")
    elif method == "GET" and path == "/sig":
        await respond(send, 200, [], headers.get(b"grip-sig", b""))
    elif method == "POST" and path == "/ws" and headers.get(b"content-type") == WS_EVENTS:
        events = decode_events(await read_body(receive))
        reply = b"".join(encode_event(*answer(name, content)) for name, content in events)
        extension = (b"sec-websocket-extensions", b'grip; message-prefix=""')
        await respond(send, 200, [(b"content-type", WS_EVENTS), extension], reply)
    else:
        await respond(send, 404, [], b"not found\n")


def answer(name: str, content: bytes | None) -> tuple[str, bytes | None]:
    """The reply to one WebSocket event: mostly an echo."""
    if name == "TEXT" and content is not None and content.startswith(b"subscribe:"):
        channel = content.removeprefix(b"subscribe:").decode()
        control = {"type": "subscribe", "channel": channel}
        return "TEXT", b"c:" + json.dumps(control).encode()
    if name == "PING":
        return "PONG", content
    return name, content


def decode_events(body: bytes) -> list[tuple[str, bytes | None]]:
    """Parse ``NAME[ HEXSIZE]\\r\\n[CONTENT\\r\\n]`` events."""
    events: list[tuple[str, bytes | None]] = []
    while body:
        line, _, body = body.partition(b"\r\n")
        name, _, size = line.partition(b" ")
        content = None
        if size:
            length = int(size, 16)
            content, body = body[:length], body[length + 2 :]
        events.append((name.decode(), content))
    return events


def encode_event(name: str, content: bytes | None) -> bytes:
    if content is None:
        return name.encode() + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (name.encode(), len(content), content)


async def read_body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if not any(name == b"content-type" for name, _ in headers):
        headers = [*headers, (b"content-type", b"text/plain")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
