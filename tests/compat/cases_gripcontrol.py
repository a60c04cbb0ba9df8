"""gripcontrol 4.x's public behaviour, as cases run on gripcontrol itself and on our names.

The cases follow what gripcontrol documents (its README and its functions' comments) and
what its repository's tests check, written anew: its source distribution ships no tests.
``h.api`` holds gripcontrol's public names plus pubcontrol's ``Item`` and ``Format``.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
import warnings
from struct import pack
from typing import Any

import jwt

from .harness import CaseRegistry, Harness, api, published_items, wire_format, wire_item

NAMES = (
    "Channel",
    "GripPubControl",
    "HttpResponseFormat",
    "HttpStreamFormat",
    "Response",
    "WebSocketContext",
    "WebSocketEvent",
    "WebSocketMessageFormat",
    "create_grip_channel_header",
    "create_hold",
    "create_hold_response",
    "create_hold_stream",
    "decode_websocket_events",
    "encode_websocket_events",
    "parse_grip_uri",
    "validate_sig",
    "websocket_control_message",
)

CASES = CaseRegistry()
case = CASES

KEY = "a-key-of-at-least-thirty-two-bytes"


def prepare_peer(h: Harness) -> None:
    import gripcontrol
    import pubcontrol

    h.api = peer_or_ours(gripcontrol, pubcontrol)


def peer_or_ours(gripcontrol: Any, pubcontrol: Any) -> Any:
    names = {name: getattr(gripcontrol, name) for name in NAMES}
    return api(**names, Item=pubcontrol.Item, Format=pubcontrol.Format)


def events(evs: list[Any]) -> list[Any]:
    return [(e.type, e.content) for e in evs]


# --- parse_grip_uri -----------------------------------------------------------------------


@case
def parse_uri_realm_with_base64_key(h: Harness) -> object:
    return h.api.parse_grip_uri(
        "http://api.fanout.io/realm/realm?iss=realm&key=base64:geag121321=="
    )


@case
def parse_uri_https(h: Harness) -> object:
    return h.api.parse_grip_uri(
        "https://api.fanout.io/realm/realm?iss=realm&key=base64:geag121321=="
    )


@case
def parse_uri_without_parameters_has_only_control_uri(h: Harness) -> object:
    config = h.api.parse_grip_uri("http://api.fanout.io/realm/realm")
    return config, "control_iss" in config, "key" in config


@case
def parse_uri_escaped_plus_in_a_base64_key(h: Harness) -> object:
    return h.api.parse_grip_uri("http://api.fanout.io/realm/realm?key=base64:geag%2B21321==")


@case
def parse_uri_literal_plus_in_a_base64_key(h: Harness) -> object:
    return h.api.parse_grip_uri("http://api.fanout.io/realm/realm?key=base64:geag+21321==")


@case
def parse_uri_keeps_other_parameters(h: Harness) -> object:
    return h.api.parse_grip_uri(
        "http://api.fanout.io/realm/realm?iss=realm&key=base64:geag121321==&param1=value1&param2=value2"
    )


@case
def parse_uri_drops_the_trailing_slash_and_keeps_the_port(h: Harness) -> object:
    return h.api.parse_grip_uri("http://api.fanout.io:8080/realm/realm/")


@case
def parse_uri_literal_key(h: Harness) -> object:
    return h.api.parse_grip_uri("http://api.fanout.io/realm/realm?iss=realm&key=geag121321==")


@case
def parse_uri_verify_parameters(h: Harness) -> object:
    key = base64.b64encode(b"-----BEGIN PUBLIC KEY-----").decode()
    return h.api.parse_grip_uri(
        f"https://api.fastly.com/service/SID?key=TOKEN&verify-iss=fastly:SID&verify-key=base64:{key}"
    )


@case
def parse_uri_keeps_credentials_in_control_uri(h: Harness) -> object:
    return h.api.parse_grip_uri("http://user:secret@pushpin.internal:5561/?iss=app&key=k")


@case
def parse_uri_keeps_a_user_without_a_password(h: Harness) -> object:
    return h.api.parse_grip_uri("https://token@api.example/realm?iss=realm")


@case
def parse_uri_pushpin(h: Harness) -> object:
    return h.api.parse_grip_uri("http://localhost:5561/?verify-iss=pushpin&verify-key=changeme")


@case
def parse_uri_without_a_scheme(h: Harness) -> object:
    return h.api.parse_grip_uri("localhost:5561")


# --- validate_sig -------------------------------------------------------------------------


def token(key: Any = KEY, algorithm: str = "HS256", **claims: Any) -> str:
    claims.setdefault("iss", "realm")
    claims.setdefault("exp", int(time.time()) + 3600)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm)


def ec_keys() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@case
def validate_sig_valid(h: Harness) -> object:
    return h.api.validate_sig(token(), KEY)


@case
def validate_sig_expired(h: Harness) -> object:
    return h.api.validate_sig(token(exp=int(time.time()) - 3600), KEY)


@case
def validate_sig_wrong_key(h: Harness) -> object:
    return h.api.validate_sig(token(), "wrong-key-of-at-least-thirty-two-bytes")


@case
def validate_sig_without_exp(h: Harness) -> object:
    return h.api.validate_sig(token(exp=None), KEY)


@case
def validate_sig_issuer(h: Harness) -> object:
    good = token(iss="pushpin")
    return (
        h.api.validate_sig(good, KEY, "pushpin"),
        h.api.validate_sig(good, KEY, iss="other"),
        h.api.validate_sig(token(iss=None), KEY, "pushpin"),
    )


@case
def validate_sig_token_as_bytes(h: Harness) -> object:
    return h.api.validate_sig(token().encode(), KEY)


@case
def validate_sig_token_as_bytes_that_are_not_ascii(h: Harness) -> object:
    return h.api.validate_sig("é.é.é".encode(), KEY)


@case
def validate_sig_missing_header(h: Harness) -> object:
    return h.api.validate_sig(None, KEY)


@case
def validate_sig_garbage(h: Harness) -> object:
    return h.api.validate_sig("not.a.token", KEY), h.api.validate_sig("", KEY)


@case
def validate_sig_es256_with_a_pem_public_key(h: Harness) -> object:
    private, public = ec_keys()
    return h.api.validate_sig(token(private, "ES256"), public)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsafe_token(alg: str, secret: bytes | None) -> str:
    """A token no JWT library would make: for the attacks validate_sig must refuse."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"iss": "realm", "exp": int(time.time()) + 3600}).encode())
    signing_input = f"{header}.{payload}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + b64url(hmac.digest(secret, signing_input.encode(), "sha256"))


