"""The core's answers to the four places where gripcontrol's own tests found our names
different (issue 15): what changed in the core, and what stays strict on purpose.

The peers' behaviour itself is checked in ``tests/compat``; these tests pin the core's side.
"""

from __future__ import annotations

import pytest

from grip_asgi import (
    GripConfig,
    WebSocketContext,
    WebSocketEvent,
    decode_websocket_events,
    parse_grip_uri,
)

FANOUT = "http://api.fanout.io/realm/realm?iss=realm&key=base64:Zm9vYmFy&param1=value1"


# 1. parse_grip_uri: gripcontrol returned a dict, and code reads config["control_uri"].


def test_a_grip_config_reads_like_gripcontrols_dict() -> None:
    config = parse_grip_uri(FANOUT)
    assert config["control_uri"] == "http://api.fanout.io/realm/realm?param1=value1"
    assert config["control_iss"] == "realm"
    assert config["key"] == b"foobar"
    # As in gripcontrol's dict, a setting that is not set is absent, not None.
    assert "verify_key" not in config
    assert config.get("verify_iss") is None
    with pytest.raises(KeyError, match="verify_key"):
        config["verify_key"]
    assert dict(config) == {
        "control_uri": "http://api.fanout.io/realm/realm?param1=value1",
        "control_iss": "realm",
        "key": b"foobar",
    }


def test_the_mapping_has_every_field_that_is_set_and_reads_back_with_from_dict() -> None:
    config = parse_grip_uri("https://user:pa%20ss@pushpin.example/?verify-iss=p&verify-key=k")
    assert sorted(config) == ["control_uri", "password", "user", "verify_iss", "verify_key"]
    assert len(config) == 5
    assert config["password"] == "pa ss"
    assert GripConfig.from_dict(config) == config


def test_unknown_names_and_non_str_keys_are_key_errors() -> None:
    config = GripConfig("http://127.0.0.1:5561")
    for name in ("uri", "signature_key", "publish_url", 0):
        with pytest.raises(KeyError):
            config[name]  # type: ignore[index]
        assert name not in config


def test_a_grip_config_stays_a_hashable_value() -> None:
    config = parse_grip_uri(FANOUT)
    assert config == parse_grip_uri(FANOUT)
    assert hash(config) == hash(parse_grip_uri(FANOUT))
    assert config != dict(config)  # a value of its own, not a dict


# 2. decode_websocket_events(str): gripcontrol refuses it too ("body must be bytes"); ours
#    said so only by accident, in a TypeError about bytes.find().


def test_decoding_a_str_body_says_what_to_pass() -> None:
    with pytest.raises(TypeError, match=r"body must be bytes, not str: encode it"):
        decode_websocket_events("TEXT 5\r\nHello\r\n")  # type: ignore[arg-type]


def test_decoding_something_else_names_its_type() -> None:
    with pytest.raises(TypeError, match=r"^body must be bytes, not int$"):
        decode_websocket_events(12)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [bytearray(b"TEXT 2\r\nhi\r\n"), memoryview(b"TEXT 2\r\nhi\r\n")])
def test_decoding_takes_any_bytes_like_body(body: bytearray | memoryview) -> None:
    assert decode_websocket_events(body) == [WebSocketEvent("TEXT", b"hi")]  # type: ignore[arg-type]


# 3. WebSocketEvent("TEXT", "hi").content is bytes: kept on purpose. One representation
#    makes events comparable and encodable; grip_asgi.compat.gripcontrol keeps the str.


def test_an_event_holds_bytes_whatever_it_was_given() -> None:
    assert WebSocketEvent("TEXT", "hé").content == "hé".encode()
    assert WebSocketEvent("TEXT", "hi") == WebSocketEvent("TEXT", b"hi")


# 4. close(code): the codes RFC 6455 §7.4 forbids in a close frame stay refused.


@pytest.mark.parametrize("code", [0, 100, 999, 1004, 1005, 1006, 1015, 5000])
def test_close_refuses_codes_no_endpoint_may_send(code: int) -> None:
    ws = WebSocketContext("conn-1", {}, [])
    with pytest.raises(ValueError, match="close code must be 1000-4999 and not reserved"):
        ws.close(code)
    assert ws.out_events == []
