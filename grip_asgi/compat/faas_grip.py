"""faas-grip's names, on grip-asgi: a Lambda handler written for faas-grip runs unchanged
once ``from faas_grip import ...`` reads ``from grip_asgi.compat.faas_grip import ...``.

The settings are faas-grip's environment variables, ``GRIP_URL``, ``GRIP_PROXIES`` (a JSON
list) and ``GRIP_PREFIX``, plus grip-asgi's ``GRIP_VERIFY_KEY``. What differs on purpose,
each checked against faas-grip 1.0.1 by ``tests/compat``:

- :func:`lambda_get_websocket` checks ``Grip-Sig`` as every grip-asgi adapter does: once a
  key is configured (``key`` or ``verify-key`` in ``GRIP_URL``, or ``GRIP_VERIFY_KEY``), an
  event the proxy did not sign raises ``ValueError``. faas-grip took any POST.
- ``ws.close()`` without a code sends 1000 (faas-grip sent the invalid code 0), and
  malformed bodies raise ``ValueError``.
- Events of API Gateway's HTTP APIs (payload 2.0) are read too.

For a new function, an ordinary ASGI app behind Mangum is the better shape
(``examples/lambda_handler.py``, and the port in ``docs/migrating.md``).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from typing import Any

from .._config import GripSettings
from .._context import GripProcessor, RequestHead
from .._errors import GripProtocolError
from .._publish import SyncPublisher
from .._websocket import meta_name
from .gripcontrol import (
    GripPubControl,
    PublishCallback,
    WebSocketContext,
    WebSocketEvent,
    encode_websocket_events,
)
from .pubcontrol import Item

__all__ = (
    "LambdaWebSocketContext",
    "get_pubcontrol",
    "lambda_get_websocket",
    "lambda_websocket_to_response",
    "publish",
)

_ENVIRONMENT = ("GRIP_URL", "GRIP_PROXIES", "GRIP_PREFIX", "GRIP_VERIFY_KEY")


class _FromEnvironment:
    """The processor and publisher for the current ``GRIP_*`` environment, remade (and the
    old publisher closed) when it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str | None, ...] | None = None
        self._processor: GripProcessor | None = None
        self._publisher: SyncPublisher | None = None

    def _check_environment(self) -> None:
        # Called with the lock held.
        key = tuple(os.environ.get(name) for name in _ENVIRONMENT)
        if key != self._key:
            if self._publisher is not None:
                self._publisher.close()
            self._key, self._processor, self._publisher = key, None, None

    def processor(self) -> GripProcessor:
        with self._lock:
            self._check_environment()
            if self._processor is None:
                self._processor = GripProcessor(GripSettings.from_env())
            return self._processor

    def publisher(self) -> SyncPublisher:
        with self._lock:
            self._check_environment()
            if self._publisher is None:
                self._publisher = SyncPublisher(GripSettings.from_env())
            return self._publisher


_environment = _FromEnvironment()
_pubcontrol = GripPubControl._over(_environment.publisher)


class LambdaWebSocketContext(WebSocketContext):
    """The :class:`~grip_asgi.compat.gripcontrol.WebSocketContext` of a Lambda event, whose
    :meth:`to_response` is the function's return value."""

    def to_response(self) -> dict[str, Any]:
        """The API Gateway proxy result carrying the reply events (base64-encoded)."""
        return lambda_websocket_to_response(self)


def lambda_websocket_to_response(wscontext: WebSocketContext) -> dict[str, Any]:
    """The API Gateway proxy result for ``wscontext``'s reply: status 200, the
    WebSocket-over-HTTP headers, and the events base64-encoded."""
    body = encode_websocket_events(wscontext.reply_events())
    return {
        "isBase64Encoded": True,
        "statusCode": 200,
        "headers": dict(wscontext.reply_headers()),
        "body": base64.b64encode(body).decode("ascii"),
    }


def lambda_get_websocket(event: Mapping[str, Any]) -> LambdaWebSocketContext:
    """The WebSocket context of an API Gateway event (REST API or HTTP API).

    Raises ``ValueError`` when the event is not a WebSocket-over-HTTP request from the GRIP
    proxy: another method or content type, a missing or invalid ``Grip-Sig`` (once a key is
    configured), no ``Connection-Id``, or a malformed or oversized body.
    """
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    method = event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get(
        "method"
    )
    grip_sig = headers.get("grip-sig")
    head = RequestHead(
        str(method),
        (grip_sig,) if grip_sig else (),
        headers.get("content-type"),
        headers.get("connection-id"),
        None,
        {meta_name(name[5:]): value for name, value in headers.items() if name[:5] == "meta-"},
    )
    if not head.is_websocket_events:
        raise ValueError("request does not seem to be a websocket-over-http request")
    processor = _environment.processor()
    try:
        ctx = processor.inspect(head)
        if not ctx.is_proxied:
            raise ValueError(
                "a WebSocket-over-HTTP request the GRIP proxy did not sign"
                f" ({ctx.sig_error or 'no Grip-Sig'})"
            )
        processor.wants_websocket_body(ctx, head)
        processor.attach_websocket(ctx, head, _body(event))
    except GripProtocolError as exc:
        raise ValueError(str(exc)) from exc
    ws = ctx.ws
    assert ws is not None
    in_events = [WebSocketEvent(e.type, e.content) for e in ws.in_events]
    return LambdaWebSocketContext(ws.id, ws.orig_meta, in_events, processor.settings.prefix)


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def get_pubcontrol() -> GripPubControl:
    """The process's publisher, for the ``GRIP_*`` environment variables."""
    return _pubcontrol


def publish(
    channel: str,
    formats: Any,
    id: str | None = None,
    prev_id: str | None = None,
    blocking: bool = True,
    callback: PublishCallback | None = None,
    meta: Mapping[str, str] | None = None,
) -> None:
    """Publish ``formats`` to ``channel`` (with ``GRIP_PREFIX``); blocking by default, as in
    faas-grip, and a failure raises ``ValueError``."""
    _pubcontrol.publish(
        channel, Item(formats, id=id, prev_id=prev_id, meta=meta), blocking, callback
    )