@case
def validate_sig_refuses_an_hmac_token_keyed_with_the_public_key(h: Harness) -> object:
    _, public = ec_keys()
    return h.api.validate_sig(unsafe_token("HS256", public.encode()), public)


@case
def validate_sig_refuses_alg_none(h: Harness) -> object:
    return h.api.validate_sig(unsafe_token("none", None), KEY)


@case
def validate_sig_with_pushpins_default_key_warns(h: Harness) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns when signing with it too
        signed = token("changeme")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        valid = h.api.validate_sig(signed, "changeme")
    return valid, sorted({type(w.message).__name__ for w in caught})


@case
def validate_sig_with_a_broken_pem_key(h: Harness) -> object:
    broken = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    return h.api.validate_sig(token(), broken)


# --- WebSocket-over-HTTP codec -------------------------------------------------------------


@case
def decode_events(h: Harness) -> object:
    body = b"OPEN\r\nTEXT 5\r\nHello\r\nTEXT 0\r\n\r\nCLOSE\r\nTEXT\r\nCLOSE\r\n"
    return events(h.api.decode_websocket_events(body))


@case
def decode_one_open(h: Harness) -> object:
    return events(h.api.decode_websocket_events(b"OPEN\r\n"))


@case
def decode_one_text(h: Harness) -> object:
    return events(h.api.decode_websocket_events(b"TEXT 5\r\nHello\r\n"))


@case
def decode_binary_content_holding_crlf(h: Harness) -> object:
    return events(h.api.decode_websocket_events(b"BINARY 4\r\n\r\n\r\n\r\nPING\r\n"))


