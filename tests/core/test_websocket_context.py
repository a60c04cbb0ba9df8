from __future__ import annotations

import asyncio
import base64
import json
import re
from struct import pack

import pytest

from grip_asgi._errors import WebSocketDecodeError, WebSocketStateError
from grip_asgi._websocket import (
    WebSocketContext,
    WebSocketEvent,
    decode_websocket_events,
)

OPEN = WebSocketEvent("OPEN")
CONTENT_TYPE = ("Content-Type", "application/websocket-events")
GRIP_EXTENSION = ("Sec-WebSocket-Extensions", "grip")


def context(*events, meta=None, prefix=""):
    return WebSocketContext("conn-1", meta or {}, list(events), prefix)


def opened(*events, **kwargs):
    """A context for a request that opens the connection, already accepted."""
    ws = context(OPEN, *events, **kwargs)
    ws.accept()
    return ws


def body_events(ws):
    return decode_websocket_events(ws.to_response()[2])


def control_messages(ws):
    messages = []
    for event in ws.out_events:
        assert event.type == "TEXT"
        assert event.content is not None
        assert event.content.startswith(b"c:")
        messages.append(json.loads(event.content[2:]))
    return messages


# -- construction -----------------------------------------------------------------------------


def test_attributes():
    events = [WebSocketEvent("TEXT", b"hi")]
    ws = WebSocketContext("conn-1", {"User": "alice"}, events, "p-")
    assert ws.id == ws.connection_id == "conn-1"
    assert ws.meta == ws.orig_meta == {"user": "alice"}
    assert ws.meta is not ws.orig_meta
    assert ws.prefix == "p-"
    assert ws.in_events == events
    assert ws.out_events == []
    assert (ws.accepted, ws.closed, ws.disconnected) == (False, False, False)
    assert (ws.close_code, ws.close_reason, ws.subprotocol, ws.keep_alive_interval) == (
        None,
        None,
        None,
        None,
    )


def test_context_copies_its_inputs():
    events = [WebSocketEvent("TEXT", b"hi")]
    meta = {"user": "alice"}
    ws = WebSocketContext("conn-1", meta, events)
    events.clear()
    meta["user"] = "bob"
    ws.meta["user"] = "carol"
    assert ws.in_events == [WebSocketEvent("TEXT", b"hi")]
    assert ws.orig_meta == {"user": "alice"}
    assert meta == {"user": "bob"}


@pytest.mark.parametrize(
    ("events", "opening"),
    [
        ([OPEN], True),
        ([OPEN, WebSocketEvent("TEXT", b"x")], True),
        ([WebSocketEvent("TEXT", b"x"), OPEN], False),
        ([], False),
    ],
)
def test_is_opening(events, opening):
    assert context(*events).is_opening() is opening


# -- accept and reject ------------------------------------------------------------------------


def test_open_and_accept():
    ws = context(OPEN)
    assert ws.is_opening()
    assert not ws.can_recv()
    assert not ws.accepted
    ws.accept()
    assert ws.accepted
    assert ws.to_response() == (200, [CONTENT_TYPE, GRIP_EXTENSION], b"OPEN\r\n")


def test_accept_puts_open_first_and_adds_events_after_it():
    ws = context(OPEN, WebSocketEvent("PING", b"p"))
    assert not ws.can_recv()  # answers the PING before accept()
    ws.accept()
    ws.subscribe("foo")
    ws.send("welcome")
    assert body_events(ws) == [
        OPEN,
        WebSocketEvent("PONG", b"p"),
        WebSocketEvent("TEXT", b'c:{"type":"subscribe","channel":"foo"}'),
        WebSocketEvent("TEXT", b"m:welcome"),
    ]


def test_accept_with_subprotocol():
    ws = context(OPEN)
    ws.accept("chat")
    assert ws.subprotocol == "chat"
    assert ws.to_response()[1] == [
        CONTENT_TYPE,
        GRIP_EXTENSION,
        ("Sec-WebSocket-Protocol", "chat"),
    ]


