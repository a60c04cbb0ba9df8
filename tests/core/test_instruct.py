from __future__ import annotations

import json
from collections.abc import Callable
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grip_asgi._instruct import (
    Channel,
    GripInstruct,
    KeepAlive,
    KeepAliveMode,
    create_grip_channel_header,
    parse_grip_channel,
    parse_grip_feature,
    parse_grip_last,
    parse_instruct_headers,
    parse_keep_alive,
    parse_params_list,
    parse_set_meta,
)

CONTROL_CHARS = "".join(map(chr, range(0x20))) + "\x7f"
GRIP_FEATURE_1_36 = (
    "status, session, link:next, filter:skip-self, filter:skip-users, filter:require-sub,"
    " filter:build-id, filter:var-subst"
)


# --- Builder vectors (spec §7.3, js-grip http.test.ts and GripInstruct.test.ts) ---


def test_keep_alive_str_vector() -> None:
    assert KeepAlive("foo", 100).to_header() == "foo; format=cstring; timeout=100"


def test_keep_alive_bytes_vector() -> None:
    assert KeepAlive(b"foo", 100).to_header() == "Zm9v; format=base64; timeout=100"


def test_meta_vector() -> None:
    instruct = GripInstruct().set_meta("foo", "bar").set_meta("bar", '"quoted string"')
    assert instruct.to_headers() == [("Grip-Set-Meta", 'foo="bar", bar="\\"quoted string\\""')]


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (None, "<http://example.com/path/>; rel=next"),
        (100, "<http://example.com/path/>; rel=next; timeout=100"),
    ],
)
def test_next_link_vector(timeout: int | None, expected: str) -> None:
    instruct = GripInstruct().set_next_link("http://example.com/path/", timeout)
    assert instruct.to_headers() == [("Grip-Link", expected)]


def test_channel_vector() -> None:
    channels = [Channel("channel1", "prev-id1"), Channel("channel2", "prev-id2")]
    expected = "channel1; prev-id=prev-id1, channel2; prev-id=prev-id2"
    assert create_grip_channel_header(channels) == expected


# --- Keep-alive encoding (landscape D3, D4; spec §8.1, §8.2) ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # D3: django-grip wrote three backslashes for one.
        ("a\\b", "a\\\\b; format=cstring; timeout=55"),
        ("ping\n", "ping\\n; format=cstring; timeout=55"),
        ("\r\n", "\\r\\n; format=cstring; timeout=55"),
        # Pushpin drops "\t", so a tab must travel as \x09.
        ("a\tb", "a\\x09b; format=cstring; timeout=55"),
        # D4: a str with control characters raised TypeError in django-grip.
        ("\x01\x1f\x7f", "\\x01\\x1f\\x7f; format=cstring; timeout=55"),
        # Pushpin trims the data, so edge spaces are escaped.
        (" a b ", "\\x20a b\\x20; format=cstring; timeout=55"),
        (" ", "\\x20; format=cstring; timeout=55"),
        # Commas and quotes are safe: this header is neither split nor quote-parsed.
        ('say "hi", bye', 'say "hi", bye; format=cstring; timeout=55'),
        # ";" would end the data, so it falls back to base64.
        ("a;b", "YTti; format=base64; timeout=55"),
        ("café", "Y2Fmw6k=; format=base64; timeout=55"),
        # D4: bytes went out as "b'AQI='".
        (b"\x01\x02", "AQI=; format=base64; timeout=55"),
        (b"\xff", "/w==; format=base64; timeout=55"),
    ],
)
def test_keep_alive_encoding(data: str | bytes, expected: str) -> None:
    assert KeepAlive(data).to_header() == expected