@case
def decode_refuses_a_str_body(h: Harness) -> object:
    return h.api.decode_websocket_events("TEXT 5\r\nHello\r\n")


@case
def decode_refuses_a_str_body_without_crlf(h: Harness) -> object:
    return h.api.decode_websocket_events("TEXT 5")


@case
def decode_without_crlf(h: Harness) -> object:
    return h.api.decode_websocket_events(b"OPEN\r\nTEXT")


@case
def decode_bad_size(h: Harness) -> object:
    return h.api.decode_websocket_events(b"TEXT zz\r\nab\r\n")


@case
def decode_truncated_content(h: Harness) -> object:
    return events(h.api.decode_websocket_events(b"TEXT 5\r\nHel"))


@case
def decode_unknown_event_type(h: Harness) -> object:
    return events(h.api.decode_websocket_events(b"HELLO\r\n"))


@case
def encode_events(h: Harness) -> object:
    E = h.api.WebSocketEvent
    return h.api.encode_websocket_events([E("TEXT", "Hello"), E("TEXT", ""), E("TEXT", None)])


@case
def encode_open(h: Harness) -> object:
    return h.api.encode_websocket_events([h.api.WebSocketEvent("OPEN")])


@case
def encode_counts_utf8_bytes(h: Harness) -> object:
    E = h.api.WebSocketEvent
    return h.api.encode_websocket_events([E("TEXT", "héllo"), E("BINARY", b"\x00\xff")])


@case
def encode_unknown_event_type(h: Harness) -> object:
    return h.api.encode_websocket_events([h.api.WebSocketEvent("HELLO")])


@case
def event_keeps_its_content_as_given(h: Harness) -> object:
    E = h.api.WebSocketEvent
    return [(e.type, e.content) for e in (E("TEXT", "hi"), E("TEXT", b"hi"), E("OPEN"))]


@case
def control_message(h: Harness) -> object:
    return h.api.websocket_control_message("type")


@case
def control_message_with_arguments(h: Harness) -> object:
    return h.api.websocket_control_message("subscribe", {"channel": "news", "filters": ["f"]})


# --- WebSocketContext ---------------------------------------------------------------------


def ws(h: Harness, *evs: Any, meta: dict[str, str] | None = None, prefix: str = "") -> Any:
    return h.api.WebSocketContext("conn-1", meta or {}, list(evs), prefix)


def E(h: Harness, type: str, content: Any = None) -> Any:
    return h.api.WebSocketEvent(type, content)


@case
def context_open_and_accept(h: Harness) -> object:
    w = ws(h, E(h, "OPEN"))
    before = (w.id, bool(w.is_opening()), w.can_recv(), w.accepted)
    w.accept()
    return before, w.accepted, events(w.out_events)


@case
def context_without_events_is_not_opening(h: Harness) -> object:
    w = ws(h)
    return bool(w.is_opening()), w.can_recv(), w.closed


@case
def context_recv_text(h: Harness) -> object:
    w = ws(h, E(h, "TEXT", b"hello"))
    return bool(w.is_opening()), w.can_recv(), w.recv(), w.can_recv()


@case
def context_recv_after_open(h: Harness) -> object:
    w = ws(h, E(h, "OPEN"), E(h, "TEXT", b"a"), E(h, "BINARY", b"\x00b"), E(h, "TEXT", b""))
    return [w.recv() for _ in range(3)], w.can_recv()


@case
def context_recv_invalid_utf8(h: Harness) -> object:
    return ws(h, E(h, "TEXT", b"\xff")).recv()


@case
def context_recv_when_nothing_is_left(h: Harness) -> object:
    return ws(h, E(h, "OPEN")).recv()


@case
def context_recv_disconnect(h: Harness) -> object:
    return ws(h, E(h, "DISCONNECT")).recv()


@case
def context_answers_pings(h: Harness) -> object:
    w = ws(h, E(h, "PING", b"p1"), E(h, "PONG"), E(h, "TEXT", b"x"), E(h, "PING", b"p2"))
    can = w.can_recv()
    message = w.recv()
    return can, message, w.can_recv(), events(w.out_events)


