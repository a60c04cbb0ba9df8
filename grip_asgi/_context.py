"""The per-request GRIP context, and the sans-IO request/response logic both adapters share.

An adapter (the ASGI middleware, the Django middleware) does only I/O and translation:

1. it collects the GRIP-relevant request headers into a :class:`RequestHead`;
2. :meth:`GripProcessor.inspect` verifies ``Grip-Sig`` and returns a :class:`GripContext`;
3. for a WebSocket-over-HTTP request it reads the body (within ``limits.max_body_size``) and
   calls :meth:`GripProcessor.attach_websocket`;
4. after the app answered, :meth:`GripProcessor.instruct_response` gives the status and the
   ``Grip-*`` headers to add, or ``ctx.ws.to_response()`` gives the whole WebSocket reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import NamedTuple

from ._config import GripSettings
from ._errors import (
    ConnectionIdMissingError,
    GripInstructError,
    InstructAlreadyStartedError,
    InstructNotAvailableError,
    InstructTooLateError,
    RequestHeaderTooLargeError,
    RequestTooLargeError,
)
from ._instruct import GripInstruct, parse_grip_feature, parse_grip_last
from ._signature import ProxyVerifier
from ._websocket import (
    WEBSOCKET_EVENTS_CONTENT_TYPE,
    WebSocketContext,
    decode_websocket_events,
    meta_name,
)
from .pushpin_check import weak_verify_keys

__all__ = (
    "PROXY_REQUIRED_MESSAGE",
    "GripContext",
    "GripLimits",
    "GripProcessor",
    "InstructPlan",
    "RequestHead",
    "body_too_large",
    "close_after_handler_error",
    "meta_name",
    "parse_content_length",
    "websocket_reply_replaces",
)

logger = logging.getLogger("grip_asgi.context")

#: The body of the 501 both adapters send when a proxy is required and the request is direct.
PROXY_REQUIRED_MESSAGE = "Not Implemented: this endpoint needs a GRIP proxy"
_NO_LAST: Mapping[str, str] = MappingProxyType({})
_NO_META: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class GripLimits:
    """Bounds on what a proxied request may make the app hold in memory.

    The defaults sit above anything Pushpin sends (it batches about 200,000 content bytes
    into one WebSocket-over-HTTP request) and far below what would hurt a worker.
    """

    #: Largest WebSocket-over-HTTP request body, in bytes (larger gets 413).
    max_body_size: int = 1_048_576
    #: Most events in one WebSocket-over-HTTP request (more gets 400).
    max_events: int = 20_000
    #: Largest single event content, in bytes (larger gets 400).
    max_event_size: int = 1_048_576
    #: Largest value of a GRIP request header (Grip-Last, Grip-Feature, Connection-Id,
    #: each Meta-*), in characters (larger gets 431). Servers bound headers too.
    max_header_size: int = 16_384
    #: Most ``Meta-*`` headers on one request (more gets 431).
    max_meta_headers: int = 100

    def __post_init__(self) -> None:
        for name in (
            "max_body_size",
            "max_events",
            "max_event_size",
            "max_header_size",
            "max_meta_headers",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


class RequestHead:
    """The parts of a request that GRIP looks at, as an adapter read them. Values are as
    received; ``method`` and ``content_type`` are given once, at construction."""

    __slots__ = (
        "connection_id",
        "content_length",
        "content_type",
        "grip_feature",
        "grip_last",
        "grip_sig",
        "is_websocket_events",
        "meta",
        "method",
    )

    # Positional or keyword: the ASGI adapter passes them positionally, as a class call with
    # keywords packs them into a dict first (a third of a microsecond per request).
    def __init__(
        self,
        method: str,
        grip_sig: Sequence[str] = (),
        content_type: str | None = None,
        connection_id: str | None = None,
        content_length: int | None = None,
        meta: Mapping[str, str] = _NO_META,
        grip_last: Sequence[str] = (),
        grip_feature: Sequence[str] = (),
    ) -> None:
        self.method = method
        #: Every ``Grip-Sig`` value (Pushpin sends one).
        self.grip_sig = grip_sig
        self.content_type = content_type
        self.connection_id = connection_id
        self.content_length = content_length
        #: ``Meta-*`` headers, by lower-case name without the ``meta-`` prefix.
        self.meta = meta
        self.grip_last = grip_last
        self.grip_feature = grip_feature
        #: A POST whose media type is ``application/websocket-events`` (parameters ignored).
        self.is_websocket_events = (
            method == "POST"
            and content_type is not None
            and content_type.split(";", 1)[0].strip().lower() == WEBSOCKET_EVENTS_CONTENT_TYPE
        )

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} websocket_events={self.is_websocket_events}>"


class GripContext:
    """What GRIP knows about one request, and the instructions for its response.

    Starlette and FastAPI expose it as ``request.state.grip``; Django as ``request.grip``.
    """

    __slots__ = (
        "_features",
        "_instruct",
        "_last",
        "_raw_features",
        "_raw_last",
        "_refuse_instruct",
        "is_proxied",
        "is_signed",
        "needs_signed",
        "prefix",
        "sig_error",
        "ws",
    )

    # Made by GripProcessor, positionally for speed (see RequestHead).
    def __init__(
        self,
        is_proxied: bool = False,
        is_signed: bool = False,
        needs_signed: bool = False,
        sig_error: str | None = None,
        prefix: str = "",
        grip_last: Sequence[str] = (),
        grip_feature: Sequence[str] = (),
    ) -> None:
        #: The request came through a GRIP proxy (verified when keys are configured).
        self.is_proxied = is_proxied
        #: ``Grip-Sig`` verified against a configured key.
        self.is_signed = is_signed
        #: Keys are configured, so only signed requests count as proxied.
        self.needs_signed = needs_signed
        #: Why ``Grip-Sig`` was not accepted ("expired", "bad signature", ...), or None.
        self.sig_error = sig_error
        #: The channel prefix applied to every channel this request subscribes to.
        self.prefix = prefix
        #: The WebSocket-over-HTTP context, or None when this is not such a request.
        self.ws: WebSocketContext | None = None
        self._instruct: GripInstruct | None = None
        # Set once nothing will read an instruct any more (the response has started, say):
        # start_instruct() then raises what this makes rather than be lost.
        self._refuse_instruct: Callable[[], GripInstructError] | None = None
        # Pushpin sends Grip-Feature on every request, and few handlers read it: parse on use.
        self._raw_last = grip_last
        self._raw_features = grip_feature
        self._last: Mapping[str, str] | None = None
        self._features: frozenset[str] | None = None

    @property
    def last(self) -> Mapping[str, str]:
        """``Grip-Last``: the last id the proxy saw, by channel (retries and next links)."""
        if self._last is None:
            raw = self._raw_last
            self._last = MappingProxyType(parse_grip_last(raw)) if raw else _NO_LAST
        return self._last

    @property
    def features(self) -> frozenset[str]:
        """``Grip-Feature``: what the proxy supports, e.g. ``"link:next"``."""
        if self._features is None:
            raw = self._raw_features
            self._features = parse_grip_feature(raw) if raw else frozenset()
        return self._features

    @property
    def instruct(self) -> GripInstruct | None:
        """The instruct started for this request, if any."""
        return self._instruct

    def start_instruct(self) -> GripInstruct:
        """Start the GRIP instructions for this response (hold, channels, keep-alive, ...).

        Call it before the handler returns. Raises :class:`InstructNotAvailableError` when
        the request did not come through a GRIP proxy,
        :class:`InstructAlreadyStartedError` when called twice, and
        :class:`InstructTooLateError` once the response has started (from a streaming body
        or a background task), when the proxy could no longer see it.
        """
        if not self.is_proxied:
            raise InstructNotAvailableError(
                "this request did not come through a GRIP proxy; check grip.is_proxied first"
                + (f" (Grip-Sig rejected: {self.sig_error})" if self.sig_error else "")
            )
        if self._instruct is not None:
            raise InstructAlreadyStartedError("start_instruct() was already called")
        if self._refuse_instruct is not None:
            raise self._refuse_instruct()
        self._instruct = GripInstruct()
        return self._instruct

    # django-grip's names, so ported views keep working.
    @property
    def proxied(self) -> bool:
        """django-grip's name for :attr:`is_proxied`."""
        return self.is_proxied

    @property
    def signed(self) -> bool:
        """django-grip's name for :attr:`is_signed`."""
        return self.is_signed

    def __repr__(self) -> str:
        return (
            f"<GripContext proxied={self.is_proxied} signed={self.is_signed}"
            f" ws={self.ws is not None} instruct={self._instruct is not None}>"
        )


