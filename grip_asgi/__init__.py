"""grip-asgi: GRIP (Pushpin, Fastly Fanout) for ASGI apps, with a sans-IO protocol core.

The names gripcontrol users know (``decode_websocket_events``, ``encode_websocket_events``,
``WebSocketEvent``, ``validate_sig``, ``parse_grip_uri``, ``WebSocketContext``) are here too,
so moving from gripcontrol is a change of import.
"""

from __future__ import annotations

from ._config import FASTLY_FANOUT_PUBLIC_KEY, GripConfig, GripSettings, parse_grip_uri
from ._context import GripContext, GripLimits, GripProcessor, RequestHead
from ._errors import (
    ConnectionIdMissingError,
    GripConfigError,
    GripError,
    GripInstructError,
    GripProtocolError,
    InstructAlreadyStartedError,
    InstructNotAvailableError,
    InstructTooLateError,
    MultiPublishError,
    PublishConnectionError,
    PublishError,
    PublishTimeoutError,
    RequestHeaderTooLargeError,
    RequestTooLargeError,
    WebSocketDecodeError,
    WebSocketStateError,
)
from ._instruct import (
    Channel,
    GripInstruct,
    KeepAlive,
    create_grip_channel_header,
    parse_grip_channel,
    parse_grip_feature,
    parse_grip_last,
    parse_instruct_headers,
    parse_keep_alive,
)
from ._publish import (
    Format,
    HttpResponseFormat,
    HttpStreamFormat,
    Item,
    Publisher,
    SyncPublisher,
    WebSocketMessageFormat,
    sse_event,
    text_formats,
)
from ._signature import ProxyVerifier, SigCheck, SigFailure, SigVerifier, check_sig, validate_sig
from ._sse import (
    SSE_CONTENT_TYPE,
    SSE_KEEP_ALIVE,
    encode_sse_event,
    parse_last_event_id,
    sse_comment,
)
from ._websocket import (
    WebSocketContext,
    WebSocketEvent,
    decode_websocket_events,
    encode_websocket_events,
    websocket_control_message,
)
from .middleware import GripMiddleware, get_grip_context, get_publisher

__version__ = "0.1.0"

__all__ = (
    "FASTLY_FANOUT_PUBLIC_KEY",
    "SSE_CONTENT_TYPE",
    "SSE_KEEP_ALIVE",
    "Channel",
    "ConnectionIdMissingError",
    "Format",
    "GripConfig",
    "GripConfigError",
    "GripContext",
    "GripError",
    "GripInstruct",
    "GripInstructError",
    "GripLimits",
    "GripMiddleware",
    "GripProcessor",
    "GripProtocolError",
    "GripSettings",
    "HttpResponseFormat",
    "HttpStreamFormat",
    "InstructAlreadyStartedError",
    "InstructNotAvailableError",
    "InstructTooLateError",
    "Item",
    "KeepAlive",
    "MultiPublishError",
    "ProxyVerifier",
    "PublishConnectionError",
    "PublishError",
    "PublishTimeoutError",
    "Publisher",
    "RequestHead",
    "RequestHeaderTooLargeError",
    "RequestTooLargeError",
    "SigCheck",
    "SigFailure",
    "SigVerifier",
    "SyncPublisher",
    "WebSocketContext",
    "WebSocketDecodeError",
    "WebSocketEvent",
    "WebSocketMessageFormat",
    "WebSocketStateError",
    "__version__",
    "check_sig",
    "create_grip_channel_header",
    "decode_websocket_events",
    "encode_sse_event",
    "encode_websocket_events",
    "get_grip_context",
    "get_publisher",
    "parse_grip_channel",
    "parse_grip_feature",
    "parse_grip_last",
    "parse_grip_uri",
    "parse_instruct_headers",
    "parse_keep_alive",
    "parse_last_event_id",
    "sse_comment",
    "sse_event",
    "text_formats",
    "validate_sig",
    "websocket_control_message",
)
