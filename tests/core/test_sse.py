from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grip_asgi._sse import (
    SSE_CONTENT_TYPE,
    SSE_KEEP_ALIVE,
    encode_sse_event,
    parse_last_event_id,
    sse_comment,
)


def parse_sse(stream: str) -> list[dict[str, str]]:
    """A small SSE parser after WHATWG HTML §9.2.6, for checking what a client would see."""
    events = []
    data: list[str] = []
    fields: dict[str, str] = {}
    for line in stream.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data or fields:
                events.append({**fields, **({"data": "\n".join(data)} if data else {})})
            data, fields = [], {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    return events


def test_constants():
    assert SSE_CONTENT_TYPE == "text/event-stream"
    assert SSE_KEEP_ALIVE == ":\n\n"


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"data": "hello"}, "data: hello\n\n"),
        ({"data": ""}, "data: \n\n"),
        ({"data": "a\nb"}, "data: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc\n"}, "data: a\ndata: b\ndata: c\ndata: \n\n"),
        # Only CR and LF end an SSE line; other Unicode line breaks are data.
        ({"data": "a\x0bb\u2028c"}, "data: a\x0bb\u2028c\n\n"),
        (
            {"data": "x", "event": "update", "id": "42", "retry": 3000, "comment": "hi"},
            ": hi\nevent: update\nid: 42\nretry: 3000\ndata: x\n\n",
        ),
        ({"event": "ping"}, "event: ping\n\n"),
        ({"id": ""}, "id: \n\n"),
        ({"retry": 0}, "retry: 0\n\n"),
        ({"comment": ""}, ":\n\n"),
        ({"comment": "two\nlines", "data": "d"}, ": two\n: lines\ndata: d\n\n"),
        ({"data": "with: colon"}, "data: with: colon\n\n"),
    ],
)
def test_encode_sse_event(kwargs, text):
    assert encode_sse_event(**kwargs) == text


def test_encode_sse_event_takes_data_positionally():
    assert encode_sse_event("hi", id="1") == "id: 1\ndata: hi\n\n"


@pytest.mark.parametrize("field", ["event", "id"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nid: forged", "nul\0"])
def test_encode_sse_event_rejects_line_breaks_and_nul_in_fields(field, bad):
    with pytest.raises(ValueError, match=f"SSE {field} must not contain CR, LF or NUL"):
        encode_sse_event("x", **{field: bad})


@pytest.mark.parametrize(
    ("retry", "error", "match"),
    [
        (-1, ValueError, "SSE retry must not be negative, got -1"),
        (1.5, TypeError, "SSE retry must be an int, got float"),
        (True, TypeError, "SSE retry must be an int, got bool"),
        ("100", TypeError, "SSE retry must be an int, got str"),
    ],
)
def test_encode_sse_event_validates_retry(retry, error, match):
    with pytest.raises(error, match=match):
        encode_sse_event("x", retry=retry)


def test_encode_sse_event_needs_something_to_encode():
    with pytest.raises(ValueError, match="an SSE event needs data, event, id, retry or comment"):
        encode_sse_event()


@given(
    data=st.text(),
    event=st.none() | st.text().filter(lambda s: not set(s) & set("\r\n\0")),
    id=st.none() | st.text().filter(lambda s: not set(s) & set("\r\n\0")),
)
def test_a_client_reads_back_what_was_encoded(data, event, id):
    encoded = encode_sse_event(data, event=event, id=id, comment="c")
    assert encoded.endswith("\n\n")
    expected = {"data": data.replace("\r\n", "\n").replace("\r", "\n")}
    if event is not None:
        expected["event"] = event
    if id is not None:
        expected["id"] = id
    assert parse_sse(encoded) == [expected]


@pytest.mark.parametrize(
    ("text", "comment"),
    [
        ("", ":\n\n"),
        ("keep-alive", ": keep-alive\n\n"),
        ("a\r\nb\rc\n", ": a\n: b\n: c\n:\n\n"),
    ],
)
def test_sse_comment(text, comment):
    assert sse_comment(text) == comment
    assert parse_sse(comment) == []


def test_sse_comment_default_is_the_keep_alive():
    assert sse_comment() == SSE_KEEP_ALIVE


@pytest.mark.parametrize(
    ("value", "last_id"),
    [
        (None, None),
        ("", None),
        ("  \t", None),
        ("42", "42"),
        (" 42\t", "42"),
        ("a b", "a b"),
        ("bad\0id", None),
        ("évent-7", "évent-7"),
    ],
)
def test_parse_last_event_id(value, last_id):
    assert parse_last_event_id(value) == last_id
