"""The exceptions raised by grip-asgi.

Every exception derives from :class:`GripError`::

    GripError
    ├── GripConfigError (also ValueError)     a malformed GRIP URL, key or setting
    ├── GripProtocolError                     bad input from the network; carries ``status_hint``
    │   ├── WebSocketDecodeError (also ValueError)   a malformed WebSocket-over-HTTP body (400)
    │   ├── ConnectionIdMissingError          no Connection-Id on WebSocket-over-HTTP (400)
    │   ├── RequestTooLargeError              a body over the configured limit (413)
    │   ├── RequestHeaderTooLargeError        GRIP headers over the configured limits (431)
    │   └── RecoveryRequestError              a bad Last-Event-ID (400) or next link (403)
    ├── GripInstructError (also RuntimeError)
    │   ├── InstructAlreadyStartedError       ``start_instruct()`` called twice
    │   ├── InstructNotAvailableError         the request did not come through a GRIP proxy
    │   └── InstructTooLateError              ``start_instruct()`` after the response started
    ├── WebSocketStateError (also RuntimeError)   a WebSocketContext used in the wrong state
    ├── HistoryError                          a channel history store failed (grip_asgi.history)
    │   ├── HistoryGapError                   reading after an id would skip trimmed events
    │   └── HistoryUnavailableError           the store's backend cannot be used now
    ├── PresenceError                         a presence store failed (grip_asgi.presence)
    │   └── PresenceUnavailableError          the store's backend cannot be used now
    └── PublishError                          a publish failed; says what was delivered and what not
        ├── PublishConnectionError            the proxy could not be reached
        ├── PublishTimeoutError               the proxy did not answer in time
        │   └── ZmqSendTimeoutError           a ZeroMQ send queue stayed full (grip_asgi.zmq)
        ├── PublishReplyError                 the proxy's reply was missing, broken off or malformed
        └── MultiPublishError                 some of several proxies failed; lists each error

``GripProtocolError`` is what a middleware turns into a 4xx reply; the others are raised
to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._publish import Item

    #: A ``(channel, item)`` pair, as ``publish_many`` takes them.
    Entry = tuple[str, Item]

__all__ = (
    "ConnectionIdMissingError",
    "GripConfigError",
    "GripError",
    "GripInstructError",
    "GripProtocolError",
    "InstructAlreadyStartedError",
    "InstructNotAvailableError",
    "InstructTooLateError",
    "MultiPublishError",
    "PublishConnectionError",
    "PublishError",
    "PublishReplyError",
    "PublishTimeoutError",
    "RequestHeaderTooLargeError",
    "RequestTooLargeError",
    "WebSocketDecodeError",
    "WebSocketStateError",
)


class GripError(Exception):
    """Base class of every grip-asgi error."""


class GripConfigError(GripError, ValueError):
    """A GRIP URL, key or setting is malformed. The message says which and why."""


class GripProtocolError(GripError):
    """A request from the network is malformed. Middleware replies ``status_hint``."""

    status_hint: int = 400


class WebSocketDecodeError(GripProtocolError, ValueError):
    """A WebSocket-over-HTTP body does not follow the events format."""


class ConnectionIdMissingError(GripProtocolError):
    """A WebSocket-over-HTTP request has no ``Connection-Id`` header."""


class RequestTooLargeError(GripProtocolError):
    """A request body is larger than the configured limit."""

    status_hint = 413


class RequestHeaderTooLargeError(GripProtocolError):
    """A proxied request's GRIP headers (Grip-Last, Meta-*, ...) are over the configured limits."""

    status_hint = 431


class GripInstructError(GripError, RuntimeError):
    """An instruct cannot be started."""


class InstructAlreadyStartedError(GripInstructError):
    """``start_instruct()`` was already called for this request."""


class InstructNotAvailableError(GripInstructError):
    """Nothing would act on an instruct: the request did not come through a GRIP proxy, or
    it is a native WebSocket."""


class InstructTooLateError(GripInstructError):
    """``start_instruct()`` came after the response started (in a streaming body, a
    background task): its headers are sent, so the proxy would never see the instruct."""


class WebSocketStateError(GripError, RuntimeError):
    """A WebSocketContext was used in a state that does not allow it (for example after close)."""


class PublishError(GripError):
    """Publishing to a GRIP proxy failed.

    ``proxy`` is the proxy's control URI (never with credentials), ``status`` the HTTP status
    it answered with (None when there was no answer) and ``body`` the start of its reply.

    What got through, so that a retry resends nothing twice (items are the ``(channel,
    item)`` pairs of the publish, in order):

    - ``delivered``: the proxies that took every item (see :class:`MultiPublishError`).
    - ``delivered_items``: the items the proxy took before the failure.
    - ``failed_items``: the items it did not take: the failed request's and every later one.
    - ``unsure_items``: the first of ``failed_items``, when the failed request may have
      reached the proxy anyway (it answered 5xx, or its answer was lost). Resending them is
      safe only where the proxy drops a repeated item ``id``: Pushpin does; Fastly Fanout does
      not say so (see ``RetryPolicy``).

    ``Publisher.retry(error)`` resends ``failed_items`` to each proxy that missed them.
    """

    def __init__(
        self,
        message: str,
        *,
        proxy: str = "",
        status: int | None = None,
        body: str = "",
        delivered: Sequence[str] = (),
        delivered_items: Sequence[Entry] = (),
        failed_items: Sequence[Entry] = (),
        unsure_items: Sequence[Entry] = (),
    ) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status
        self.body = body
        self.delivered = tuple(delivered)
        self.delivered_items = tuple(delivered_items)
        self.failed_items = tuple(failed_items)
        self.unsure_items = tuple(unsure_items)


class PublishConnectionError(PublishError):
    """The proxy's publish endpoint could not be reached."""


class PublishTimeoutError(PublishError):
    """The proxy did not answer the publish within the timeout."""


class PublishReplyError(PublishError):
    """The request reached the proxy, but its reply was missing, broken off or malformed.

    ``status`` is the status the reply began with, or None when none arrived. The items may
    have been published (``unsure_items``), unless the status was a 4xx.
    """


class MultiPublishError(PublishError):
    """Publishing to several proxies failed for at least one of them.

    ``errors`` holds one :class:`PublishError` per failed proxy, each saying which items that
    proxy took; ``delivered`` (also ``succeeded``) lists the control URIs of the proxies that
    took every item. ``failed_items`` are the items at least one proxy did not take,
    ``unsure_items`` those that may have reached one anyway, and ``delivered_items`` the items
    every proxy took.
    """

    def __init__(self, errors: Sequence[PublishError], succeeded: Sequence[str] = ()) -> None:
        # Each error's message names its proxy already.
        failed = "; ".join(str(e) for e in errors)
        # Every proxy's failed items are a tail of the same items, so the longest holds all.
        failed_items = max((e.failed_items for e in errors), key=len, default=())
        unsure = {id(entry) for e in errors for entry in e.unsure_items}
        super().__init__(
            f"publish failed on {len(errors)} of {len(errors) + len(succeeded)} proxies ({failed})",
            delivered=succeeded,
            delivered_items=min((e.delivered_items for e in errors), key=len, default=()),
            failed_items=failed_items,
            unsure_items=[entry for entry in failed_items if id(entry) in unsure],
        )
        self.errors = list(errors)
        self.succeeded = list(succeeded)