@pytest.mark.parametrize("mode", ["idle", "interval"])
def test_keep_alive_mode_is_appended_when_given(mode: KeepAliveMode) -> None:
    header = KeepAlive(":\n\n", 20, mode).to_header()
    assert header == f":\\n\\n; format=cstring; timeout=20; mode={mode}"


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("",), ValueError, "must not be empty"),
        ((b"",), ValueError, "must not be empty"),
        ((1,), TypeError, "str or bytes"),
        (("x", 0), ValueError, "at least 1"),
        (("x", 1.5), TypeError, "must be an int"),
        (("x", 5, "sometimes"), ValueError, "'idle' or 'interval'"),
    ],
)
def test_keep_alive_validation(
    args: tuple[object, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        KeepAlive(*args)  # type: ignore[arg-type]


# --- Keep-alive parsing (Pushpin instructtest.cpp streamHoldKeepAlive) ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ping1\\n; timeout=10", KeepAlive(b"ping1\\n", 10)),
        ("ping2\\n; format=cstring", KeepAlive(b"ping2\n", 55)),
        ("cGluZzMK; format=base64", KeepAlive(b"ping3\n", 55)),
        ("ping4\\n; mode=interval", KeepAlive(b"ping4\\n", 55, "interval")),
        # Observed on Pushpin 1.36: unknown escapes vanish with their backslash.
        ("A\\tB\\x41\\\\Z\\n; format=cstring", KeepAlive(b"ABA\\Z\n", 55)),
        ("\\XAB\\xab; format=cstring", KeepAlive(b"AB\xab", 55)),
        ("x; mode=idle", KeepAlive(b"x", 55, "idle")),
        ("x; mode=", KeepAlive(b"x", 55)),
        ("x; format=raw; timeout=0", KeepAlive(b"x", 1)),
        ("x; FORMAT=cstring; Timeout=7; MODE=interval", KeepAlive(b"x", 7, "interval")),
        ("  a, b  ", KeepAlive(b"a, b", 55)),
    ],
)
def test_parse_keep_alive(value: str, expected: KeepAlive) -> None:
    assert parse_keep_alive(value) == expected


@pytest.mark.parametrize("value", ["", 'x; format="cstring'])
def test_parse_keep_alive_returns_none_when_pushpin_ignores_it(value: str) -> None:
    assert parse_keep_alive(value) is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("; timeout=5", "must not be empty"),
        ("x; format=hex", "no such Grip-Keep-Alive format 'hex'"),
        ("x; format=CSTRING", "no such Grip-Keep-Alive format"),
        ("x; mode=sometimes", "no such Grip-Keep-Alive mode"),
        ("x; timeout=soon", "non-negative integer"),
        ("x; timeout=-1", "non-negative integer"),
        ("a\\; format=cstring", "ends with a backslash"),
        ("a\\x4; format=cstring", "bad \\\\x escape"),
        ("a\\xzz; format=cstring", "bad \\\\x escape"),
        ("\\t; format=cstring", "decodes to nothing"),
        ("!!!; format=base64", "not valid base64"),
    ],
)
def test_parse_keep_alive_errors(value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_keep_alive(value)


# --- Parsing instructs as Pushpin does (instructtest.cpp) ---


def test_parse_no_hold() -> None:
    headers = [("Content-Type", "text/plain"), ("Grip-Channel", "test")]
    instruct = parse_instruct_headers(headers)
    assert instruct.hold is None
    assert instruct.channels == [Channel("test")]
    assert instruct.status is None


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [("404", 404, None), ("404 Nothing To See Here", 404, "Nothing To See Here"), ("", None, None)],
)
def test_parse_status(value: str, code: int | None, reason: str | None) -> None:
    instruct = parse_instruct_headers([("Grip-Channel", "test"), ("Grip-Status", value)])
    assert (instruct.status, instruct.status_reason) == (code, reason)


