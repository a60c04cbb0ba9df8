"""Publish formats and items: their JSON (spec §4.2) and their validation."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from grip_asgi._publish import (
    HttpResponseFormat,
    HttpStreamFormat,
    Item,
    WebSocketMessageFormat,
    sse_event,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        # http-response: a long-poll's reply (Pushpin publishformattest: body alone is enough).
        (HttpResponseFormat(body="hi\n"), {"body": "hi\n"}),
        (HttpResponseFormat(body=""), {"body": ""}),
        (HttpResponseFormat(body=b"\xff\x00"), {"body-bin": b64(b"\xff\x00")}),
        (
            HttpResponseFormat(201, "Made", {"X-A": "1"}, "ok", ["f1", "f2"]),
            {
                "code": 201,
                "reason": "Made",
                "headers": {"X-A": "1"},
                "body": "ok",
                "content-filters": ["f1", "f2"],
            },
        ),
        (
            HttpResponseFormat(headers=[("X-A", "1"), ("X-B", "2")], body="x"),
            {"headers": {"X-A": "1", "X-B": "2"}, "body": "x"},
        ),
        (
            HttpResponseFormat(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], body="x"),
            {"headers": [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]], "body": "x"},
        ),
        (HttpResponseFormat(body="x", action="send"), {"body": "x"}),
        (HttpResponseFormat(action="hint"), {"action": "hint"}),
        # http-stream: appended to held streams.
        (HttpStreamFormat("hi\n"), {"content": "hi\n"}),
        (HttpStreamFormat(b"\x00\x01"), {"content-bin": b64(b"\x00\x01")}),
        (
            HttpStreamFormat("x", content_filters=["build-id"]),
            {"content": "x", "content-filters": ["build-id"]},
        ),
        (HttpStreamFormat(close=True), {"action": "close"}),
        (HttpStreamFormat(action="close"), {"action": "close"}),
        (HttpStreamFormat(close=True, action="close"), {"action": "close"}),
        (HttpStreamFormat(action="hint"), {"action": "hint"}),
        # ws-message: text for str, binary for bytes, or an explicit frame type.
        (WebSocketMessageFormat("hi"), {"content": "hi"}),
        (WebSocketMessageFormat(b"\xff"), {"content-bin": b64(b"\xff")}),
        (WebSocketMessageFormat("hé", binary=True), {"content-bin": b64("hé".encode())}),
        (WebSocketMessageFormat(b"\xff", binary=True), {"content-bin": b64(b"\xff")}),
        (WebSocketMessageFormat("x", type="binary"), {"content-bin": b64(b"x")}),
        (WebSocketMessageFormat(b"hi", type="text"), {"content-bin": b64(b"hi"), "type": "text"}),
        (WebSocketMessageFormat(type="ping"), {"type": "ping"}),
        (WebSocketMessageFormat("p1", type="pong"), {"content": "p1", "type": "pong"}),
        (WebSocketMessageFormat(b"p", type="ping"), {"content-bin": b64(b"p"), "type": "ping"}),
        (
            WebSocketMessageFormat("x", content_filters=("var-subst",)),
            {"content": "x", "content-filters": ["var-subst"]},
        ),
        (WebSocketMessageFormat(action="close"), {"action": "close"}),
        (WebSocketMessageFormat(action="close", code=1001), {"action": "close", "code": 1001}),
        (
            WebSocketMessageFormat(action="close", code=4001, reason="bye-pub"),
            {"action": "close", "code": 4001, "reason": "bye-pub"},
        ),
        (WebSocketMessageFormat(action="refresh"), {"action": "refresh"}),
    ],
)
def test_format_to_dict(fmt: Any, expected: dict[str, Any]) -> None:
    assert fmt.to_dict() == expected


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        (HttpResponseFormat(body=""), "http-response"),
        (HttpStreamFormat(""), "http-stream"),
        (WebSocketMessageFormat(""), "ws-message"),
    ],
)
def test_format_name(fmt: Any, name: str) -> None:
    assert fmt.name() == name


R, S, W = HttpResponseFormat, HttpStreamFormat, WebSocketMessageFormat


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [
        (R, {}, ValueError, "needs a body"),
        (R, {"code": 204}, ValueError, "needs a body"),
        (R, {"code": 99, "body": ""}, ValueError, "3-digit"),
        (R, {"code": 1000, "body": ""}, ValueError, "3-digit"),
        (R, {"body": "", "action": "close"}, ValueError, "'send' or 'hint'"),
        (R, {"body": "x", "action": "hint"}, ValueError, "carries no"),
        (R, {"headers": {"a": 1}, "body": ""}, TypeError, "str name/value"),
        (R, {"headers": [("a",)], "body": ""}, TypeError, "str name/value"),
        (R, {"body": "", "content_filters": "f"}, TypeError, "not a str"),
        (S, {}, ValueError, "needs content"),
        (S, {"action": "send"}, ValueError, "needs content"),
        (S, {"content": "x", "close": True}, ValueError, "carries no content"),
        (S, {"content": "x", "action": "hint"}, ValueError, "carries no content"),
        (S, {"close": True, "action": "hint"}, ValueError, "contradicts"),
        (S, {"content": "x", "action": "refresh"}, ValueError, "'send', 'hint'"),
        (W, {}, ValueError, "needs content"),
        (W, {"binary": True}, ValueError, "needs content"),
        (W, {"type": "text"}, ValueError, "needs content"),
        (W, {"content": "x", "action": "hint"}, ValueError, "'send', 'close'"),
        (W, {"content": "x", "type": "close"}, ValueError, "type must be"),
        (W, {"content": "x", "binary": True, "type": "text"}, ValueError, "contradicts"),
        (W, {"content": "x", "action": "close"}, ValueError, "carries no content"),
        (W, {"action": "refresh", "type": "ping"}, ValueError, "carries no"),
        (W, {"action": "close", "binary": True}, ValueError, "carries no"),
        (W, {"content": "x", "code": 1000}, ValueError, "need action='close'"),
        (W, {"action": "refresh", "reason": "r"}, ValueError, "need action"),
        (W, {"action": "close", "code": 999}, ValueError, "not a close code"),
        (W, {"action": "close", "code": 5000}, ValueError, "not a close code"),
        (W, {"action": "close", "code": 1005}, ValueError, "not a close code"),
        (W, {"action": "close", "reason": "r"}, ValueError, "needs a close code"),
        (W, {"action": "close", "code": 1000, "reason": "é" * 62}, ValueError, "123 UTF-8 bytes"),
    ],
)
def test_format_validation(
    cls: type[Any], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_close_reason_at_the_limit_is_accepted() -> None:
    fmt = WebSocketMessageFormat(action="close", code=1000, reason="r" * 123)
    assert fmt.to_dict()["reason"] == "r" * 123


def test_formats_are_immutable_and_copy_their_inputs() -> None:
    headers = {"X-A": "1"}
    filters = ["f1"]
    fmt = HttpResponseFormat(headers=headers, body="x", content_filters=filters)
    headers["X-B"] = "2"
    filters.append("f2")
    assert fmt.to_dict() == {"headers": {"X-A": "1"}, "body": "x", "content-filters": ["f1"]}
    with pytest.raises(AttributeError):
        fmt.body = "y"  # type: ignore[misc]
    assert hash(fmt) == hash(
        HttpResponseFormat(headers={"X-A": "1"}, body="x", content_filters=["f1"])
    )


@pytest.mark.parametrize(
    ("kwargs", "content"),
    [
        ({"data": "hi"}, "data: hi\n\n"),
        ({"data": "hi", "event": "message"}, "event: message\ndata: hi\n\n"),
        ({"data": "a\nb", "event": "x", "id": "7"}, "event: x\nid: 7\ndata: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc\n"}, "data: a\ndata: b\ndata: c\ndata: \n\n"),
        ({"data": "", "retry": 3000}, "retry: 3000\ndata: \n\n"),
        ({"data": "{}", "id": "", "retry": 0}, "id: \nretry: 0\ndata: {}\n\n"),
    ],
)
def test_sse_event_is_an_http_stream_in_sse_framing(kwargs: Any, content: str) -> None:
    fmt = sse_event(**kwargs)
    assert isinstance(fmt, HttpStreamFormat)
    assert fmt.to_dict() == {"content": content}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "a\nb"}, "SSE event must not contain CR, LF or NUL"),
        ({"id": "1\r"}, "SSE id must not contain CR, LF or NUL"),
        ({"id": "1\0"}, "SSE id must not contain CR, LF or NUL"),
        ({"retry": -1}, "SSE retry must not be negative"),
    ],
)
def test_sse_event_refuses_fields_that_would_break_the_stream(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sse_event("x", **kwargs)


def test_sse_event_passes_content_filters() -> None:
    fmt = sse_event("x", content_filters=["build-id"])
    assert fmt.to_dict()["content-filters"] == ["build-id"]


def test_item_to_dict_with_every_field() -> None:
    item = Item(
        [HttpResponseFormat(body="hi\n"), HttpStreamFormat("hi\n"), WebSocketMessageFormat("hi")],
        id="2",
        prev_id="1",
        meta={"sender": "alice"},
        no_seq=True,
    )
    # The example item of spec §4.2, plus meta and no-seq.
    assert item.to_dict("test") == {
        "channel": "test",
        "id": "2",
        "prev-id": "1",
        "formats": {
            "http-response": {"body": "hi\n"},
            "http-stream": {"content": "hi\n"},
            "ws-message": {"content": "hi"},
        },
        "meta": {"sender": "alice"},
        "no-seq": True,
    }


def test_item_with_one_format_and_defaults() -> None:
    item = Item(WebSocketMessageFormat("hi"))
    assert item.formats == (WebSocketMessageFormat("hi"),)
    assert (item.id, item.prev_id, item.meta, item.no_seq) == (None, None, None, False)
    assert item.to_dict("c") == {"channel": "c", "formats": {"ws-message": {"content": "hi"}}}


def test_item_leaves_out_empty_meta() -> None:
    assert "meta" not in Item(HttpStreamFormat("x"), meta={}).to_dict("c")


def test_item_copies_meta() -> None:
    meta = {"sender": "a"}
    item = Item(HttpStreamFormat("x"), meta=meta)
    meta["sender"] = "b"
    assert item.to_dict("c")["meta"] == {"sender": "a"}


@pytest.mark.parametrize(
    ("formats", "kwargs", "error", "message"),
    [
        ([], {}, ValueError, "at least one format"),
        ([S("a"), sse_event("b")], {}, ValueError, "only one 'http-stream'"),
        (["text"], {}, TypeError, "expected a publish format, got str"),
        (S("x"), {"id": 1}, TypeError, "id must be a str"),
        (S("x"), {"prev_id": b"1"}, TypeError, "prev_id must be a str"),
        (S("x"), {"meta": {"n": 1}}, TypeError, "meta keys and values"),
    ],
)
def test_item_validation(
    formats: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Item(formats, **kwargs)