@case
def context_client_close_code(h: Harness) -> object:
    w = ws(h, E(h, "CLOSE", pack(">H", 100)))
    return w.can_recv(), w.recv(), w.close_code


@case
def context_client_close_code_with_a_reason(h: Harness) -> object:
    w = ws(h, E(h, "CLOSE", pack(">H", 1001) + b"going away"))
    return w.recv(), w.close_code


@case
def context_send(h: Harness) -> object:
    w = ws(h)
    w.send(b"apple")
    w.send("banana")
    w.send_binary(b"cherry")
    w.send_binary("date")
    return events(w.out_events)


@case
def context_control(h: Harness) -> object:
    w = ws(h)
    w.subscribe("foo")
    w.unsubscribe("bar")
    w.detach()
    w.send_control(h.api.websocket_control_message("keep-alive"))
    return events(w.out_events)


@case
def context_prefix(h: Harness) -> object:
    w = ws(h, prefix="app-")
    w.subscribe("foo")
    return events(w.out_events)


@case
def context_subscribe_to_an_empty_name(h: Harness) -> object:
    w = ws(h)
    w.subscribe("")
    return events(w.out_events)


@case
def context_close_with_a_code(h: Harness) -> object:
    w = ws(h)
    w.close(code=4000)
    return w.closed, w.out_close_code


@case
def context_close_without_a_code(h: Harness) -> object:
    w = ws(h)
    w.close()
    return w.closed, w.out_close_code


@case
def context_close_with_code_100(h: Harness) -> object:
    w = ws(h)
    w.close(code=100)
    return w.closed, w.out_close_code


@case
def context_close_with_reserved_code_1005(h: Harness) -> object:
    w = ws(h)
    w.close(1005)
    return w.closed, w.out_close_code


@case
def context_send_after_close(h: Harness) -> object:
    w = ws(h)
    w.close(1000)
    w.send("late")
    return events(w.out_events)


@case
def context_meta_is_a_copy(h: Harness) -> object:
    w = ws(h, meta={"user": "alice"})
    w.meta["user"] = "bob"
    w.meta["room"] = "lobby"
    return w.orig_meta, w.meta


# --- Channel and the instructs ------------------------------------------------------------


@case
def channel_fields(h: Harness) -> object:
    plain, with_id = h.api.Channel("c"), h.api.Channel("c", "p1")
    return [(c.name, c.prev_id, c.filters) for c in (plain, with_id)]


@case
def channel_filters_appended(h: Harness) -> object:
    channel = h.api.Channel("c")
    channel.filters.append("skip-self")
    return h.api.create_grip_channel_header(channel)


@case
def channel_header(h: Harness) -> object:
    C, header = h.api.Channel, h.api.create_grip_channel_header
    return [
        header("channel"),
        header(C("channel")),
        header(C("channel", "prev-id")),
        header([C("channel1", "prev-id1"), C("channel2", "prev-id2")]),
    ]


@case
def channel_header_without_channels(h: Harness) -> object:
    return h.api.create_grip_channel_header([])


@case
def channel_header_with_a_comma_in_a_name(h: Harness) -> object:
    return h.api.create_grip_channel_header("a,b")


def instruct(text: str) -> object:
    parsed = json.loads(text)
    if "response" in parsed:
        parsed["response"] = wire_format("http-response", parsed["response"])
    return parsed


@case
def hold_with_a_response(h: Harness) -> object:
    response = h.api.Response(200, "OK", {"Content-Type": "text/plain"}, "body")
    return instruct(h.api.create_hold("response", "channel", response))


@case
def hold_with_a_binary_body(h: Harness) -> object:
    response = h.api.Response(body=pack("hhh", 253, 254, 255))
    return instruct(h.api.create_hold("response", "channel", response))


@case
def hold_with_a_utf8_bytes_body(h: Harness) -> object:
    return instruct(h.api.create_hold("response", "channel", h.api.Response(body=b"hi")))


@case
def hold_with_a_str_response_and_a_timeout(h: Harness) -> object:
    return instruct(h.api.create_hold("response", "channel", "body", 30))


