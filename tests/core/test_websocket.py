from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grip_asgi._errors import GripProtocolError, WebSocketDecodeError
from grip_asgi._websocket import (
    WebSocketEvent,
    decode_websocket_events,
    encode_websocket_events,
    websocket_control_message,
)

EVENT_TYPES = ["OPEN", "TEXT", "BINARY", "PING", "PONG", "CLOSE", "DISCONNECT"]

# -- WebSocketEvent ---------------------------------------------------------------------------


def test_event_stores_str_content_as_utf8_bytes():
    assert WebSocketEvent("TEXT", "hi é").content == "hi é".encode()


def test_event_keeps_bytes_and_none_content():
    content = b"\xff\x00"
    assert WebSocketEvent("BINARY", content).content is content
    assert WebSocketEvent("OPEN").content is None


def test_event_gripcontrol_accessors():
    event = WebSocketEvent("TEXT", b"x")
    assert (event.get_type(), event.get_content()) == ("TEXT", b"x")


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (WebSocketEvent("TEXT", b"a"), WebSocketEvent("TEXT", "a"), True),
        (WebSocketEvent("TEXT", b"a"), WebSocketEvent("BINARY", b"a"), False),
        (WebSocketEvent("TEXT", b"a"), WebSocketEvent("TEXT", b"b"), False),
        (WebSocketEvent("TEXT", b""), WebSocketEvent("TEXT"), False),
    ],
)
def test_event_equality_and_hash(left, right, equal):
    assert (left == right) is equal
    assert (hash(left) == hash(right)) is equal


def test_event_is_not_equal_to_other_types():
    assert WebSocketEvent("OPEN") != ("OPEN", None)
    assert WebSocketEvent("OPEN").__eq__("OPEN") is NotImplemented


def test_event_has_no_instance_dict():
    with pytest.raises(AttributeError):
        WebSocketEvent("OPEN").extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (WebSocketEvent("OPEN"), "WebSocketEvent('OPEN')"),
        (WebSocketEvent("TEXT", b"hi"), "WebSocketEvent('TEXT', b'hi')"),
    ],
)
def test_event_repr(event, text):
    assert repr(event) == text


# -- decode: conformance vectors (spec §7.1) --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "events"),
    [
        (
            b"OPEN\r\nTEXT 5\r\nHello\r\nTEXT 0\r\n\r\nCLOSE\r\nTEXT\r\nCLOSE\r\n",
            [
                WebSocketEvent("OPEN"),
                WebSocketEvent("TEXT", b"Hello"),
                WebSocketEvent("TEXT", b""),
                WebSocketEvent("CLOSE"),
                WebSocketEvent("TEXT"),
                WebSocketEvent("CLOSE"),
            ],
        ),
        (b"OPEN\r\n", [WebSocketEvent("OPEN")]),
        (b"TEXT 5\r\nHello\r\n", [WebSocketEvent("TEXT", b"Hello")]),
        (b"", []),
        (b"BINARY 2\r\n\xff\x00\r\n", [WebSocketEvent("BINARY", b"\xff\x00")]),
        # Pushpin writes sizes in lowercase hex; uppercase is hex too.
        (b"TEXT b\r\nfrag1-frag2\r\n", [WebSocketEvent("TEXT", b"frag1-frag2")]),
        (b"TEXT B\r\nfrag1-frag2\r\n", [WebSocketEvent("TEXT", b"frag1-frag2")]),
        (b"TEXT 05\r\nHello\r\n", [WebSocketEvent("TEXT", b"Hello")]),
        # Content may itself contain CRLF and spaces: only the size says where it ends.
        (b"TEXT 4\r\n\r\n\r\n\r\n", [WebSocketEvent("TEXT", b"\r\n\r\n")]),
        (
            b"CLOSE 5\r\n\x03\xe8bye\r\nPING\r\nPONG 1\r\nx\r\nDISCONNECT\r\n",
            [
                WebSocketEvent("CLOSE", b"\x03\xe8bye"),
                WebSocketEvent("PING"),
                WebSocketEvent("PONG", b"x"),
                WebSocketEvent("DISCONNECT"),
            ],
        ),
    ],
)
def test_decode(body, events):
    assert decode_websocket_events(body) == events


