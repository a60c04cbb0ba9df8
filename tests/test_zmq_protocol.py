"""Pushpin's ZeroMQ formats, sans I/O: tnetstrings, endpoints, item frames, stats, ZRPC.

The byte strings marked "Pushpin" are the vectors of Pushpin 1.36's own tnetstring tests
(``src/tnetstring.rs``) and the shapes its C++ writes (``statspacket.cpp``,
``statsmanager.cpp``, ``zrpcresponsepacket.cpp``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from grip_asgi import GripConfigError, HttpResponseFormat, HttpStreamFormat, Item
from grip_asgi import WebSocketMessageFormat as Ws
from grip_asgi.zmq import (
    StatsPacketError,
    SubscriberTable,
    SubscriptionStat,
    TnetstringError,
    ZmqEndpoint,
    parse_stats_message,
    parse_subscription,
    parse_zmq_uri,
)
from grip_asgi.zmq._protocol import (
    ZrpcError,
    ZrpcResponse,
    parse_zrpc_response,
    pub_message,
    push_message,
    tnetstring_item,
    zrpc_request,
)
from grip_asgi.zmq._tnetstring import MAX_DEPTH, dumps, loads

# --- tnetstrings -----------------------------------------------------------------------------

PUSHPIN_VECTORS: list[tuple[bytes, Any]] = [
    (b"0:~", None),
    (b"4:true!", True),
    (b"5:false!", False),
    (b"1:0#", 0),
    (b"2:42#", 42),
    (b"3:-42#", -42),
    (b"1:0^", 0.0),
    (b"4:-0.5^", -0.5),
    (b"0:,", b""),
    (b"5:hello,", b"hello"),
    (b"12:3:foo,3:bar,]", [b"foo", b"bar"]),
    (b"12:3:foo,3:bar,}", {"foo": b"bar"}),
    (b"15:4:name,5:alice,}", {"name": b"alice"}),
]


@pytest.mark.parametrize(("data", "value"), PUSHPIN_VECTORS)
def test_tnetstring_decodes_pushpins_vectors(data: bytes, value: Any) -> None:
    assert loads(data) == value


@pytest.mark.parametrize(
    ("value", "data"),
    [
        (None, b"0:~"),
        (True, b"4:true!"),
        (False, b"5:false!"),
        (42, b"2:42#"),
        (-42, b"3:-42#"),
        (-0.5, b"4:-0.5^"),
        ("hello", b"5:hello,"),
        ("é", b"2:\xc3\xa9,"),
        (b"\x00\xff", b"2:\x00\xff,"),
        ([b"foo", "bar"], b"12:3:foo,3:bar,]"),
        ((), b"0:]"),
        ({"foo": "bar"}, b"12:3:foo,3:bar,}"),
        ({"a": [1, {"b": None}]}, b"22:1:a,14:1:1#7:1:b,0:~}]}"),
    ],
)
def test_tnetstring_encodes_as_pushpin_does(value: Any, data: bytes) -> None:
    assert dumps(value) == data


def test_tnetstring_round_trips_nested_values() -> None:
    value = {"items": [{"channel": b"c", "id": b"1", "size": 3, "no-seq": True, "x": 1.25}]}
    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no length prefix"),
        (b"bogus", "no length prefix"),
        (b"5:hello", "runs past"),  # no tag
        (b"05:hello,", "no length prefix"),  # a leading zero
        (b"5:hello,x", "after the value"),
        (b"5:bogus#", "not an integer"),
        (b"2:+1#", "not an integer"),
        (b"5:bogus!", "not a boolean"),
        (b"1:x~", "null with a payload"),
        (b"5:bogus^", "not a float"),
        (b"3:nan^", "not a float"),
        (b"5:hello?", "unknown type tag"),
        (b"4:1:0#}", "not a string"),  # Pushpin: a map key must be a string
        (b"4:1:\x80,}", "not UTF-8"),  # Pushpin: ... a UTF-8 string
        (b"7:4:name,}", "key without a value"),  # Pushpin: a key alone
        (b"8:4:name,X}", "no length prefix"),  # Pushpin: a bad value
        (b"16:1:a,1:b,1:a,1:c,}", "repeats the key"),
        (b"5:3:ab,]", "runs past"),  # an element over its container's end
        (b"9999999999:x,", "no length prefix"),  # more than nine digits
    ],
)
def test_tnetstring_rejects_malformed_input(data: bytes, why: str) -> None:
    with pytest.raises(TnetstringError, match=why):
        loads(data)


def test_tnetstring_limits_nesting() -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(TnetstringError, match="nested more than"):
        loads(dumps(deep))
    assert loads(dumps(deep[0])) == deep[0]


@pytest.mark.parametrize(
    ("value", "error"),
    [({1: "x"}, TypeError), (object(), TypeError), (float("nan"), ValueError)],
)
def test_tnetstring_refuses_values_it_cannot_encode(value: Any, error: type) -> None:
    with pytest.raises(error):
        dumps(value)


# --- endpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "endpoint"),
    [
        ("zmq+tcp://127.0.0.1:5560", ZmqEndpoint("tcp://127.0.0.1:5560", "push", False)),
        ("zmq+tcp://pushpin:5560?mode=push", ZmqEndpoint("tcp://pushpin:5560", "push", False)),
        (
            "zmq+ipc:///run/pushpin/push-in",
            ZmqEndpoint("ipc:///run/pushpin/push-in", "push", False),
        ),
        ("zmq+tcp://*:5562?mode=pub", ZmqEndpoint("tcp://*:5562", "pub", True)),
        (
            "zmq+tcp://10.0.0.2:5562?mode=pub&bind=false",
            ZmqEndpoint("tcp://10.0.0.2:5562", "pub", False),
        ),
        ("zmq+tcp://[::1]:5560", ZmqEndpoint("tcp://[::1]:5560", "push", False)),
    ],
)
def test_zmq_uris_name_address_mode_and_bind(uri: str, endpoint: ZmqEndpoint) -> None:
    assert parse_zmq_uri(uri) == endpoint


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("tcp://127.0.0.1:5560", "starts with zmq"),
        ("zmq+tcp://127.0.0.1", "needs a host and a port"),
        ("zmq+tcp://:5560", "needs a host and a port"),
        ("zmq+tcp://h:0", "needs a host and a port"),
        ("zmq+tcp://h:99999", "invalid port"),
        ("zmq+tcp://h:1/path", "no path"),
        ("zmq+tcp://*:1", "is for a socket that binds"),
        ("zmq+tcp://h:1?mode=pull", "mode must be push, pub or command"),
        ("zmq+tcp://h:1?bind=true", "applies to mode=pub"),
        ("zmq+tcp://h:1?mode=pub&bind=maybe", "bind must be true or false"),
        ("zmq+tcp://h:1?mode=pub&mode=push", "repeats 'mode'"),
        ("zmq+tcp://h:1?hwm=5", "unknown ZeroMQ URI parameter"),
        ("zmq+tcp://u:p@h:1", "no credentials"),
        ("zmq+ipc://relative/path", "absolute path"),
    ],
)
def test_zmq_uris_say_what_is_wrong(uri: str, why: str) -> None:
    with pytest.raises(GripConfigError, match=why):
        parse_zmq_uri(uri)


# --- items -----------------------------------------------------------------------------------


def test_a_push_message_is_j_and_the_items_json() -> None:
    item = Item(Ws("hi"), id="1").to_dict("news")
    data = json.dumps(item).encode()
    assert push_message(data) == b"J" + data
    assert json.loads(push_message(data)[1:]) == {
        "channel": "news",
        "id": "1",
        "formats": {"ws-message": {"content": "hi"}},
    }


def test_a_pub_message_is_the_channel_then_the_item() -> None:
    assert pub_message("café", b"{}") == ("café".encode(), b"J{}")


def test_tnetstring_items_carry_raw_bytes_where_json_has_base64() -> None:
    item = Item(
        [Ws(b"\x00\x01"), HttpStreamFormat(b"\xff\n"), HttpResponseFormat(body=b"\x80")]
    ).to_dict("c")
    converted = tnetstring_item(item)
    # Pushpin reads body-bin and content-bin of the HTTP formats from JSON only.
    assert converted["formats"] == {
        "ws-message": {"content-bin": b"\x00\x01"},
        "http-stream": {"content": b"\xff\n"},
        "http-response": {"body": b"\x80"},
    }
    assert item["formats"]["ws-message"] == {"content-bin": base64.b64encode(b"\x00\x01").decode()}
    assert loads(dumps(converted))["formats"]["http-stream"] == {"content": b"\xff\n"}


# --- stats -----------------------------------------------------------------------------------


def sub_packet(**fields: Any) -> bytes:
    return b"sub T" + dumps(fields)


def test_a_sub_packet_is_read_in_tnetstring_and_json() -> None:
    fields = {"from": "pushpin-handler_7", "mode": "ws", "channel": "news", "ttl": 60}
    expected = SubscriptionStat("pushpin-handler_7", "ws", "news", 3, 60.0)
    assert parse_subscription(sub_packet(**fields, subscribers=3)) == expected
    # stats_format=json: Qt writes numbers as doubles
    as_json = b"sub J" + json.dumps({**fields, "ttl": 60.0, "subscribers": 3.0}).encode()
    assert parse_subscription(as_json) == expected


def test_an_unavailable_sub_packet_has_no_subscribers() -> None:
    packet = sub_packet(**{"from": "h", "mode": "stream", "channel": "c", "unavailable": True})
    assert parse_subscription(packet) == SubscriptionStat("h", "stream", "c", 0, None)


def test_other_stats_packets_are_not_subscriptions() -> None:
    report = b"report T" + dumps({"from": "h", "connections": 2})
    assert parse_subscription(report) is None
    assert parse_stats_message(report) == ("report", {"from": "h", "connections": 2})


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"sub", "not '<type> T<data>'"),
        (b"sub X{}", "unknown stats encoding"),
        (b"sub T5:hello", "does not decode"),
        (b"sub J{bad", "does not decode"),
        (b"sub J[]", "is not a dict"),
        (sub_packet(mode="ws", channel="c"), "needs a ttl"),
        (sub_packet(mode="ws", channel="c", ttl=60, subscribers=-1), "count >= 0"),
        (sub_packet(mode="ws", channel="c", ttl=True), "needs a ttl"),
        (sub_packet(mode=1, channel="c", ttl=60), "string mode and channel"),
        (b"sub T" + dumps({"mode": b"ws", "channel": b"\xff", "ttl": 1}), "does not decode"),
    ],
)
def test_malformed_stats_packets_raise(message: bytes, why: str) -> None:
    with pytest.raises(StatsPacketError, match=why):
        parse_subscription(message)


def stat(
    channel: str, count: int, *, mode: str = "ws", source: str = "a", ttl: float = 60
) -> SubscriptionStat:
    return SubscriptionStat(source, mode, channel, count, ttl if count else None)


def test_the_table_sums_modes_and_pushpins() -> None:
    table = SubscriberTable(started=0)
    assert table.update(stat("news", 2), now=1)
    assert table.update(stat("news", 1, mode="stream"), now=1)
    assert table.update(stat("news", 4, source="b"), now=1)
    assert not table.update(stat("news", 4, source="b"), now=2)  # a refresh, no change
    assert table.count("news", now=2) == 7
    assert table.by_mode("news", now=2) == {"ws": 6, "stream": 1}
    assert table.counts(now=2) == {"news": 7}
    assert table.count("other", now=2) == 0


def test_an_unsubscribe_drops_one_pushpins_count() -> None:
    table = SubscriberTable(started=0)
    table.update(stat("news", 2), now=1)
    table.update(stat("news", 3, source="b"), now=1)
    assert table.update(stat("news", 0), now=2)
    assert table.count("news", now=2) == 3
    table.update(stat("news", 0, source="b"), now=2)
    assert table.counts(now=2) == {}


def test_a_count_not_sent_again_within_its_ttl_expires() -> None:
    table = SubscriberTable(started=0)
    table.update(stat("news", 2, ttl=60), now=10)
    table.update(stat("sport", 1, ttl=60), now=40)
    assert table.count("news", now=69.9) == 2
    assert table.count("news", now=70) == 0  # expired, even before expire() runs
    assert table.expire(now=70) == ["news"]
    assert table.counts(now=70) == {"sport": 1}
    table.update(stat("sport", 1, ttl=60), now=80)  # refreshed
    assert table.expire(now=130) == []
    assert table.count("sport", now=130) == 1


def test_the_table_is_complete_after_one_ttl() -> None:
    table = SubscriberTable(started=100, ttl=60)
    assert not table.is_complete(now=159)
    assert table.is_complete(now=160)
    table.update(stat("news", 1, ttl=120), now=161)  # a longer TTL learnt from a packet
    assert not table.is_complete(now=161)
    assert table.is_complete(now=220)


# --- ZRPC ------------------------------------------------------------------------------------


def test_a_zrpc_request_is_a_tnetstring_dict() -> None:
    assert loads(zrpc_request("get-zmq-uris", id=b"1")) == {"id": b"1", "method": b"get-zmq-uris"}
    request = loads(zrpc_request("publish", {"items": [{"channel": "c"}]}, id=b"2"))
    assert request["args"] == {"items": [{"channel": b"c"}]}


@pytest.mark.parametrize(
    ("data", "response"),
    [
        (b"37:2:id,1:1,7:success,4:true!5:value,0:~}", ZrpcResponse(b"1", True, None)),
        (
            b"68:2:id,1:2,7:success,5:false!9:condition,11:bad-request,5:value,3:bad,}",
            ZrpcResponse(b"2", False, b"bad", "bad-request"),
        ),
    ],
)
def test_zrpc_responses_decode(data: bytes, response: ZrpcResponse) -> None:
    assert parse_zrpc_response(data) == response


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"bogus", "not a tnetstring"),
        (dumps({"id": "1"}), "boolean 'success'"),
        (dumps({"success": False}), "needs a 'condition'"),
        (dumps({"id": 1, "success": True}), "id is not a string"),
    ],
)
def test_malformed_zrpc_responses_raise(data: bytes, why: str) -> None:
    with pytest.raises(ZrpcError, match=why):
        parse_zrpc_response(data)


def test_command_batches_hold_as_many_items_as_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from grip_asgi.zmq import _protocol

    items = [Item(Ws("x" * 10), id=str(n)).to_dict("c") for n in range(5)]
    one = len(dumps(tnetstring_item(items[0])))
    monkeypatch.setattr(_protocol, "COMMAND_BATCH_BYTES", 2 * one)
    batches = _protocol.command_messages(items)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [loads(data)["id"] for batch in batches for data in batch] == [
        b"0",
        b"1",
        b"2",
        b"3",
        b"4",
    ]
    request = loads(_protocol.zrpc_publish(b"9", batches[0]))
    assert request == {
        "id": b"9",
        "method": b"publish",
        "args": {"items": [loads(d) for d in batches[0]]},
    }