@pytest.mark.parametrize("subprotocol", ["", "chat, superchat", "chat\r\nX-Evil: 1", "a b"])
def test_accept_rejects_bad_subprotocol(subprotocol):
    ws = context(OPEN)
    with pytest.raises(ValueError, match="subprotocol must be a token"):
        ws.accept(subprotocol)
    assert not ws.accepted


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda ws: None, None),
        (lambda ws: ws.accept(), "accept\\(\\) was already called"),
        (lambda ws: ws.reject(), "cannot accept\\(\\) after reject\\(\\)"),
    ],
)
def test_accept_states(setup, message):
    ws = context(OPEN)
    setup(ws)
    if message is None:
        ws.accept()
    else:
        with pytest.raises(WebSocketStateError, match=message):
            ws.accept()
    assert ws.out_events.count(OPEN) <= 1


@pytest.mark.parametrize("events", [[], [WebSocketEvent("TEXT", b"x")]])
def test_accept_and_reject_need_an_opening_request(events):
    ws = context(*events)
    with pytest.raises(WebSocketStateError, match="accept\\(\\) needs an opening request"):
        ws.accept()
    with pytest.raises(WebSocketStateError, match="reject\\(\\) needs an opening request"):
        ws.reject()


def test_reject_default():
    ws = context(OPEN)
    ws.reject()
    assert ws.to_response() == (403, [("Content-Type", "text/plain; charset=utf-8")], b"")


def test_reject_with_status_and_reason_discards_queued_events():
    ws = context(OPEN, WebSocketEvent("PING"))
    ws.can_recv()  # queues a PONG
    ws.meta["user"] = "alice"
    ws.keep_alive_interval = 30
    ws.reject(401, "log in first ✓")
    assert ws.to_response() == (
        401,
        [("Content-Type", "text/plain; charset=utf-8")],
        "log in first ✓".encode(),
    )


@pytest.mark.parametrize("status", [200, 302, 399, 600, True, 403.0, "403"])
def test_reject_validates_status(status):
    ws = context(OPEN)
    with pytest.raises(ValueError, match="reject\\(\\) status must be 400-599"):
        ws.reject(status)
    ws.accept()  # the failed reject() changed nothing


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda ws: ws.accept(), "cannot reject\\(\\) after accept\\(\\)"),
        (lambda ws: ws.reject(), "cannot reject\\(\\) after reject\\(\\)"),
    ],
)
def test_reject_states(setup, message):
    ws = context(OPEN)
    setup(ws)
    with pytest.raises(WebSocketStateError, match=message):
        ws.reject()


@pytest.mark.parametrize(
    "action",
    [
        lambda ws: ws.send("x"),
        lambda ws: ws.send_binary(b"x"),
        lambda ws: ws.send_control("{}"),
        lambda ws: ws.subscribe("foo"),
        lambda ws: ws.close(),
        lambda ws: ws.disconnect(),
    ],
)
def test_sending_on_an_opening_request_needs_accept(action):
    ws = context(OPEN)
    with pytest.raises(WebSocketStateError, match="before accept\\(\\) on an opening request"):
        action(ws)
    assert ws.out_events == []


def test_opening_request_without_accept_or_reject_answers_no_open():
    # Pushpin then fails the handshake, unless Keep-Alive-Interval defers it (spec §5.5).
    ws = context(OPEN)
    ws.keep_alive_interval = 20
    assert ws.to_response() == (200, [CONTENT_TYPE, ("Keep-Alive-Interval", "20")], b"")


# -- receiving --------------------------------------------------------------------------------


def test_recv_text_and_binary():
    ws = context(
        WebSocketEvent("TEXT", "héllo"),
        WebSocketEvent("BINARY", b"\xff\x00"),
        WebSocketEvent("TEXT", b""),
        WebSocketEvent("TEXT"),
        WebSocketEvent("BINARY", b""),
        WebSocketEvent("BINARY"),
    )
    assert not ws.is_opening()
    received = []
    while ws.can_recv():
        received.append(ws.recv())
    assert received == ["héllo", b"\xff\x00", "", "", b"", b""]
    assert [type(message) for message in received] == [str, bytes, str, str, bytes, bytes]


def test_recv_with_nothing_left():
    ws = context(OPEN)
    ws.accept()
    with pytest.raises(WebSocketStateError, match="recv\\(\\) has nothing left to read"):
        ws.recv()


def test_recv_invalid_utf8_text_is_a_decode_error():
    ws = context(WebSocketEvent("TEXT", b"ok \xff"))
    with pytest.raises(WebSocketDecodeError, match="TEXT message is not valid UTF-8") as exc:
        ws.recv()
    assert "at byte 3" in str(exc.value)