class _SharedDirectContext(GripContext):
    """The one context every request without ``Grip-Sig`` shares: read-only, so that no
    handler's change can leak into another request (and sharing it costs nothing)."""

    __slots__ = ("_sealed",)

    def __init__(self, needs_signed: bool, prefix: str) -> None:
        super().__init__(needs_signed=needs_signed, prefix=prefix)
        self._last = _NO_LAST
        self._features = frozenset()
        self._sealed = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_sealed", False):
            raise AttributeError(
                f"cannot set {name!r}: the GripContext of a direct request is shared and read-only"
            )
        super().__setattr__(name, value)


class GripProcessor:
    """The GRIP request/response rules, configured once per app and shared by every request."""

    def __init__(
        self,
        settings: GripSettings,
        *,
        limits: GripLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.limits = limits or GripLimits()
        self._clock = clock
        self._verifier = verifier = ProxyVerifier(settings.proxies, verify_key=settings.verify_key)
        #: A key is configured, so only a verified ``Grip-Sig`` makes a request proxied.
        self.needs_signed = verifier.any_has_key
        #: Shared by every request without ``Grip-Sig``, and read-only.
        self.unproxied: GripContext = _SharedDirectContext(self.needs_signed, settings.prefix)
        if not self.needs_signed:
            logger.warning(
                "grip: no Grip-Sig verify key is configured, so any client can pose as the "
                "proxy by sending a Grip-Sig header; set verify-key in GRIP_URL"
            )
        elif verifier.unverifiable:
            logger.warning(
                "grip: no Grip-Sig verify key for %s while other keys are configured, so no "
                "request through it counts as proxied; give it a verify-key",
                ", ".join(verifier.unverifiable),
            )
        if weak_keys := weak_verify_keys(settings):
            logger.warning(
                "grip: %s, so anyone who knows or guesses it can sign Grip-Sig as the proxy; "
                "set Pushpin's sig_key to a random secret of 16 bytes or more, and verify-key "
                "in GRIP_URL to the same",
                "; ".join(weak_keys),
            )

    def inspect(self, head: RequestHead) -> GripContext:
        """Decide whether the request is proxied and signed, and parse the proxy's headers."""
        grip_sig = head.grip_sig
        if not grip_sig:
            return self.unproxied
        if len(grip_sig) > 1:
            # Pushpin sends exactly one; several mean someone else added some.
            return self._not_proxied("several Grip-Sig headers")
        # Fail closed: once any key is configured, only a verified token counts.
        is_signed = self.needs_signed
        if is_signed:
            check = self._verifier.verify(grip_sig[0], self._clock())
            if check.reason is not None:
                return self._not_proxied(check.reason.value)
            logger.debug("grip: Grip-Sig accepted (signed)")
        else:
            logger.debug("grip: Grip-Sig accepted unverified: no key configured")
        self._check_header_sizes(head)
        # Only a proxied request's Grip-Last / Grip-Feature are the proxy's (it strips
        # client-sent Grip-* headers); from anyone else they would be forged.
        return GripContext(
            True,  # is_proxied
            is_signed,
            is_signed,  # needs_signed
            None,  # sig_error
            self.settings.prefix,
            head.grip_last,
            head.grip_feature,
        )

    def _check_header_sizes(self, head: RequestHead) -> None:
        # Only a proxied request's GRIP headers are parsed and kept, so only theirs are bounded.
        limits = self.limits
        values = [*head.grip_last, *head.grip_feature]
        if head.connection_id is not None:
            values.append(head.connection_id)
        # Meta-* only means something (and is only read) on WebSocket-over-HTTP requests.
        if head.is_websocket_events:
            if len(head.meta) > limits.max_meta_headers:
                raise RequestHeaderTooLargeError(
                    f"{len(head.meta)} Meta-* headers, over the limit of {limits.max_meta_headers}"
                )
            values.extend(head.meta.values())
        if values and max(map(len, values)) > limits.max_header_size:
            raise RequestHeaderTooLargeError(
                f"a GRIP request header is over the {limits.max_header_size}-character limit"
            )

    def _not_proxied(self, reason: str | None) -> GripContext:
        logger.debug("grip: Grip-Sig not accepted: %s", reason)
        return GripContext(
            needs_signed=self.needs_signed, sig_error=reason, prefix=self.settings.prefix
        )

    def wants_websocket_body(self, ctx: GripContext, head: RequestHead) -> bool:
        """True when the adapter must read the body and call :meth:`attach_websocket`.

        Raises the 4xx errors that need no body: a missing ``Connection-Id`` (400) and a
        declared ``Content-Length`` over the limit (413).
        """
        if not ctx.is_proxied or not head.is_websocket_events:
            return False
        if not head.connection_id:
            raise ConnectionIdMissingError(
                "WebSocket-over-HTTP request has no Connection-Id header"
            )
        if head.content_length is not None and head.content_length > self.limits.max_body_size:
            raise RequestTooLargeError(
                f"WebSocket-over-HTTP body of {head.content_length} bytes is over the"
                f" {self.limits.max_body_size}-byte limit"
            )
        return True

    def attach_websocket(self, ctx: GripContext, head: RequestHead, body: bytes) -> None:
        """Decode a WebSocket-over-HTTP body into ``ctx.ws``. Raises a 4xx GripProtocolError."""
        if len(body) > self.limits.max_body_size:
            raise body_too_large(self.limits.max_body_size)
        events = decode_websocket_events(
            body, max_events=self.limits.max_events, max_event_size=self.limits.max_event_size
        )
        assert head.connection_id is not None  # checked by wants_websocket_body
        ctx.ws = WebSocketContext(head.connection_id, head.meta, events, self.settings.prefix)

    def instruct_response(self, ctx: GripContext, status: int) -> InstructPlan | None:
        """How to change a response that starts with ``status``: None when there is no instruct.

        Call it as the response starts. The instruct is read now, so a ``start_instruct()``
        after this raises :class:`InstructTooLateError` instead of being lost.
        """
        if ctx.is_proxied:  # a direct request's context refuses instructs already
            ctx._refuse_instruct = _TOO_LATE
        instruct = ctx._instruct
        if instruct is None:
            return None
        headers = instruct.to_headers(self.settings.prefix)
        if status == 304 and instruct.status is None:
            # A 304 may not carry the instruct's headers through every framework and proxy
            # hop; GRIP's answer is a 200 that tells the proxy the real status (spec §3.2).
            # A 304's Content-Length is the entity's (RFC 9110 §8.6), and the 200 has no body.
            headers.append(("Grip-Status", "304"))
            return InstructPlan(200, headers, drop_content_length=True)
        return InstructPlan(status, headers)


class InstructPlan(NamedTuple):
    """What an adapter does to the app's response so that it carries the instruct."""

    #: The status to send instead of the app's.
    status: int
    #: The ``Grip-*`` headers to add.
    headers: list[tuple[str, str]]
    #: Remove the app's ``Content-Length``: it describes a body the new status has not.
    drop_content_length: bool = False


_TOO_LATE = partial(
    InstructTooLateError,
    "start_instruct() was called after the response started, so the proxy would never see"
    " the instruct; call it before the handler returns, not from a streaming body or a"
    " background task",
)


def websocket_reply_replaces(ctx: GripContext, status: int) -> bool:
    """The app's reply to a WebSocket-over-HTTP request is replaced by the events it queued.

    Any 2xx counts (frameworks answer a POST with 200, 201 or 204), so a handler's events are
    never dropped for want of the right success code; other statuses pass through, which at
    OPEN is how a handler refuses the connection.
    """
    return ctx.ws is not None and 200 <= status < 300


def close_after_handler_error(ctx: GripContext) -> bool:
    """On a handler failure, end the client's WebSocket with 1011 instead of a 500.

    Pushpin drops a connection whose request failed (the client sees 1006, no close frame);
    a CLOSE 1011 event in a 200 reply closes it cleanly instead. An opening request keeps its
    500, which Pushpin passes on as the refused handshake. True when ``ctx.ws`` was closed so.
    """
    ws = ctx.ws
    if ws is None or ws.is_opening() or ws.closed or ws.disconnected:
        return False
    ws.close(1011, "internal error")
    return True


def parse_content_length(value: str) -> int | None:
    """A ``Content-Length`` value, or None unless it is plain ASCII digits.

    ``str.isdigit()`` alone would accept other scripts' digits ("١٢"); a value too long for
    any body counts as too large rather than costing a huge ``int()``.
    """
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 10**18


def body_too_large(limit: int) -> RequestTooLargeError:
    """The 413 error for a WebSocket-over-HTTP body over ``limit`` bytes."""
    return RequestTooLargeError(f"WebSocket-over-HTTP body is over the {limit}-byte limit")
