"""Pushpin's ZeroMQ interfaces: publishing over PUSH or PUB, and live subscriber counts.

Publishing over ZeroMQ is chosen by the proxy's URL, with the same ``Publisher`` and
``SyncPublisher``: ``zmq+tcp://host:port`` (or ``zmq+ipc:///path``) PUSHes to one Pushpin's
``push_in_spec``; ``?mode=pub`` binds a PUB socket that any number of Pushpins subscribe to
(``push_in_sub_specs`` with ``push_in_sub_connect=true``). A PUSH or PUB send confirms
nothing: a publish returns once the items are queued on the socket. ``?mode=command`` sends
ZRPC ``publish`` requests to Pushpin's ``command_spec`` and waits for each answer, as over
HTTP. :class:`SubscriberCounts` reads Pushpin's stats socket. Needs pyzmq: ``pip install
"grip-asgi[zmq]"``.
"""

from __future__ import annotations

from ._protocol import (
    DEFAULT_SUBSCRIPTION_TTL,
    StatsPacketError,
    SubscriberTable,
    SubscriptionStat,
    ZmqEndpoint,
    parse_stats_message,
    parse_subscription,
    parse_zmq_uri,
)
from ._sockets import SubscriberCounts, ZmqSendTimeoutError
from ._tnetstring import TnetstringError

__all__ = (
    "DEFAULT_SUBSCRIPTION_TTL",
    "StatsPacketError",
    "SubscriberCounts",
    "SubscriberTable",
    "SubscriptionStat",
    "TnetstringError",
    "ZmqEndpoint",
    "ZmqSendTimeoutError",
    "parse_stats_message",
    "parse_subscription",
    "parse_zmq_uri",
)