@pytest.mark.parametrize(
    ("content", "code", "reason"),
    [
        (pack(">H", 100), 100, ""),
        (b"\x03\xe8bye", 1000, "bye"),
        (b"\x0f\xa0" + "ciao ✓".encode(), 4000, "ciao ✓"),
        (None, None, None),
        (b"", None, None),
        (b"\x03", None, None),  # too short to hold a code
    ],
)
def test_recv_close(content, code, reason):
    ws = context(WebSocketEvent("CLOSE", content))
    assert not ws.is_opening()
    assert ws.can_recv()
    assert ws.recv() is None
    assert (ws.close_code, ws.close_reason) == (code, reason)
    assert not ws.can_recv()


def test_recv_close_reason_must_be_utf8():
    ws = context(WebSocketEvent("CLOSE", b"\x03\xe8\xc3"))
    with pytest.raises(WebSocketDecodeError, match="CLOSE reason is not valid UTF-8"):
        ws.recv()


def test_recv_disconnect():
    ws = context(WebSocketEvent("DISCONNECT"))
    assert ws.recv() is None
    assert ws.disconnected
    assert ws.close_code is None


def test_pings_are_answered_with_the_same_content_and_pongs_skipped():
    ws = context(
        WebSocketEvent("PING", b"ping1"),
        WebSocketEvent("PONG", b"pong"),
        WebSocketEvent("TEXT", b"a"),
        WebSocketEvent("PING"),
        OPEN,  # an OPEN after the first event is not a message
        WebSocketEvent("TEXT", b"b"),
        WebSocketEvent("PING", b"last"),
    )
    assert ws.recv() == "a"
    assert ws.out_events == [WebSocketEvent("PONG", b"ping1")]
    assert ws.recv() == "b"
    assert not ws.can_recv()
    assert body_events(ws) == [
        WebSocketEvent("PONG", b"ping1"),
        WebSocketEvent("PONG"),
        WebSocketEvent("PONG", b"last"),
    ]


def test_pings_are_not_answered_after_close():
    ws = context(WebSocketEvent("TEXT", b"a"), WebSocketEvent("PING", b"p"))
    assert ws.recv() == "a"
    ws.close()
    assert not ws.can_recv()
    assert [event.type for event in ws.out_events] == ["CLOSE"]


def test_iteration_stops_at_close():
    ws = context(
        WebSocketEvent("TEXT", b"a"),
        WebSocketEvent("BINARY", b"b"),
        WebSocketEvent("CLOSE", pack(">H", 1001)),
        WebSocketEvent("TEXT", b"after"),
    )
    assert list(ws) == ["a", b"b"]
    assert ws.close_code == 1001


def test_iteration_stops_when_nothing_is_left():
    ws = context(OPEN, WebSocketEvent("TEXT", b"a"))
    ws.accept()
    assert list(ws) == ["a"]
    assert list(ws) == []


def test_async_iteration():
    ws = context(
        WebSocketEvent("TEXT", b"a"),
        WebSocketEvent("PING", b"p"),
        WebSocketEvent("TEXT", b"b"),
        WebSocketEvent("DISCONNECT"),
    )

    async def collect():
        return [message async for message in ws]

    assert asyncio.run(collect()) == ["a", "b"]
    assert ws.disconnected
    assert ws.out_events == [WebSocketEvent("PONG", b"p")]


# -- sending ----------------------------------------------------------------------------------


def test_send_prefixes_messages_with_m():
    ws = context()
    assert not ws.is_opening()
    assert not ws.can_recv()
    ws.send(b"apple")
    ws.send("banana")
    ws.send_binary(b"cherry")
    ws.send_binary("date")
    assert ws.out_events == [
        WebSocketEvent("TEXT", b"m:apple"),
        WebSocketEvent("TEXT", b"m:banana"),
        WebSocketEvent("BINARY", b"m:cherry"),
        WebSocketEvent("BINARY", b"m:date"),
    ]
    # Not the opening request: the extension header belongs to the accepting reply only.
    assert ws.to_response() == (
        200,
        [CONTENT_TYPE],
        b"TEXT 7\r\nm:apple\r\nTEXT 8\r\nm:banana\r\n"
        b"BINARY 8\r\nm:cherry\r\nBINARY 6\r\nm:date\r\n",
    )


def test_send_control():
    ws = context()
    ws.send_control('{"type":"detach"}')
    assert ws.out_events == [WebSocketEvent("TEXT", b'c:{"type":"detach"}')]


