"""gripcontrol 4.4.0 (and pubcontrol 3.5.0's Item) against ``grip_asgi.compat.gripcontrol``.

Each case of :mod:`tests.compat.cases_gripcontrol` runs on gripcontrol's published code and on
our names; the differences we keep are listed below, each with its reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from grip_asgi.compat import gripcontrol, pubcontrol

from . import cases_gripcontrol as cases
from .harness import CaptureServer, Harness
from .verdict import Difference, cases_for, check, raises, value

PEER = "gripcontrol 4.4.0 (with pubcontrol 3.5.0)"

_RFC_CLOSE = (
    "RFC 6455 §7.4 lets an endpoint send only 1000-4999, and never 1004-1006 or 1015: a client "
    "fails the connection on any other code, so ours refuses it with ValueError"
)

#: What we do differently from gripcontrol on purpose: case -> (why, theirs, ours).
EXPECTED = {
    "parse_uri_without_a_scheme": Difference(
        "a GRIP URL must be http(s)://host: gripcontrol made 'localhost://5561' of it and "
        "every publish failed later; ours raises GripConfigError (a ValueError) at once",
        peer=value({"control_uri": "localhost://5561"}),
        ours=raises("ValueError"),
    ),
    "validate_sig_with_a_broken_pem_key": Difference(
        "a key that is not key material is a configuration error, raised (GripConfigError, a "
        "ValueError); gripcontrol returned False for every request, so a broken key looked "
        "like forged requests",
        peer=value(False),
        ours=raises("ValueError"),
    ),
    "validate_sig_with_pushpins_default_key_warns": Difference(
        "landscape D10: PyJWT warns on every check with an 8-byte HMAC key (Pushpin's default "
        "'changeme'), an error under pytest -W error; our verifier does not use PyJWT",
        peer=value([True, ["InsecureKeyLengthWarning"]]),
        ours=value([True, []]),
    ),
    "decode_truncated_content": Difference(
        "a body whose content is shorter than its size is malformed (spec §5.3): ours raises "
        "WebSocketDecodeError (a ValueError, answered 400) rather than pass half a message on",
        peer=value([["TEXT", b"Hel"]]),
        ours=raises("ValueError"),
    ),
    "decode_unknown_event_type": Difference(
        "WebSocket-over-HTTP has seven event types (spec §5.3); an unknown one is a malformed "
        "body (WebSocketDecodeError, a ValueError)",
        peer=value([["HELLO", None]]),
        ours=raises("ValueError"),
    ),
    "encode_unknown_event_type": Difference(
        "Pushpin rejects a reply with an unknown event type, so encoding one raises ValueError",
        peer=value(b"HELLO\r\n"),
        ours=raises("ValueError"),
    ),
    "context_client_close_code_with_a_reason": Difference(
        "a client's close reason follows its code (RFC 6455 §5.5.1); gripcontrol read the code "
        "only from a CLOSE without a reason, ours reads both (close_code, close_reason)",
        peer=value([None, None]),
        ours=value([None, 1001]),
    ),
    "context_subscribe_to_an_empty_name": Difference(
        "an empty channel name is a mistake (with grip_prefix it subscribes to the prefix "
        "alone): ValueError, as everywhere in grip-asgi",
        peer=value([["TEXT", b'c:{"channel": "", "type": "subscribe"}']]),
        ours=raises("ValueError"),
    ),
    "context_close_without_a_code": Difference(
        "close() without a code sends 1000 (normal closure); gripcontrol sent code 0, which is "
        "not a valid close code (RFC 6455 §7.4.2), so clients saw a protocol error",
        peer=value([True, 0]),
        ours=value([True, 1000]),
    ),
    "context_close_with_code_100": Difference(
        _RFC_CLOSE, peer=value([True, 100]), ours=raises("ValueError")
    ),
    "context_close_with_reserved_code_1005": Difference(
        _RFC_CLOSE, peer=value([True, 1005]), ours=raises("ValueError")
    ),
    "channel_filters_appended": Difference(
        "Channel is an immutable, validated value (grip_asgi.Channel): filters are checked "
        "against Pushpin's header syntax when it is built, so pass Channel(name, "
        "filters=[...]) instead of appending to channel.filters",
        peer=value("c; filter=skip-self"),
        ours=raises("AttributeError"),
    ),
    "channel_header_without_channels": Difference(
        "no channels is a ValueError, not an assert (which python -O removes)",
        peer=raises("AssertionError"),
        ours=raises("ValueError"),
    ),
    "channel_header_with_a_comma_in_a_name": Difference(
        "Pushpin splits Grip-Channel on ',' and ';', so such a name would subscribe to other "
        "channels: it raises ValueError",
        peer=value("a,b"),
        ours=raises("ValueError"),
    ),
    "hold_stream_with_a_prev_id": Difference(
        "Pushpin fails a stream hold whose channel has a prev-id but no next link, so building "
        "one raises ValueError",
        peer=value(
            {"hold": {"mode": "stream", "channels": [{"name": "channel", "prev-id": "p1"}]}}
        ),
        ours=raises("ValueError"),
    ),
    "hold_with_an_unknown_mode": Difference(
        "Pushpin knows only the 'response' and 'stream' hold modes: another raises ValueError",
        peer=value({"hold": {"mode": "mode", "channels": [{"name": "channel"}]}}),
        ours=raises("ValueError"),
    ),
    "format_http_response_given_the_body_first": Difference(
        "the status code must be an int: django-grip's README long-poll example passes the "
        "body where the code goes, which gripcontrol published as the code (with an empty "
        "body), and Pushpin refused the item; ours raises TypeError saying to pass body=",
        peer=value({"code": "object v2\n", "headers": {"ETag": '"v2"'}, "body": b""}),
        ours=raises("TypeError"),
    ),
    "format_websocket_close_with_a_reserved_code": Difference(
        _RFC_CLOSE, peer=value({"action": "close", "code": 1005}), ours=raises("ValueError")
    ),
    "publish_non_blocking_failure_without_a_callback": Difference(
        "landscape D9: a failed non-blocking publish with no callback is logged as an error; "
        "pubcontrol reported it to nobody",
        peer=value([]),
        ours=value(["publish to 'news' failed: coul"]),
    ),
    "publish_without_a_proxy": Difference(
        "publishing with no proxy configured raises ValueError (a blocking publish) or reports "
        "the error; pubcontrol published to nobody and said nothing",
        peer=value(None),
        ours=raises("ValueError"),
    ),
}


@pytest.fixture(scope="module")
def peer(peer_observations: Any) -> dict[str, Any]:
    observations: dict[str, Any] = peer_observations(cases.__name__)
    return observations


@pytest.mark.parametrize("name", cases_for(cases.CASES, EXPECTED))
def test_behaves_like_gripcontrol(name: str, peer: dict[str, Any], capture: CaptureServer) -> None:
    harness = Harness(cases.peer_or_ours(gripcontrol, pubcontrol), capture)
    check(name, cases.CASES[name], harness, peer, EXPECTED)


def test_every_public_name_of_gripcontrol_is_provided() -> None:
    assert set(cases.NAMES) <= set(gripcontrol.__all__)
    assert {"Item", "Format"} <= set(pubcontrol.__all__)
