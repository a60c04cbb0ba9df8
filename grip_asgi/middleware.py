"""GripMiddleware: GRIP for any ASGI app (Starlette, FastAPI, Litestar, Quart, ...).

Pure ASGI: it imports no framework, keeps per-request state in locals, adds ``Grip-*``
headers at ``http.response.start`` and never buffers a streamed body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import Any

from . import metrics as _metrics
from ._config import GripConfig, GripSettings, Key
from ._context import (
    PROXY_REQUIRED_MESSAGE,
    GripContext,
    GripLimits,
    GripProcessor,
    RequestHead,
    body_too_large,
    close_after_handler_error,
    meta_name,
    parse_content_length,
    websocket_reply_replaces,
)
from ._errors import GripProtocolError, InstructNotAvailableError
from ._publish import Publisher

__all__ = ("GripMiddleware", "get_grip_context", "get_publisher")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# What the middleware wraps and stands in for: any framework's ASGI app. The arguments are
# Any because frameworks type them in ways that do not convert to one another (Starlette:
# MutableMapping; Litestar, Quart: TypedDicts), and a type checker should accept any of them.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

logger = logging.getLogger("grip_asgi.middleware")

# The app's headers that describe its own body, not the events that replace it.
# The events reply is plain bytes: an encoding or length of the app's own body would lie.
_STRIPPED_FROM_WS_REPLY = {b"content-type", b"content-length", b"content-encoding", b"trailer"}
# What follows http.response.start in an ASGI response, extensions included.
_RESPONSE_PARTS = {
    "http.response.body",
    "http.response.zerocopysend",
    "http.response.pathsend",
    "http.response.trailers",
}


class GripMiddleware:
    """Detects requests from a GRIP proxy and turns handler output into GRIP responses.

    Add it with ``app.add_middleware(GripMiddleware, grip="http://127.0.0.1:5561/?verify-iss=
    pushpin&verify-key=changeme")``. Handlers then find a :class:`GripContext` at
    ``request.state.grip`` (or ``get_grip_context(scope)`` in any ASGI framework) and a
    :class:`Publisher` for the same proxies through :func:`get_publisher`.

    A native ``websocket`` scope is not a GRIP request (only a proxy speaking
    WebSocket-over-HTTP gives ``grip.ws``), but its handshake's ``Grip-Sig`` is checked the
    same way: Pushpin signs the WebSockets it proxies natively, so ``grip.is_signed`` tells
    them from direct clients, to refuse before accepting. Nothing else applies to it (no
    instruct: ``start_instruct()`` raises; no rewrite), except that ``proxy_only`` closes an
    unproxied handshake, which the client sees as a 403.

    Args:
        grip: a GRIP URL, a :class:`GripConfig`, a list of either, or a :class:`GripSettings`.
            None reads ``GRIP_URL`` / ``GRIP_PROXIES``, ``GRIP_VERIFY_KEY``, ``GRIP_PREFIX`` and
            ``GRIP_PROXY_REQUIRED`` from the environment.
        verify_key: key that verifies ``Grip-Sig`` for proxies whose config has none, and on
            its own when there is no proxy. Once any key is configured, from here, a proxy's
            config or the environment, a request counts as proxied only when it verifies.
        prefix: channel prefix for subscribe and publish (default: from ``grip`` / env, or "").
        proxy_required: answer 501 instead of failing when a handler starts GRIP instructions
            for a request that did not come through the proxy (django-grip's
            ``GRIP_PROXY_REQUIRED``); other direct requests, such as health checks, pass.
        proxy_only: answer 501 to every request that did not come through the proxy.
        history_url: where reliable channels keep their history, for ``publish_reliable``
            and the recoverable endpoints (``sqlite:///...``, ``redis://...``, ``memory:``);
            default ``GRIP_HISTORY_URL``, else a SQLite file in the working directory.
        link_key: the secret that signs the next links of recoverable streams (default
            ``GRIP_LINK_KEY``, else derived from the verify key). Give every worker the same.
        max_body_size: largest WebSocket-over-HTTP body accepted, in bytes (larger gets 413).
        limits: every request limit at once (see :class:`GripLimits`); overrides max_body_size.
        publisher: the :class:`Publisher` handlers get (for example a
            ``grip_asgi.testing.RecordingPublisher`` in tests). You then close it yourself;
            by default the middleware makes one for ``grip`` and closes it with the lifespan.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        grip: str | GripConfig | Iterable[str | GripConfig] | GripSettings | None = None,
        verify_key: Key | None = None,
        prefix: str | None = None,
        proxy_required: bool | None = None,
        proxy_only: bool | None = None,
        history_url: str | None = None,
        link_key: Key | None = None,
        max_body_size: int | None = None,
        limits: GripLimits | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.app = app
        if isinstance(grip, GripSettings):
            base = grip
        elif grip is None:
            base = GripSettings.from_env()
        else:
            base = GripSettings.build(grip)
        settings = GripSettings.build(
            base.proxies,
            verify_key=base.verify_key if verify_key is None else verify_key,
            prefix=base.prefix if prefix is None else prefix,
            proxy_required=base.proxy_required if proxy_required is None else proxy_required,
            proxy_only=base.proxy_only if proxy_only is None else proxy_only,
            history_url=base.history_url if history_url is None else history_url,
            link_key=base.link_key if link_key is None else link_key,
        )
        if limits is None:
            limits = GripLimits() if max_body_size is None else GripLimits(max_body_size)
        self.processor = GripProcessor(settings, limits=limits)
        # Read on every request: one attribute lookup instead of two.
        self._unproxied = self.processor.unproxied
        self._proxy_required = settings.proxy_required
        self._proxy_only = settings.proxy_only
        #: Publishes to the same proxies with the same prefix; closed with the app's lifespan.
        self.publisher = Publisher(settings) if publisher is None else publisher
        self._owns_publisher = publisher is None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # see ASGIApp
        if scope["type"] == "http":
            for name, _ in scope["headers"]:
                if name == b"grip-sig":
                    await self._call_proxied(scope, receive, send)
                    return
            # The common case: no proxy involved, so nothing to verify or rewrite.
            state = scope.setdefault("state", {})
            state["grip"] = self._unproxied
            state["grip_publisher"] = self.publisher
            if _metrics._recorder is not None:
                _metrics._recorder.request(self._unproxied, refused=self._proxy_only)
            if self._proxy_only:
                await _send_plain(send, 501, PROXY_REQUIRED_MESSAGE)
                return
            if self._proxy_required:
                await _call_requiring_proxy(self.app, scope, receive, send)
                return
        elif scope["type"] == "websocket":
            await self._call_native_websocket(scope, receive, send)
            return
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _call_proxied(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request with ``Grip-Sig``: verify it, then rewrite the app's reply."""
        processor = self.processor
        head = _read_head(scope)
        state = scope.setdefault("state", {})
        state["grip"] = self._unproxied  # until the proxy's headers pass inspection
        state["grip_publisher"] = self.publisher
        try:
            ctx = processor.inspect(head)
            state["grip"] = ctx
            if self._proxy_only and not ctx.is_proxied:
                if _metrics._recorder is not None:
                    _metrics._recorder.request(ctx, refused=True)
                await _send_plain(send, 501, PROXY_REQUIRED_MESSAGE)
                return
            body = None
            if processor.wants_websocket_body(ctx, head):
                body = await _read_body(receive, processor.limits.max_body_size)
                if body is None:  # the client went away
                    return
                processor.attach_websocket(ctx, head, body)
        except GripProtocolError as exc:
            logger.debug("grip: rejecting request: %s", exc)
            if _metrics._recorder is not None:
                _metrics._recorder.rejected(exc)
            await _send_plain(send, exc.status_hint, str(exc))
            return
        if _metrics._recorder is not None:
            _metrics._recorder.request(ctx)
        if body is not None:
            await self._call_websocket(scope, _replay(body, receive), send, ctx)
        elif ctx.is_proxied:
            await self.app(scope, receive, _instruct_send(processor, ctx, send))
        elif self._proxy_required:
            await _call_requiring_proxy(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _call_websocket(
        self, scope: Scope, receive: Receive, send: Send, ctx: GripContext
    ) -> None:
        reply = _WebSocketReply(ctx, send)
        try:
            await self.app(scope, receive, reply.send)
            await reply.finish()  # a start without a body
        except GripProtocolError as exc:
            # A bad client message the handler found in ws.recv() (a TEXT that is not
            # UTF-8) is the client's fault: 4xx, as for a malformed body.
            if reply.started:
                raise
            logger.debug("grip: rejecting request: %s", exc)
            await _send_plain(send, exc.status_hint, str(exc))
        except Exception:
            # Close the client cleanly (1011), then let the error reach the server's own
            # handling and logs as usual.
            if not reply.started and close_after_handler_error(ctx):
                await reply.send({"type": "http.response.start", "status": 200})
                await reply.send({"type": "http.response.body", "body": b""})
            raise

    async def _call_native_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same ``Grip-Sig`` view as HTTP; nothing else to do (see the class docstring)."""
        state = scope.setdefault("state", {})
        state["grip"] = ctx = self._unproxied
        state["grip_publisher"] = self.publisher
        if any(name == b"grip-sig" for name, _ in scope["headers"]):
            try:
                # The handshake is a GET, though a websocket scope names no method.
                state["grip"] = ctx = self.processor.inspect(_read_head({**scope, "method": "GET"}))
            except GripProtocolError as exc:
                logger.debug("grip: rejecting WebSocket: %s", exc)
                # Closed before it is accepted, the handshake gets a 403 from the server.
                await send({"type": "websocket.close", "code": 1008})
                return
            if ctx.is_proxied:
                ctx._refuse_instruct = _NO_NATIVE_INSTRUCT
        if self._proxy_only and not ctx.is_proxied:
            await send({"type": "websocket.close", "code": 1008})  # the handshake gets 403
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if self._owns_publisher and message["type"] in (
                "lifespan.shutdown.complete",
                "lifespan.shutdown.failed",
            ):
                # Close the pool, and leave a fresh publisher for an app that starts again
                # (a test client's next lifespan); its client is made on first use.
                publisher, self.publisher = self.publisher, Publisher(self.processor.settings)
                await publisher.aclose()
            await send(message)

        await self.app(scope, receive, send_wrapper)


def get_grip_context(request_or_scope: Any) -> GripContext:
    """The :class:`GripContext` of a request, from a Starlette request or a raw ASGI scope."""
    scope = getattr(request_or_scope, "scope", request_or_scope)
    try:
        ctx = scope["state"]["grip"]
    except (KeyError, TypeError):
        raise RuntimeError("GripMiddleware must be installed to use GRIP") from None
    assert isinstance(ctx, GripContext)
    return ctx


def get_publisher(request_or_scope: Any) -> Publisher:
    """The middleware's :class:`Publisher`, from a Starlette request or a raw ASGI scope."""
    scope = getattr(request_or_scope, "scope", request_or_scope)
    try:
        publisher = scope["state"]["grip_publisher"]
    except (KeyError, TypeError):
        raise RuntimeError("GripMiddleware must be installed to use GRIP") from None
    assert isinstance(publisher, Publisher)
    return publisher


async def _call_requiring_proxy(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Call the app for a direct request, answering 501 if it starts GRIP instructions."""
    started = False

    def tracking_send(message: Message) -> Awaitable[None]:
        nonlocal started
        started = True
        return send(message)

    try:
        await app(scope, receive, tracking_send)
    except InstructNotAvailableError:
        if started:
            raise
        logger.debug("grip: 501: a handler gave GRIP instructions to a direct request")
        await _send_plain(send, 501, PROXY_REQUIRED_MESSAGE)


def _read_head(scope: Scope) -> RequestHead:
    grip_sig: list[str] = []
    grip_last: list[str] = []
    grip_feature: list[str] = []
    content_type = connection_id = None
    content_length = None
    headers = scope["headers"]
    for raw_name, raw_value in headers:
        # Only GRIP's own headers are decoded; the others cost one set lookup.
        if raw_name in _HEAD_NAMES:
            # Pushpin writes GRIP header values (meta, channel names) as UTF-8.
            value = raw_value.decode("utf-8", "replace")
            if raw_name == b"grip-sig":
                # A JWT has no comma: a comma-joined header is several tokens, as Django sees it.
                grip_sig.extend(value.split(","))
            elif raw_name == b"grip-feature":
                grip_feature.append(value)
            elif raw_name == b"content-type":
                content_type = value
            elif raw_name == b"grip-last":
                grip_last.append(value)
            elif raw_name == b"connection-id":
                connection_id = value
            else:
                content_length = parse_content_length(value)
    head = RequestHead(
        scope["method"],
        grip_sig,
        content_type,
        connection_id,
        content_length,
        {},  # Meta-*: read below, where it matters
        grip_last,
        grip_feature,
    )
    if head.is_websocket_events:  # Meta-* is only read on these
        head.meta = {
            meta_name(name[5:].decode("latin-1")): value.decode("utf-8", "replace")
            for name, value in headers
            if name.startswith(b"meta-")
        }
    return head


_HEAD_NAMES = frozenset(
    (b"grip-sig", b"content-type", b"connection-id", b"content-length", b"grip-last")
    + (b"grip-feature",)
)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None if the client disconnected; 413 past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then defers to the server."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_NO_NATIVE_INSTRUCT = partial(
    InstructNotAvailableError,
    "a native WebSocket takes no GRIP instruct: its GRIP is the c:/m: messages the app sends"
    " once it negotiated Sec-WebSocket-Extensions: grip",
)


def _instruct_send(processor: GripProcessor, ctx: GripContext, send: Send) -> Send:
    # A plain function that hands back send's own awaitable: most messages pass through
    # without a coroutine of ours around them.
    def instruct_send(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            plan = processor.instruct_response(ctx, message["status"])
            if plan is not None:
                headers = list(message.get("headers", ()))
                if plan.drop_content_length:
                    headers = [h for h in headers if h[0].lower() != b"content-length"]
                headers.extend(_encode_headers(plan.headers))
                message = {**message, "status": plan.status, "headers": headers}
        return send(message)

    return instruct_send


class _WebSocketReply:
    """Swaps a 2xx reply for the WebSocket events the handler queued (Content-Length fixed).

    The server gets one valid response, start then body, whatever form the app's takes:

    - its body, sent as ``http.response.body`` or ``zerocopysend`` messages, is dropped, and
      the events go out when it ends (``more_body`` false);
    - a ``pathsend`` is a whole body: the events go out in its place, never both, as the
      proxy reads one body and it must be the events;
    - its trailers are dropped, with its ``Trailer`` header: the events reply announces none;
    - a start with no body at all still gets the events sent when the app returns
      (:meth:`finish`), so the handler's events are never lost.
    """

    def __init__(self, ctx: GripContext, send: Send) -> None:
        self.ctx = ctx
        self._send = send
        self._held_start: Message | None = None
        #: The events reply went out in place of the app's response.
        self._replaced = False
        #: Something reached the server already, so an error can no longer become a 4xx.
        self.started = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" and websocket_reply_replaces(self.ctx, message["status"]):
            self._held_start = message
            return
        if kind in _RESPONSE_PARTS and (self._held_start is not None or self._replaced):
            # Part of the app's response, which the events replace. Only a body message
            # with more_body says more is coming: anything else ends the app's body.
            if not message.get("more_body", False):
                await self.finish()
            return
        self.started = True
        await self._send(message)

    async def finish(self) -> None:
        """Send the events reply, if the app's start is held still (its body has ended)."""
        start = self._held_start
        if start is None:
            return
        assert self.ctx.ws is not None
        status, ws_headers, body = self.ctx.ws.to_response()
        headers = [
            (k, v) for k, v in start.get("headers", ()) if k.lower() not in _STRIPPED_FROM_WS_REPLY
        ]
        headers.extend(_encode_headers(ws_headers))
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        self._held_start = None
        self._replaced = self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # ASGI wants lower-case names; Pushpin reads GRIP header values as UTF-8.
    return [(name.lower().encode("latin-1"), value.encode()) for name, value in headers]


async def _send_plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