@pytest.mark.parametrize(
    ("code", "reason", "content"),
    [
        (1000, "", b"\x03\xe8"),
        (4001, "bye ✓", b"\x0f\xa1" + "bye ✓".encode()),
        (1003, "x" * 123, b"\x03\xeb" + b"x" * 123),
        (4999, "", b"\x13\x87"),
    ],
)
def test_close(code, reason, content):
    ws = context()
    ws.close(code, reason)
    assert ws.closed
    assert ws.out_events == [WebSocketEvent("CLOSE", content)]


def test_close_default_code_is_1000():
    ws = opened()
    ws.close()
    assert body_events(ws) == [OPEN, WebSocketEvent("CLOSE", b"\x03\xe8")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 5000, 65535, True, None])
def test_close_rejects_invalid_codes(code):
    ws = context()
    with pytest.raises(ValueError, match="close code must be 1000-4999"):
        ws.close(code)
    assert not ws.closed
    ws.close()


def test_close_rejects_long_reason():
    ws = context()
    with pytest.raises(ValueError, match="close reason is 124 UTF-8 bytes, the limit is 123"):
        ws.close(1000, "é" * 62)


def test_disconnect():
    ws = context()
    ws.disconnect()
    assert ws.out_events == [WebSocketEvent("DISCONNECT")]
    assert not ws.closed


@pytest.mark.parametrize(
    ("end", "ended_by"),
    [(lambda ws: ws.close(), "close()"), (lambda ws: ws.disconnect(), "disconnect()")],
)
@pytest.mark.parametrize(
    ("action", "action_name"),
    [
        (lambda ws: ws.send("x"), "send()"),
        (lambda ws: ws.send_binary(b"x"), "send_binary()"),
        (lambda ws: ws.send_control("{}"), "send a control message"),
        (lambda ws: ws.subscribe("foo"), "send a control message"),
        (lambda ws: ws.unsubscribe("foo"), "send a control message"),
        (lambda ws: ws.close(), "close()"),
        (lambda ws: ws.disconnect(), "disconnect()"),
    ],
)
def test_nothing_can_be_sent_after_the_end(end, ended_by, action, action_name):
    ws = context()
    end(ws)
    sent = list(ws.out_events)
    with pytest.raises(
        WebSocketStateError, match=re.escape(f"cannot {action_name} after {ended_by}")
    ):
        action(ws)
    assert ws.out_events == sent


def test_nothing_can_be_sent_after_reject():
    ws = context(OPEN)
    ws.reject()
    with pytest.raises(WebSocketStateError, match="cannot send\\(\\) after reject\\(\\)"):
        ws.send("x")


# -- control messages -------------------------------------------------------------------------


def test_subscribe_and_unsubscribe():
    ws = context()
    ws.subscribe("foo")
    ws.unsubscribe("bar")
    assert ws.out_events == [
        WebSocketEvent("TEXT", b'c:{"type":"subscribe","channel":"foo"}'),
        WebSocketEvent("TEXT", b'c:{"type":"unsubscribe","channel":"bar"}'),
    ]


def test_subscribe_with_filters():
    ws = context()
    ws.subscribe("room", ["skip-self", "require-sub"])
    ws.subscribe("news", ())
    assert control_messages(ws) == [
        {"type": "subscribe", "channel": "room", "filters": ["skip-self", "require-sub"]},
        {"type": "subscribe", "channel": "news"},
    ]


def test_subscribe_rejects_a_str_as_filters():
    with pytest.raises(TypeError, match="filters must be a sequence of filter names"):
        context().subscribe("room", "skip-self")


def test_channel_prefix_applies_to_subscribe_and_unsubscribe():
    ws = context(prefix="app1-")
    ws.subscribe("foo")
    ws.unsubscribe("foo")
    assert [m["channel"] for m in control_messages(ws)] == ["app1-foo", "app1-foo"]


@pytest.mark.parametrize("method", ["subscribe", "unsubscribe"])
def test_empty_channel_is_rejected(method):
    ws = context(prefix="p-")
    with pytest.raises(ValueError, match="channel name must not be empty"):
        getattr(ws, method)("")
    assert ws.out_events == []


