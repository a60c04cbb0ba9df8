"""grip-asgi under other runtimes and frameworks: AWS Lambda (Mangum), Litestar, Quart.

The helpers drive an ASGI app with raw messages, as a server would: test clients buffer the
whole response, so only this shows that a streamed body leaves chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from grip_asgi.middleware import ASGIApp, Message, Scope


def http_scope(method: str, path: str, headers: dict[str, str]) -> Scope:
    """The scope of an HTTP/1.1 request from the proxy."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call_app(
    app: ASGIApp,
    scope: Scope,
    body: bytes = b"",
    *,
    on_send: Callable[[Message], Any] = lambda message: None,
) -> list[Message]:
    """Run ``app`` for one request with ``body``; return what it sent, in order.

    ``on_send`` sees each message as it is sent. After the response's last body message the
    client disconnects, as a server reports it.
    """
    sent: list[Message] = []
    requested = False
    finished = anyio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        on_send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


def start_headers(sent: list[Message]) -> dict[str, str]:
    """The headers of the ``http.response.start`` message, decoded, by lower-case name."""
    start = next(message for message in sent if message["type"] == "http.response.start")
    return {name.decode("latin-1").lower(): value.decode() for name, value in start["headers"]}


def body_messages(sent: list[Message]) -> list[tuple[bytes, bool]]:
    """Each ``http.response.body`` message as ``(body, more_body)``."""
    return [
        (message.get("body", b""), message.get("more_body", False))
        for message in sent
        if message["type"] == "http.response.body"
    ]