def test_parse_response_hold() -> None:
    headers = [
        ("Content-Type", "text/plain"),
        ("Grip-Hold", "response"),
        ("Grip-Channel", "apple"),
        ("Grip-Channel", "banana, cherry"),
        ("Grip-Timeout", "120"),
        ("Grip-Set-Meta", "foo=bar, bar=baz"),
    ]
    instruct = parse_instruct_headers(headers)
    assert instruct.hold == "response"
    assert [c.name for c in instruct.channels] == ["apple", "banana", "cherry"]
    assert instruct.timeout == 120
    assert instruct.meta == {"foo": "bar", "bar": "baz"}


def test_parse_response_hold_channel_params() -> None:
    headers = [
        ("Grip-Hold", "response"),
        ("Grip-Channel", "apple; prev-id=item1; filter=f1"),
        ("Grip-Channel", "banana; filter=f2, cherry; filter=f1; filter=f2"),
    ]
    assert parse_instruct_headers(headers).channels == [
        Channel("apple", "item1", ["f1"]),
        Channel("banana", None, ["f2"]),
        Channel("cherry", None, ["f1", "f2"]),
    ]


def test_parse_stream_hold_with_keep_alive() -> None:
    headers = [
        ("grip-hold", "stream"),
        ("GRIP-CHANNEL", "test"),
        ("Grip-Keep-Alive", "ping2\\n; format=cstring"),
        ("Grip-Keep-Alive", "ignored: Pushpin reads the first"),
    ]
    instruct = parse_instruct_headers(headers)
    assert instruct.hold == "stream"
    assert instruct.keep_alive == KeepAlive(b"ping2\n")


def test_parse_links_and_expose_headers() -> None:
    headers = [
        ("Grip-Link", "<http://example.com/next>; rel=next; timeout=100, </gone>; rel=gone"),
        ("Grip-Link", "<http://example.com/ignored>, </other>; rel=prev"),
        ("Grip-Expose-Headers", "X-A, X-B,"),
    ]
    instruct = parse_instruct_headers(headers)
    assert instruct.next_link == "http://example.com/next"
    assert instruct.next_link_timeout == 100
    assert instruct.gone_link == "/gone"
    assert instruct.expose_headers == ["X-A", "X-B"]


def test_parse_next_link_without_timeout() -> None:
    instruct = parse_instruct_headers([("Grip-Link", "</next>; rel=next")])
    assert (instruct.next_link, instruct.next_link_timeout) == ("/next", None)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ([("Grip-Hold", "forever")], "'response' or 'stream'"),
        ([("Grip-Timeout", "soon")], "Grip-Timeout"),
        ([("Grip-Link", "http://example.com/; rel=next")], "must be <URI>"),
        ([("Grip-Link", "<>; rel=next")], "must be <URI>"),
        ([("Grip-Link", "</n>; rel=next; timeout=x")], "Grip-Link timeout"),
        ([("Grip-Status", "abc")], "Grip-Status code"),
        ([("Grip-Channel", "a, , b")], "channel name must not be empty"),
        ([("Grip-Set-Meta", 'a="b", ')], "empty element"),
    ],
)
def test_parse_instruct_errors(headers: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_instruct_headers(headers)


def test_parse_grip_channel_filter_is_case_sensitive_like_pushpin() -> None:
    assert parse_grip_channel(["a; FILTER=x; Prev-Id=1; filter=y"]) == [Channel("a", "1", ["y"])]


def test_parse_grip_channel_takes_a_single_str() -> None:
    assert parse_grip_channel("a, b") == [Channel("a"), Channel("b")]


# --- The generic list parser (httpheaders.cpp parseParameters) ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("a", [("a", [])]),
        ("a,", [("a", [])]),
        ("a, ", [("a", []), ("", [])]),
        (",", [("", [])]),
        ("a,,b", [("a", []), ("", []), ("b", [])]),
        (" a ;  k = v ; flag ", [("a", [("k", "v"), ("flag", "")])]),
        ("a; flag;; k=v", [("a", [("flag", ""), ("", ""), ("k", "v")])]),
        ("a; k=v=w", [("a", [("k", "v=w")])]),
        ("a;", [("a", [])]),
        ('a; k="x, y; z", b', [("a", [("k", "x, y; z")]), ("b", [])]),
        ('a; k="q\\"uo\\\\te"', [("a", [("k", 'q"uo\\te')])]),
        ('a; k="v"junk; m=1', [("a", [("k", "v"), ("m", "1")])]),
        ('a; k="v"', [("a", [("k", "v")])]),
        ('a; k="v",', [("a", [("k", "v")])]),
        ('a; k= "v"', [("a", [("k", '"v"')])]),
        ('a; k="", b', [("a", [("k", "")]), ("b", [])]),
        # An unterminated quote swallows the rest, and the element is dropped.
        ('a, b; k="x, c', [("a", [])]),
        ('a, b; k="x\\', [("a", [])]),
        # A quote in the first token still affects comma splitting.
        ('"a, b", c', [('"a, b"', []), ("c", [])]),
        ("a\t;\tk=v\t", [("a", [("k", "v")])]),
    ],
)
def test_parse_params_list(value: str, expected: list[tuple[str, list[tuple[str, str]]]]) -> None:
    assert parse_params_list(value) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["foo=bar, bar=baz"], {"foo": "bar", "bar": "baz"}),
        (['user="alice", note="a, \\"b\\""'], {"user": "alice", "note": 'a, "b"'}),
        (["a=1", "b=2; ignored=3", "a=4"], {"a": "4", "b": "2"}),
        (["flag"], {"flag": ""}),
        (['bad="unterminated'], {}),
        ("k=v", {"k": "v"}),
    ],
)
def test_parse_set_meta(values: list[str] | str, expected: dict[str, str]) -> None:
    assert parse_set_meta(values) == expected