def test_decoded_types_are_plain_str():
    (event,) = decode_websocket_events(b"TEXT 1\r\nx\r\n")
    assert type(event.type) is str
    assert type(event.content) is bytes


# -- decode: malformed bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"TEXT 5", "no CRLF after the event type at byte 0"),
        (b"OPEN\r\nTEXT", "no CRLF after the event type at byte 6"),
        (b"OPEN\n", "no CRLF after the event type at byte 0"),
        (b"\r\n", "unknown event type b'' at byte 0"),
        (b"OPEN\r\nHELLO\r\n", "unknown event type b'HELLO' at byte 6"),
        (b"open\r\n", "unknown event type b'open' at byte 0"),
        (b"TEXT  5\r\nHello\r\n", "bad content size b' 5' at byte 5"),
        (b"TEXT \r\n", "bad content size b'' at byte 5"),
        (b"TEXT 0x5\r\nHello\r\n", "bad content size b'0x5' at byte 5"),
        (b"TEXT +5\r\nHello\r\n", "bad content size b'+5' at byte 5"),
        (b"TEXT -5\r\nHello\r\n", "bad content size b'-5' at byte 5"),
        (b"TEXT 1_0\r\n0123456789abcdef\r\n", "bad content size b'1_0' at byte 5"),
        (b"TEXT 5 \r\nHello\r\n", "bad content size b'5 ' at byte 5"),
        (b"TEXT g\r\nHello\r\n", "bad content size b'g' at byte 5"),
        (b"TEXT \xd9\xa5\r\nHello\r\n", "bad content size b'\\xd9\\xa5' at byte 5"),
        (b"TEXT 6\r\nHello\r\n", "no CRLF after the content at byte 14"),
        (b"TEXT 5\r\nHello", "no CRLF after the content at byte 13"),
        (b"TEXT 5\r\nHello\r", "no CRLF after the content at byte 13"),
        (b"TEXT 5\r\nHelloXY", "no CRLF after the content at byte 13"),
        (b"TEXT 4\r\nHello\r\n", "no CRLF after the content at byte 12"),
        (b"TEXT a\r\nHello", "content truncated: 10 bytes announced, 5 left at byte 8"),
        (b"OPEN\r\nTEXT 5\r\nHel", "content truncated: 5 bytes announced, 3 left at byte 14"),
    ],
)
def test_decode_rejects_malformed_body(body, message):
    with pytest.raises(WebSocketDecodeError) as exc_info:
        decode_websocket_events(body)
    assert str(exc_info.value) == f"malformed WebSocket-over-HTTP body: {message}"
    assert "\n" not in str(exc_info.value)


def test_decode_error_is_a_protocol_error_with_a_400_hint():
    with pytest.raises(GripProtocolError) as exc_info:
        decode_websocket_events(b"TEXT")
    assert exc_info.value.status_hint == 400
    assert isinstance(exc_info.value, ValueError)


def test_decode_error_message_shortens_long_garbage():
    with pytest.raises(WebSocketDecodeError) as exc_info:
        decode_websocket_events(b"X" * 1000 + b"\r\n")
    assert len(str(exc_info.value)) < 120


@pytest.mark.parametrize(
    ("body", "max_events", "error"),
    [
        (b"OPEN\r\n", 1, None),
        (b"OPEN\r\nTEXT 1\r\nx\r\n", 2, None),
        (b"OPEN\r\nTEXT 1\r\nx\r\n", 1, "more than 1 events at byte 6"),
        (b"OPEN\r\n", 0, "more than 0 events at byte 0"),
        (b"", 0, None),
    ],
)
def test_decode_max_events(body, max_events, error):
    if error is None:
        assert len(decode_websocket_events(body, max_events=max_events)) <= max_events
    else:
        with pytest.raises(WebSocketDecodeError, match=error):
            decode_websocket_events(body, max_events=max_events)