def test_detach_and_flush_delayed():
    ws = context()
    ws.detach()
    ws.flush_delayed()
    assert control_messages(ws) == [{"type": "detach"}, {"type": "flush-delayed"}]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ("ka",),
            {},
            {"type": "keep-alive", "content": "ka", "timeout": 55, "mode": "idle"},
        ),
        (
            ("ka",),
            {"timeout": 20, "mode": "interval", "message_type": "ping"},
            {
                "type": "keep-alive",
                "content": "ka",
                "message-type": "ping",
                "timeout": 20,
                "mode": "interval",
            },
        ),
        (
            (b"\x00\xff",),
            {},
            {
                "type": "keep-alive",
                "content-bin": base64.b64encode(b"\x00\xff").decode(),
                "message-type": "binary",
                "timeout": 55,
                "mode": "idle",
            },
        ),
        (
            (b"ok",),
            {"message_type": "pong"},
            {
                "type": "keep-alive",
                "content-bin": "b2s=",
                "message-type": "pong",
                "timeout": 55,
                "mode": "idle",
            },
        ),
        ((None,), {}, {"type": "keep-alive"}),
    ],
)
def test_keep_alive(args, kwargs, message):
    ws = context()
    ws.keep_alive(*args, **kwargs)
    assert control_messages(ws) == [message]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "sometimes"}, ValueError, "mode must be 'idle' or 'interval'"),
        ({"message_type": "close"}, ValueError, "message_type must be text, binary, ping or pong"),
        ({"timeout": 0}, ValueError, "timeout must be at least 1, got 0"),
        ({"timeout": -5}, ValueError, "timeout must be at least 1"),
        ({"timeout": 1.5}, TypeError, "timeout must be an int, got float"),
        ({"timeout": True}, TypeError, "timeout must be an int, got bool"),
    ],
)
def test_keep_alive_validates(kwargs, error, match):
    ws = context()
    with pytest.raises(error, match=match):
        ws.keep_alive("ka", **kwargs)
    assert ws.out_events == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("later",), {}, {"type": "send-delayed", "content": "later", "timeout": 1}),
        (
            (b"\x01",),
            {"timeout": 5},
            {"type": "send-delayed", "content-bin": "AQ==", "message-type": "binary", "timeout": 5},
        ),
        (
            ("t",),
            {"message_type": "text"},
            {"type": "send-delayed", "content": "t", "message-type": "text", "timeout": 1},
        ),
    ],
)
def test_send_delayed(args, kwargs, message):
    ws = context()
    ws.send_delayed(*args, **kwargs)
    assert control_messages(ws) == [message]


def test_send_delayed_validates_timeout():
    with pytest.raises(ValueError, match="timeout must be at least 1"):
        context().send_delayed("x", timeout=0)


def test_set_subscription_meta():
    ws = context()
    ws.set_subscription_meta("user", "alice")
    ws.set_subscription_meta("user", None)
    assert control_messages(ws) == [
        {"type": "set-meta", "name": "user", "value": "alice"},
        {"type": "set-meta", "name": "user"},
    ]
    # The subscription meta is not the connection meta.
    assert ws.to_response()[1] == [CONTENT_TYPE]


def test_set_subscription_meta_rejects_empty_name():
    with pytest.raises(ValueError, match="meta name must not be empty"):
        context().set_subscription_meta("", "x")


def test_control_messages_keep_non_ascii_text_intact():
    ws = context()
    ws.subscribe("café")
    assert control_messages(ws) == [{"type": "subscribe", "channel": "café"}]


# -- the reply --------------------------------------------------------------------------------


def test_meta_diff_becomes_set_meta_headers():
    ws = context(meta={"Keep": "same", "change": "old", "drop": "x"})
    ws.meta["change"] = "new"
    ws.meta["Added"] = "value é€\tx"
    del ws.meta["drop"]
    status, headers, body = ws.to_response()
    assert (status, body) == (200, b"")
    assert headers == [
        CONTENT_TYPE,
        ("Set-Meta-change", "new"),
        ("Set-Meta-added", "value é€\tx"),
        ("Set-Meta-drop", ""),
    ]


def test_unchanged_meta_adds_no_headers():
    ws = context(meta={"user": "alice"})
    ws.meta["user"] = "alice"
    assert ws.to_response()[1] == [CONTENT_TYPE]


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("bad name", "v", "meta name must be a header token, got 'bad name'"),
        ("", "v", "meta name must be a header token"),
        ("user", "a\r\nX-Evil: 1", "meta 'user' has a value that cannot be a header"),
        ("user", "nul\0", "meta 'user' has a value that cannot be a header"),
        ("user", "del\x7f", "meta 'user' has a value that cannot be a header"),
    ],
)
def test_meta_that_cannot_be_a_header_is_rejected(name, value, match):
    ws = context()
    ws.meta[name] = value
    with pytest.raises(ValueError, match=match):
        ws.to_response()