# --- Request headers from the proxy ---


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["lp3; last-id=a1"], {"lp3": "a1"}),
        (["a; last-id=1", "b; last-id=2"], {"a": "1", "b": "2"}),
        # django-grip PR #18: several channels in one value.
        (["a; last-id=1, b; last-id=2"], {"a": "1", "b": "2"}),
        (['a; last-id="x,y"', "b; LAST-ID=3"], {"a": "x,y", "b": "3"}),
        ("c; last-id=9", {"c": "9"}),
        # Malformed elements are skipped, never raised.
        (
            ["a", "; last-id=1", 'b; last-id="open', "c; last-id=", "d; x=1, e; last-id=5"],
            {"e": "5"},
        ),
        ([], {}),
    ],
)
def test_parse_grip_last(values: list[str] | str, expected: dict[str, str]) -> None:
    assert parse_grip_last(values) == expected


@given(st.lists(st.text()))
def test_parse_grip_last_never_raises(values: list[str]) -> None:
    last_ids = parse_grip_last(values)
    assert all(channel and last_id for channel, last_id in last_ids.items())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            [GRIP_FEATURE_1_36],
            {
                "status",
                "session",
                "link:next",
                "filter:skip-self",
                "filter:skip-users",
                "filter:require-sub",
                "filter:build-id",
                "filter:var-subst",
            },
        ),
        (["status", "link:gone, "], {"status", "link:gone"}),
        ("status", {"status"}),
        ([], set()),
    ],
)
def test_parse_grip_feature(values: list[str] | str, expected: set[str]) -> None:
    assert parse_grip_feature(values) == frozenset(expected)


# --- Channels ---


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "channel name must not be empty"),
        ({"name": "a,b"}, "contains ','"),
        ({"name": "a;b"}, "contains ';'"),
        ({"name": 'a"b'}, "contains '\"'"),
        ({"name": "a\nb"}, "contains '\\\\n'"),
        ({"name": " a"}, "starts or ends with a space"),
        ({"name": "a "}, "starts or ends with a space"),
        ({"name": "a", "prev_id": ""}, "prev_id must not be empty"),
        ({"name": "a", "prev_id": "1,2"}, "prev_id '1,2' contains ','"),
        ({"name": "a", "filters": ["ok", ""]}, "filter must not be empty"),
    ],
)
def test_channel_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Channel(**kwargs)  # type: ignore[arg-type]