@case
def hold_response(h: Harness) -> object:
    return [
        instruct(h.api.create_hold_response("channel")),
        instruct(h.api.create_hold_response("channel", None, 30)),
        instruct(h.api.create_hold_response(h.api.Channel("channel", "p1"), "timed out\n")),
    ]


@case
def hold_stream(h: Harness) -> object:
    return [
        instruct(h.api.create_hold_stream("channel")),
        instruct(h.api.create_hold_stream(["a", h.api.Channel("b")], h.api.Response(body="hi"))),
    ]


@case
def hold_stream_with_a_timeout(h: Harness) -> object:
    return instruct(h.api.create_hold("stream", "channel", None, 30))


@case
def hold_stream_with_a_prev_id(h: Harness) -> object:
    return instruct(h.api.create_hold_stream(h.api.Channel("channel", "p1")))


@case
def hold_with_an_unknown_mode(h: Harness) -> object:
    return instruct(h.api.create_hold("mode", "channel", None))


# --- Formats and items --------------------------------------------------------------------


def exported(fmt: Any) -> object:
    return wire_format(fmt.name(), fmt.export())


@case
def format_http_response(h: Harness) -> object:
    F = h.api.HttpResponseFormat
    return [
        exported(F(200, "OK", {"X-A": "b"}, "body")),
        exported(F(body=b"\xff\x00")),
        exported(F()),
        exported(F(action="hint")),
        exported(F(body="x", content_filters=["f"])),
    ]


@case
def format_http_response_given_the_body_first(h: Harness) -> object:
    # django-grip's README long-poll example does this: the first argument is the code.
    return exported(h.api.HttpResponseFormat("object v2\n", headers={"ETag": '"v2"'}))


@case
def format_http_stream(h: Harness) -> object:
    F = h.api.HttpStreamFormat
    return [
        exported(F("data\n")),
        exported(F(b"\xff\xfe")),
        exported(F(close=True)),
        exported(F(action="hint")),
        exported(F("x", content_filters=["f"])),
    ]


@case
def format_http_stream_without_content(h: Harness) -> object:
    return h.api.HttpStreamFormat()


@case
def format_http_stream_close_contradicting_the_action(h: Harness) -> object:
    return h.api.HttpStreamFormat(close=True, action="send")


@case
def format_websocket_message(h: Harness) -> object:
    F = h.api.WebSocketMessageFormat
    return [
        exported(F("text")),
        exported(F(b"bytes are text unless binary")),
        exported(F("binary", binary=True)),
        exported(F(b"\x00\xff", binary=True)),
        exported(F(action="close")),
        exported(F(action="close", code=4001, reason="bye")),
    ]


@case
def format_websocket_close_with_a_reserved_code(h: Harness) -> object:
    return exported(h.api.WebSocketMessageFormat(action="close", code=1005))


@case
def formats_are_pubcontrol_formats(h: Harness) -> object:
    formats = (
        h.api.HttpResponseFormat(body="x"),
        h.api.HttpStreamFormat("x"),
        h.api.WebSocketMessageFormat("x"),
    )
    return [(f.name(), isinstance(f, h.api.Format)) for f in formats]


@case
def item_export(h: Harness) -> object:
    formats = [
        h.api.HttpResponseFormat(body="poll\n"),
        h.api.HttpStreamFormat("stream\n"),
        h.api.WebSocketMessageFormat("ws"),
    ]
    item = h.api.Item(formats, "2", "1", {"sender": "alice"})
    return wire_item(item.export()), wire_item(item.export(True)), sorted(item.export(True))


@case
def item_with_one_format(h: Harness) -> object:
    return wire_item(h.api.Item(h.api.HttpStreamFormat("x")).export(True))


@case
def item_with_two_formats_of_one_kind(h: Harness) -> object:
    F = h.api.HttpStreamFormat
    return h.api.Item([F("a"), F("b")]).export()


# --- GripPubControl -----------------------------------------------------------------------


def sent(h: Harness) -> list[dict[str, Any]]:
    return published_items(h.capture.take(), KEY)