def test_keep_alive_interval():
    ws = context()
    ws.keep_alive_interval = 25
    assert ws.keep_alive_interval == 25
    assert ws.to_response()[1] == [CONTENT_TYPE, ("Keep-Alive-Interval", "25")]
    ws.keep_alive_interval = None
    assert ws.to_response()[1] == [CONTENT_TYPE]


@pytest.mark.parametrize(
    ("seconds", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_keep_alive_interval_is_validated(seconds, error):
    ws = context()
    with pytest.raises(error, match="keep_alive_interval must be"):
        ws.keep_alive_interval = seconds
    assert ws.keep_alive_interval is None


def test_extension_header_only_on_the_accepting_reply():
    first = opened()
    later = context(WebSocketEvent("TEXT", b"hi"))
    later.send("hi")
    assert GRIP_EXTENSION in first.to_response()[1]
    assert GRIP_EXTENSION not in later.to_response()[1]


def test_content_type_is_exact():
    ws = opened()
    headers = dict(ws.to_response()[1])
    assert headers["Content-Type"] == "application/websocket-events"
    assert "Content-Length" not in headers


@pytest.mark.parametrize(
    ("content", "echo"),
    [
        (pack(">H", 1000) + b"bye", WebSocketEvent("CLOSE", pack(">H", 1000) + b"bye")),
        (pack(">H", 4001), WebSocketEvent("CLOSE", pack(">H", 4001))),
        (None, WebSocketEvent("CLOSE")),
        (b"\x03", WebSocketEvent("CLOSE")),
    ],
)
def test_client_close_is_echoed(content, echo):
    ws = context(WebSocketEvent("TEXT", b"last"), WebSocketEvent("CLOSE", content))
    assert list(ws) == ["last"]
    ws.send("goodbye")
    assert body_events(ws) == [WebSocketEvent("TEXT", b"m:goodbye"), echo]
    assert not ws.closed
    assert len(ws.out_events) == 1  # to_response() leaves the context as it was


def test_client_close_is_echoed_even_when_not_read():
    ws = context(WebSocketEvent("TEXT", b"a"), WebSocketEvent("CLOSE", pack(">H", 1001)))
    assert body_events(ws) == [WebSocketEvent("CLOSE", pack(">H", 1001))]


@pytest.mark.parametrize(
    ("end", "events"),
    [
        (lambda ws: ws.close(4000, "done"), [WebSocketEvent("CLOSE", b"\x0f\xa0done")]),
        (lambda ws: ws.disconnect(), [WebSocketEvent("DISCONNECT")]),
    ],
)
def test_client_close_is_not_echoed_when_the_handler_ended_the_connection(end, events):
    ws = context(WebSocketEvent("CLOSE", pack(">H", 1000)))
    assert ws.recv() is None
    end(ws)
    assert body_events(ws) == events


def test_to_response_is_repeatable():
    ws = opened(WebSocketEvent("CLOSE", pack(">H", 1000)), meta={"a": "1"})
    ws.meta["a"] = "2"
    assert ws.to_response() == ws.to_response()


# -- a whole handler, as a ported gripcontrol handler would be written ------------------------


def echo_handler(ws):
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")
    while ws.can_recv():
        message = ws.recv()
        if message is None:
            ws.close()
            break
        ws.send(message)


def test_echo_handler_over_a_connection_lifetime():
    opening = context(OPEN, prefix="p:")
    echo_handler(opening)
    assert opening.to_response() == (
        200,
        [CONTENT_TYPE, GRIP_EXTENSION],
        b'OPEN\r\nTEXT 29\r\nc:{"type":"subscribe","channel":"p:room"}\r\n',
    )

    chatting = context(*decode_websocket_events(b"TEXT 2\r\nhi\r\nPING 5\r\nping1\r\n"))
    echo_handler(chatting)
    assert chatting.to_response() == (
        200,
        [CONTENT_TYPE],
        b"TEXT 4\r\nm:hi\r\nPONG 5\r\nping1\r\n",
    )

    closing = context(WebSocketEvent("CLOSE", pack(">H", 1001)))
    echo_handler(closing)
    assert closing.close_code == 1001
    assert closing.to_response()[2] == b"CLOSE 2\r\n\x03\xe8\r\n"