def test_channel_filters_must_not_be_a_str() -> None:
    with pytest.raises(TypeError, match="not a str"):
        Channel("a", filters="skip-self")


def test_channel_filters_become_a_tuple() -> None:
    channel = Channel("a", filters=["skip-self"])
    assert channel.filters == ("skip-self",)
    assert channel == Channel("a", filters=("skip-self",))
    assert hash(channel) == hash(Channel("a", filters=("skip-self",)))


@pytest.mark.parametrize(
    ("channels", "prefix", "expected"),
    [
        ("a", "", "a"),
        (Channel("a", "1", ["skip-self", "f2"]), "", "a; prev-id=1; filter=skip-self; filter=f2"),
        (["a", Channel("b")], "app-", "app-a, app-b"),
        (("x=y\\z",), "", "x=y\\z"),
    ],
)
def test_create_grip_channel_header(
    channels: str | Channel | list[str | Channel], prefix: str, expected: str
) -> None:
    assert create_grip_channel_header(channels, prefix) == expected


@pytest.mark.parametrize(("channels", "prefix"), [([], ""), (["a"], "bad,"), (["a"], " x")])
def test_create_grip_channel_header_errors(channels: list[str], prefix: str) -> None:
    with pytest.raises(ValueError, match="no channels|channel prefix"):
        create_grip_channel_header(channels, prefix)


# --- GripInstruct ---


def test_empty_instruct_has_no_headers() -> None:
    assert GripInstruct().to_headers() == []


def test_full_instruct_headers_in_fixed_order() -> None:
    instruct = (
        GripInstruct(["a", Channel("b", filters=["skip-self"])])
        .add_channel("c", prev_id="7")
        .set_hold_stream()
        .set_keep_alive(":\n\n", 20, mode="interval")
        .set_meta("user", "alice")
        .set_next_link("/next", 30)
        .set_gone_link("/gone")
        .set_status(200, "OK Then")
        .set_expose_headers(["Content-Type", "X-A"])
    )
    assert instruct.to_headers(prefix="p-") == [
        ("Grip-Hold", "stream"),
        ("Grip-Channel", "p-a, p-b; filter=skip-self, p-c; prev-id=7"),
        ("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=20; mode=interval"),
        ("Grip-Set-Meta", 'user="alice"'),
        ("Grip-Link", "</next>; rel=next; timeout=30, </gone>; rel=gone"),
        ("Grip-Status", "200 OK Then"),
        ("Grip-Expose-Headers", "Content-Type, X-A"),
    ]


def test_longpoll_hold() -> None:
    instruct = GripInstruct("a").set_hold_longpoll(30)
    assert (instruct.hold, instruct.timeout) == ("response", 30)
    assert instruct.to_headers() == [
        ("Grip-Hold", "response"),
        ("Grip-Channel", "a"),
        ("Grip-Timeout", "30"),
    ]


def test_longpoll_without_timeout_leaves_pushpins_default() -> None:
    headers = GripInstruct("a").set_hold_longpoll().to_headers()
    assert [name for name, _ in headers] == ["Grip-Hold", "Grip-Channel"]


def test_stream_hold_clears_the_longpoll_timeout() -> None:
    instruct = GripInstruct("a").set_hold_longpoll(30).set_hold_stream()
    assert (instruct.hold, instruct.timeout) == ("stream", None)


def test_meta_and_status_are_sent_without_a_hold() -> None:
    # django-grip PR #20: Grip-Set-Meta without a hold (js-grip still drops it, D12).
    instruct = GripInstruct().set_meta("user", "bob").set_status(304)
    assert instruct.to_headers() == [("Grip-Set-Meta", 'user="bob"'), ("Grip-Status", "304")]