@case
def publish_blocking_with_a_jwt(h: Harness) -> object:
    pub = h.api.GripPubControl({"control_uri": h.capture.url, "control_iss": "app", "key": KEY})
    item = h.api.Item(h.api.WebSocketMessageFormat("hi"), "1")
    pub.publish("room", item, blocking=True)
    pub.close()
    return sent(h)


@case
def publish_blocking_with_a_bearer_key(h: Harness) -> object:
    pub = h.api.GripPubControl(h.api.parse_grip_uri(f"{h.capture.url}/?key=token"))
    pub.publish_http_stream("news", "hello\n", blocking=True)
    pub.close()
    return sent(h)


@case
def publish_http_response_and_stream(h: Harness) -> object:
    pub = h.api.GripPubControl({"control_uri": h.capture.url})
    pub.publish_http_response("poll", "body", blocking=True)
    pub.publish_http_response("poll", h.api.HttpResponseFormat(code=404, body="no"), "7", "6", True)
    pub.publish_http_stream("stream", h.api.HttpStreamFormat(close=True), blocking=True)
    pub.close()
    return sent(h)


@case
def publish_with_pubcontrol_style_config(h: Harness) -> object:
    pub = h.api.GripPubControl()
    pub.apply_config({"uri": h.capture.url, "iss": "app", "key": KEY})
    pub.publish_http_stream("news", "x", blocking=True)
    pub.close()
    return sent(h)


@case
def publish_after_removing_and_adding_proxies(h: Harness) -> object:
    pub = h.api.GripPubControl({"control_uri": "http://127.0.0.1:1"})
    pub.remove_all_clients()
    pub.apply_grip_config({"control_uri": h.capture.url})
    pub.publish_http_stream("news", "x", blocking=True)
    pub.close()
    return sent(h)


@case
def publish_to_two_proxies(h: Harness) -> object:
    pub = h.api.GripPubControl()
    pub.apply_grip_config([{"control_uri": h.capture.url}, {"control_uri": h.capture.url + "/b"}])
    pub.publish_http_stream("news", "x", blocking=True)
    pub.close()
    return sorted(sent(h), key=lambda r: r["path"])


@case
def publish_non_blocking_with_callbacks(h: Harness) -> object:
    results: list[tuple[bool, str]] = []
    pub = h.api.GripPubControl({"control_uri": h.capture.url})
    for n in range(3):
        fmt = h.api.HttpStreamFormat(f"{n}\n")
        pub.publish("news", h.api.Item(fmt), callback=lambda ok, msg: results.append((ok, msg)))
    pub.publish_http_stream("news", "3\n")
    pub.wait_all_sent()
    pub.close()
    return results, sent(h)


@case
def publish_non_blocking_failure_reaches_the_callback(h: Harness) -> object:
    results: list[bool] = []
    pub = h.api.GripPubControl({"control_uri": "http://127.0.0.1:1"})
    pub.publish_http_stream("news", "x", callback=lambda ok, msg: results.append(ok))
    pub.finish()
    return results


@case
def publish_blocking_failure(h: Harness) -> object:
    pub = h.api.GripPubControl({"control_uri": "http://127.0.0.1:1"})
    return pub.publish_http_stream("news", "x", blocking=True)


@case
def publish_non_blocking_failure_without_a_callback(h: Harness) -> object:
    errors: list[logging.LogRecord] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    handler = Record(logging.ERROR)
    logging.getLogger().addHandler(handler)
    try:
        pub = h.api.GripPubControl({"control_uri": "http://127.0.0.1:1"})
        pub.publish_http_stream("news", "x")
        pub.finish()
    finally:
        logging.getLogger().removeHandler(handler)
    return [record.getMessage()[:30] for record in errors]


@case
def publish_without_a_proxy(h: Harness) -> object:
    pub = h.api.GripPubControl()
    return pub.publish_http_stream("news", "x", blocking=True)


@case
def publish_after_close(h: Harness) -> object:
    pub = h.api.GripPubControl({"control_uri": h.capture.url})
    pub.close()
    return pub.publish_http_stream("news", "x", blocking=True)