@pytest.mark.parametrize(
    ("body", "max_event_size", "error"),
    [
        (b"TEXT 5\r\nHello\r\n", 5, None),
        (b"TEXT 0\r\n\r\nOPEN\r\n", 0, None),
        (b"TEXT 5\r\nHello\r\n", 4, "content size 5 over the limit of 4 bytes at byte 0"),
        # The limit is checked before the content is looked at, so a huge size fails fast.
        (b"OPEN\r\nTEXT ffffffff\r\n", 1024, "content size 4294967295 over the limit"),
    ],
)
def test_decode_max_event_size(body, max_event_size, error):
    if error is None:
        assert decode_websocket_events(body, max_event_size=max_event_size)
    else:
        with pytest.raises(WebSocketDecodeError, match=error):
            decode_websocket_events(body, max_event_size=max_event_size)


# -- encode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "body"),
    [
        (
            [WebSocketEvent("TEXT", "Hello"), WebSocketEvent("TEXT", ""), WebSocketEvent("TEXT")],
            b"TEXT 5\r\nHello\r\nTEXT 0\r\n\r\nTEXT\r\n",
        ),
        ([WebSocketEvent("OPEN")], b"OPEN\r\n"),
        ([], b""),
        ([WebSocketEvent("BINARY", b"\x00" * 11)], b"BINARY b\r\n" + b"\x00" * 11 + b"\r\n"),
        ([WebSocketEvent("CLOSE", b"\x03\xe8")], b"CLOSE 2\r\n\x03\xe8\r\n"),
        ([WebSocketEvent("PONG", b"ping1")], b"PONG 5\r\nping1\r\n"),
        ([WebSocketEvent("DISCONNECT")], b"DISCONNECT\r\n"),
    ],
)
def test_encode(events, body):
    assert encode_websocket_events(events) == body


def test_encode_accepts_any_iterable():
    assert encode_websocket_events(WebSocketEvent(t) for t in ["OPEN", "PING"]) == (
        b"OPEN\r\nPING\r\n"
    )


def test_encode_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown WebSocket-over-HTTP event type 'HELLO'"):
        encode_websocket_events([WebSocketEvent("OPEN"), WebSocketEvent("HELLO")])


def test_encode_many_events_is_the_exact_concatenation():
    events = [WebSocketEvent("TEXT", f"message {n}" * (n % 7)) for n in range(1000)]
    expected = b"".join(
        b"TEXT %x\r\n%s\r\n" % (len(e.content or b""), e.content or b"") for e in events
    )
    assert encode_websocket_events(events) == expected


events_strategy = st.lists(
    st.builds(WebSocketEvent, st.sampled_from(EVENT_TYPES), st.none() | st.binary(max_size=300))
)


@given(events_strategy)
def test_decode_inverts_encode(events):
    assert decode_websocket_events(encode_websocket_events(events)) == events


@given(events_strategy)
def test_encode_inverts_decode(events):
    body = encode_websocket_events(events)
    assert encode_websocket_events(decode_websocket_events(body)) == body


@given(st.binary(max_size=200) | events_strategy.map(encode_websocket_events), st.data())
def test_decode_fails_only_with_a_decode_error(body, data):
    # Valid bodies cut short or with a byte changed: near misses, the hard cases.
    if body:
        cut = data.draw(st.integers(0, len(body) - 1))
        body = body[:cut] + data.draw(st.binary(max_size=1)) + body[cut + 1 :]
    try:
        events = decode_websocket_events(body)
    except WebSocketDecodeError:
        return
    assert all(event.type in EVENT_TYPES for event in events)


# -- control messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (None, {"type": "type"}),
        ({}, {"type": "type"}),
        ({"arg1": "val1", "arg2": "val2"}, {"type": "type", "arg1": "val1", "arg2": "val2"}),
        ({"type": "other", "channel": "c"}, {"type": "type", "channel": "c"}),
    ],
)
def test_websocket_control_message(args, message):
    assert json.loads(websocket_control_message("type", args)) == message


def test_websocket_control_message_is_compact_with_type_first():
    assert websocket_control_message("subscribe", {"channel": "foo"}) == (
        '{"type":"subscribe","channel":"foo"}'
    )