def test_stream_hold_with_prev_id_and_next_link_is_allowed() -> None:
    instruct = GripInstruct().add_channel("a", prev_id="1").set_hold_stream().set_next_link("/n")
    assert ("Grip-Hold", "stream") in instruct.to_headers()


@pytest.mark.parametrize(
    ("instruct", "match"),
    [
        (GripInstruct().set_hold_longpoll(), "a hold needs at least one channel"),
        (GripInstruct().set_hold_stream(), "a hold needs at least one channel"),
        (
            GripInstruct().add_channel("a", prev_id="1").set_hold_stream(),
            "channel 'a' has a prev_id.*next link",
        ),
    ],
)
def test_to_headers_rejects_incomplete_holds(instruct: GripInstruct, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        instruct.to_headers()


def test_meta_filled_directly_is_checked_when_sending() -> None:
    instruct = GripInstruct()
    instruct.meta["bad=name"] = "x"
    with pytest.raises(ValueError, match="meta name"):
        instruct.to_headers()


def test_add_channel_rejects_params_with_a_channel_object() -> None:
    with pytest.raises(TypeError, match="go with a channel name"):
        GripInstruct().add_channel(Channel("a"), prev_id="1")


def test_add_channels_takes_one_name_or_many() -> None:
    instruct = GripInstruct("a").add_channels(Channel("b")).add_channels(["c", Channel("d")])
    assert [c.name for c in instruct.channels] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda i: i.set_hold_longpoll(-1), ValueError, "at least 0"),
        (lambda i: i.set_hold_longpoll(1.5), TypeError, "must be an int"),
        (lambda i: i.set_keep_alive(""), ValueError, "must not be empty"),
        (lambda i: i.set_next_link(""), ValueError, "next link must not be empty"),
        (lambda i: i.set_next_link("/a b"), ValueError, "contains ' '; percent-encode"),
        (lambda i: i.set_next_link("/a?x=1,2"), ValueError, "contains ','"),
        (lambda i: i.set_next_link("/a;b"), ValueError, "contains ';'"),
        (lambda i: i.set_next_link("/a>"), ValueError, "contains '>'"),
        (lambda i: i.set_next_link("/café"), ValueError, "contains 'é'"),
        (lambda i: i.set_next_link("/a\r\n"), ValueError, "contains '\\\\r'"),
        (lambda i: i.set_next_link("/a", 0), ValueError, "at least 1"),
        (lambda i: i.set_gone_link('/"'), ValueError, "gone link"),
        (lambda i: i.set_meta("", "x"), ValueError, "meta name must not be empty"),
        (lambda i: i.set_meta("a=b", "x"), ValueError, "contains '='"),
        (lambda i: i.set_meta("a,b", "x"), ValueError, "contains ','"),
        (lambda i: i.set_meta(" a", "x"), ValueError, "space"),
        (lambda i: i.set_meta("a", "x\r\nGrip-Hold: stream"), ValueError, "control character"),
        (lambda i: i.set_status(99), ValueError, "at least 100"),
        (lambda i: i.set_status(1000), ValueError, "three digits"),
        (lambda i: i.set_status(200, ""), ValueError, "pass None"),
        (lambda i: i.set_status(200, "OK\n"), ValueError, "control character"),
        (lambda i: i.set_expose_headers(["X-A", "bad name"]), ValueError, "valid header name"),
        (lambda i: i.set_expose_headers(["X-A", ""]), ValueError, "valid header name"),
    ],
)
def test_setter_validation(
    build: Callable[[GripInstruct], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build(GripInstruct())


def test_set_expose_headers_takes_a_single_name() -> None:
    assert GripInstruct().set_expose_headers("X-A").expose_headers == ["X-A"]


def test_to_headers_validates_the_prefix() -> None:
    with pytest.raises(ValueError, match="channel prefix"):
        GripInstruct("a").to_headers(prefix="a;")


def test_instruct_equality_and_repr() -> None:
    assert GripInstruct("a").set_hold_stream() == GripInstruct("a").set_hold_stream()
    assert GripInstruct("a") != GripInstruct("b")
    assert "hold='stream'" in repr(GripInstruct("a").set_hold_stream())


# --- JSON instruct (spec §3.3) ---


def test_to_json_response_hold() -> None:
    instruct = GripInstruct("test").set_hold_longpoll(120).set_meta("foo", "bar")
    response = {"code": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello world"}
    assert json.loads(instruct.to_json(response=response)) == {
        "hold": {
            "mode": "response",
            "channels": [{"name": "test"}],
            "timeout": 120,
            "meta": {"foo": "bar"},
        },
        "response": response,
    }


def test_to_json_stream_hold_with_channel_params_and_keep_alive() -> None:
    instruct = (
        GripInstruct()
        .add_channel("a", filters=["f1"])
        .set_hold_stream()
        .set_keep_alive("ka", 10, mode="interval")
    )
    assert json.loads(instruct.to_json(prefix="p-")) == {
        "hold": {
            "mode": "stream",
            "channels": [{"name": "p-a", "filters": ["f1"]}],
            "keep-alive": {"content": "ka", "timeout": 10},
        }
    }


def test_to_json_channel_prev_id() -> None:
    instruct = GripInstruct().add_channel("a", prev_id="1").set_hold_longpoll()
    assert json.loads(instruct.to_json())["hold"]["channels"] == [{"name": "a", "prev-id": "1"}]


def test_to_json_binary_keep_alive_and_body() -> None:
    instruct = GripInstruct("a").set_hold_stream().set_keep_alive(b"\x00")
    body = json.loads(instruct.to_json(response={"code": 200, "body": b"\xff"}))
    assert body["hold"]["keep-alive"] == {"content-bin": "AA==", "timeout": 55}
    assert body["response"] == {"code": 200, "body-bin": "/w=="}


def test_to_json_without_a_hold() -> None:
    assert json.loads(GripInstruct().to_json(response={"body": "x"})) == {"response": {"body": "x"}}
    assert GripInstruct().to_json() == "{}"


@pytest.mark.parametrize(
    ("instruct", "match"),
    [
        (GripInstruct("a").set_hold_stream().set_next_link("/n"), "next_link"),
        (GripInstruct("a").set_hold_stream().set_gone_link("/g"), "gone_link"),
        (GripInstruct("a").set_hold_stream().set_status(304), "status"),
        (GripInstruct("a").set_hold_stream().set_expose_headers(["X"]), "expose_headers"),
        (GripInstruct("a").set_hold_stream().set_keep_alive("k", mode="idle"), "mode 'idle'"),
        (GripInstruct("a"), "only with a hold"),
        (GripInstruct().set_meta("user", "x"), "only with a hold"),
        (GripInstruct().set_keep_alive("k"), "only with a hold"),
        (GripInstruct().set_hold_stream(), "at least one channel"),
    ],
)
def test_to_json_errors(instruct: GripInstruct, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        instruct.to_json()


def test_to_json_validates_the_prefix() -> None:
    with pytest.raises(ValueError, match="channel prefix"):
        GripInstruct("a").set_hold_stream().to_json(prefix="bad,")


def test_to_json_checks_meta_filled_directly() -> None:
    instruct = GripInstruct("a").set_hold_stream()
    instruct.meta["user"] = "x\n"
    with pytest.raises(ValueError, match="control character"):
        instruct.to_json()


# --- Properties: what the builder writes, Pushpin's parser reads back ---

TOKEN_ALPHABET = st.characters(codec="utf-8", exclude_characters=CONTROL_CHARS + ',;"')
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12).filter(
    lambda s: s[0] != " " and s[-1] != " "
)
meta_names = tokens.filter(lambda s: "=" not in s)
texts = st.text(st.characters(codec="utf-8", exclude_characters=CONTROL_CHARS))
channels = st.builds(Channel, tokens, st.none() | tokens, st.lists(tokens, max_size=3))
keep_alive_data = st.binary(min_size=1) | st.text(min_size=1)
modes = st.none() | st.sampled_from(get_args(KeepAliveMode))
link_chars = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '<>",;')
links = st.text(st.sampled_from(link_chars), min_size=1, max_size=30)


def as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


@given(keep_alive_data, st.integers(1, 10**6), modes)
def test_keep_alive_round_trip(data: str | bytes, timeout: int, mode: KeepAliveMode | None) -> None:
    header = KeepAlive(data, timeout, mode).to_header()
    assert header.isascii()
    assert parse_keep_alive(header) == KeepAlive(as_bytes(data), timeout, mode)


@given(st.text(min_size=1))
def test_keep_alive_str_uses_cstring_unless_it_cannot(data: str) -> None:
    header = KeepAlive(data).to_header()
    readable = ";" not in data and data.isascii()
    assert header.endswith("; format=cstring; timeout=55") == readable


@given(st.lists(channels, min_size=1, max_size=5), st.just("") | tokens)
def test_channel_header_round_trip(items: list[Channel], prefix: str) -> None:
    header = create_grip_channel_header(items, prefix)
    expected = [Channel(prefix + c.name, c.prev_id, c.filters) for c in items]
    assert parse_grip_channel([header]) == expected


@given(st.dictionaries(meta_names, texts, max_size=5))
def test_meta_round_trip(meta: dict[str, str]) -> None:
    instruct = GripInstruct()
    for name, value in meta.items():
        instruct.set_meta(name, value)
    assert parse_instruct_headers(instruct.to_headers()).meta == meta


@st.composite
def instructs(draw: st.DrawFn) -> GripInstruct:
    instruct = GripInstruct(draw(st.lists(channels, min_size=1, max_size=4)))
    hold = draw(st.sampled_from([None, "response", "stream"]))
    if hold == "response":
        instruct.set_hold_longpoll(draw(st.none() | st.integers(0, 3600)))
    elif hold == "stream":
        instruct.set_hold_stream()
    if draw(st.booleans()):
        instruct.set_keep_alive(draw(keep_alive_data), draw(st.integers(1, 3600)), mode=draw(modes))
    for name, value in draw(st.dictionaries(meta_names, texts, max_size=3)).items():
        instruct.set_meta(name, value)
    # A stream hold with prev-ids needs a next link.
    if hold == "stream" or draw(st.booleans()):
        instruct.set_next_link(draw(links), draw(st.none() | st.integers(1, 3600)))
    if draw(st.booleans()):
        instruct.set_gone_link(draw(links))
    if draw(st.booleans()):
        reason = draw(st.none() | texts.filter(bool))
        instruct.set_status(draw(st.integers(100, 999)), reason)
    header_names = st.from_regex(r"[A-Za-z0-9-]+", fullmatch=True)
    instruct.set_expose_headers(draw(st.lists(header_names, max_size=3)))
    return instruct


@given(instructs())
def test_instruct_round_trip(instruct: GripInstruct) -> None:
    headers = instruct.to_headers()
    assert len({name for name, _ in headers}) == len(headers)
    for _, value in headers:
        assert not any(char in CONTROL_CHARS for char in value)
    parsed = parse_instruct_headers(headers)
    if instruct.keep_alive is not None:
        ka = instruct.keep_alive
        instruct.keep_alive = KeepAlive(as_bytes(ka.data), ka.timeout, ka.mode)
    assert parsed == instruct


@given(st.text())
def test_parse_params_list_never_raises(value: str) -> None:
    for first, params in parse_params_list(value):
        assert isinstance(first, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params)
