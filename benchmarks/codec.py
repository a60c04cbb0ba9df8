"""Events codec: WebSocket-over-HTTP decode and encode, against gripcontrol's functions.

Ours decodes the way the middleware calls it, with the default :class:`GripLimits` bounds,
and validates strictly (sizes, CRLFs, event types); gripcontrol checks none of that.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from grip_asgi._context import GripLimits
from grip_asgi._websocket import WebSocketEvent, decode_websocket_events, encode_websocket_events

from ._harness import Batch, Result, Settings, interleave

__all__ = (
    "WORKLOADS",
    "anchor_decode",
    "anchor_encode",
    "body_of",
    "ours_decode",
    "ours_encode",
    "run",
)

#: Workload name -> its events, as (type, content) pairs.
WORKLOADS: dict[str, list[tuple[str, bytes]]] = {
    "1 small event": [("TEXT", b"hello")],
    "100 x 64 B": [("TEXT", bytes(range(64)))] * 100,
    "1000 x 1 KiB": [("TEXT", bytes(range(256)) * 4)] * 1000,
}

_LIMITS = GripLimits()


def body_of(pairs: Sequence[tuple[str, bytes]]) -> bytes:
    """The WebSocket-over-HTTP body holding ``pairs``."""
    return encode_websocket_events(WebSocketEvent(kind, content) for kind, content in pairs)


def _repeat(function: Callable[[Any], object], argument: object) -> Batch:
    def batch(n: int) -> None:
        for _ in range(n):
            function(argument)

    return batch


def _decode_as_the_middleware_does(body: bytes) -> list[WebSocketEvent]:
    return decode_websocket_events(
        body, max_events=_LIMITS.max_events, max_event_size=_LIMITS.max_event_size
    )


def ours_decode(body: bytes) -> Batch:
    return _repeat(_decode_as_the_middleware_does, body)


def ours_encode(pairs: Sequence[tuple[str, bytes]]) -> Batch:
    return _repeat(encode_websocket_events, [WebSocketEvent(kind, data) for kind, data in pairs])


def anchor_decode(body: bytes) -> Batch:
    import gripcontrol

    return _repeat(gripcontrol.decode_websocket_events, body)


def anchor_encode(pairs: Sequence[tuple[str, bytes]]) -> Batch:
    import gripcontrol

    events = [gripcontrol.WebSocketEvent(kind, data) for kind, data in pairs]
    return _repeat(gripcontrol.encode_websocket_events, events)


def _check_same_output(pairs: Sequence[tuple[str, bytes]], body: bytes) -> None:
    import gripcontrol

    theirs = [(e.type, e.content) for e in gripcontrol.decode_websocket_events(body)]
    ours = [(e.type, e.content) for e in _decode_as_the_middleware_does(body)]
    events = [gripcontrol.WebSocketEvent(kind, data) for kind, data in pairs]
    if ours != theirs or gripcontrol.encode_websocket_events(events) != body:
        raise AssertionError("the codecs disagree: the comparison would be meaningless")


def run(settings: Settings) -> list[Result]:
    results = []
    for workload, pairs in WORKLOADS.items():
        body = body_of(pairs)
        _check_same_output(pairs, body)
        decode = interleave({"ours": ours_decode(body), "anchor": anchor_decode(body)}, settings)
        encode = interleave({"ours": ours_encode(pairs), "anchor": anchor_encode(pairs)}, settings)
        for operation, times, target in (
            ("decode", decode, 0.9),
            ("encode", encode, 20.0 if len(pairs) == 1000 else None),
        ):
            ours_us = statistics.median(times["ours"]) / 1000
            anchor_us = statistics.median(times["anchor"]) / 1000
            per_event = f"{len(pairs) / ours_us:.2f}M events/s" if ours_us else ""
            results.append(
                Result(
                    "codec",
                    f"{operation} {workload}",
                    ours_us,
                    anchor_us,
                    "us",
                    target=target,
                    anchor_name="gripcontrol",
                    note=f"ours {per_event}, gripcontrol {len(pairs) / anchor_us:.2f}M events/s",
                )
            )
    return results
