"""GripProcessor and GripContext, without any adapter: head in, decisions out."""

from __future__ import annotations

import pytest

from grip_asgi import (
    ConnectionIdMissingError,
    GripLimits,
    GripProcessor,
    GripSettings,
    InstructAlreadyStartedError,
    InstructNotAvailableError,
    RequestHead,
    RequestHeaderTooLargeError,
    RequestTooLargeError,
)
from grip_asgi._context import meta_name, parse_content_length
from grip_asgi._errors import InstructTooLateError
from grip_asgi.testing import make_grip_sig

KEY = "a-key-for-the-context-tests"
SETTINGS = GripSettings.build(
    f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}", prefix="p-"
)
NOW = 1_800_000_000.0


def processor(**kwargs: object) -> GripProcessor:
    return GripProcessor(SETTINGS, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def signed_head(method: str = "GET", **kwargs: object) -> RequestHead:
    token = make_grip_sig(KEY, now=NOW)
    return RequestHead(method, grip_sig=[token], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["is_proxied", "is_signed", "ws", "prefix", "_instruct"])
def test_the_shared_unproxied_context_is_read_only(name: str) -> None:
    """One handler's change must not leak into every later direct request."""
    shared = processor().unproxied
    with pytest.raises(AttributeError, match="shared and read-only"):
        setattr(shared, name, True)
    assert (shared.is_proxied, shared.ws, dict(shared.last), shared.features) == (
        False,
        None,
        {},
        frozenset(),
    )


def test_a_refused_grip_sig_gets_a_context_of_its_own() -> None:
    p = processor()
    ctx = p.inspect(RequestHead("GET", grip_sig=["forged"]))
    assert ctx is not p.unproxied and ctx.sig_error == "malformed token"
    ctx.prefix = "changed"  # its own: nothing shared changes
    assert p.inspect(RequestHead("GET", grip_sig=["forged"])).prefix == "p-"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("٣", None),  # an Arabic-Indic digit: str.isdigit() says yes, HTTP says no
        ("１２", None),  # fullwidth digits
        ("²", None),
        ("+5", None),
        (" 5", None),
        ("", None),
        ("9" * 5000, 10**18),  # past int()'s digit limit: too large, never a crash
    ],
)
def test_content_length_is_plain_ascii_digits(value: str, expected: int | None) -> None:
    assert parse_content_length(value) == expected


def test_a_huge_declared_websocket_body_is_413_without_reading_it() -> None:
    head = signed_head(
        "POST",
        content_type="application/websocket-events",
        connection_id="c",
        content_length=parse_content_length("9" * 5000),
    )
    p = processor()
    with pytest.raises(RequestTooLargeError):
        p.wants_websocket_body(p.inspect(head), head)


@pytest.mark.parametrize(
    ("raw", "name"), [("User-Id", "user-id"), ("user_id", "user-id"), ("USER_NAME", "user-name")]
)
def test_meta_names_are_one_rule_for_every_adapter(raw: str, name: str) -> None:
    assert meta_name(raw) == name


def test_no_grip_sig_gives_the_shared_unproxied_context() -> None:
    p = processor()
    ctx = p.inspect(RequestHead("GET"))
    assert ctx is p.unproxied
    assert not ctx.proxied and not ctx.signed and ctx.needs_signed
    assert repr(ctx) == "<GripContext proxied=False signed=False ws=False instruct=False>"
    with pytest.raises(InstructNotAvailableError, match="did not come through a GRIP proxy"):
        ctx.start_instruct()
    with pytest.raises(TypeError):
        ctx.last["a"] = "1"  # type: ignore[index]


def test_signed_request_parses_the_proxy_headers() -> None:
    head = signed_head(grip_last=["a; last-id=1, b; last-id=2"], grip_feature=["link:next"])
    ctx = processor().inspect(head)
    assert ctx.proxied and ctx.signed and ctx.sig_error is None
    assert dict(ctx.last) == {"a": "1", "b": "2"}
    assert ctx.features == frozenset({"link:next"})
    instruct = ctx.start_instruct()
    assert ctx.instruct is instruct
    with pytest.raises(InstructAlreadyStartedError):
        ctx.start_instruct()


def test_rejected_signature_says_why() -> None:
    expired = make_grip_sig(KEY, now=NOW - 7200)
    ctx = processor().inspect(RequestHead("GET", grip_sig=[expired]))
    assert not ctx.is_proxied and ctx.sig_error == "expired"
    with pytest.raises(InstructNotAvailableError, match=r"Grip-Sig rejected: expired"):
        ctx.start_instruct()


@pytest.mark.parametrize(
    ("status", "expected_status", "grip_status"),
    [(200, 200, None), (304, 200, "304"), (404, 404, None)],
)
def test_instruct_response(status: int, expected_status: int, grip_status: str | None) -> None:
    p = processor()
    assert p.instruct_response(p.inspect(signed_head()), status) is None
    ctx = p.inspect(signed_head())
    ctx.start_instruct().add_channel("c").set_hold_longpoll()
    plan = p.instruct_response(ctx, status)
    assert plan is not None
    assert plan.status == expected_status
    assert ("Grip-Channel", "p-c") in plan.headers
    assert dict(plan.headers).get("Grip-Status") == grip_status
    # A 304 may carry the entity's Content-Length; the 200 standing in for it has no body.
    assert plan.drop_content_length is (status == 304)


@pytest.mark.parametrize("started", [False, True])
def test_an_instruct_after_the_response_was_planned_is_too_late(started: bool) -> None:
    p = processor()
    ctx = p.inspect(signed_head())
    if started:
        ctx.start_instruct()
    p.instruct_response(ctx, 200)  # the adapter sends the headers now
    error = InstructAlreadyStartedError if started else InstructTooLateError
    with pytest.raises(error):
        ctx.start_instruct()
    # Direct requests are refused as before, and their shared context is left as it was.
    p.instruct_response(p.unproxied, 200)
    with pytest.raises(InstructNotAvailableError):
        p.unproxied.start_instruct()


def test_an_explicit_grip_status_is_kept_on_304() -> None:
    p = processor()
    ctx = p.inspect(signed_head())
    ctx.start_instruct().add_channel("c").set_hold_longpoll().set_status(304, "Custom")
    plan = p.instruct_response(ctx, 304)
    assert plan is not None and plan[0] == 304
    assert dict(plan[1])["Grip-Status"] == "304 Custom"


@pytest.mark.parametrize(
    ("method", "content_type", "expected"),
    [
        ("POST", "application/websocket-events", True),
        ("POST", "Application/WebSocket-Events; charset=utf-8", True),
        ("GET", "application/websocket-events", False),
        ("POST", "text/plain", False),
        ("POST", None, False),
    ],
)
def test_websocket_events_detection(method: str, content_type: str | None, expected: bool) -> None:
    head = RequestHead(method, content_type=content_type)
    assert head.is_websocket_events is expected
    assert repr(head) == f"<RequestHead {method} websocket_events={expected}>"


def test_websocket_body_rules() -> None:
    p = processor(limits=GripLimits(max_body_size=10))
    head = signed_head("POST", content_type="application/websocket-events")
    ctx = p.inspect(head)
    with pytest.raises(ConnectionIdMissingError):
        p.wants_websocket_body(ctx, head)
    head.connection_id = "c1"
    head.content_length = 11
    with pytest.raises(RequestTooLargeError, match="11 bytes"):
        p.wants_websocket_body(ctx, head)
    head.content_length = None
    assert p.wants_websocket_body(ctx, head)
    with pytest.raises(RequestTooLargeError):
        p.attach_websocket(ctx, head, b"x" * 11)
    head.meta = {"user": "ann"}
    p.attach_websocket(ctx, head, b"OPEN\r\n")
    assert ctx.ws is not None and ctx.ws.is_opening() and ctx.ws.meta == {"user": "ann"}
    assert ctx.ws.prefix == "p-"
    assert not p.wants_websocket_body(p.unproxied, head)


@pytest.mark.parametrize("field", ["max_body_size", "max_events", "max_event_size"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_limits_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        GripLimits(**{field: value})  # type: ignore[arg-type]


def test_grip_header_limits() -> None:
    p = processor(limits=GripLimits(max_header_size=20, max_meta_headers=2))
    meta = {"a": "1", "b": "2", "c": "3"}
    websocket = {"content_type": "application/websocket-events", "connection_id": "c1"}
    with pytest.raises(RequestHeaderTooLargeError, match="3 Meta-\\* headers") as too_many:
        p.inspect(signed_head("POST", meta=meta, **websocket))
    assert too_many.value.status_hint == 431
    # Meta-* is read only on WebSocket-over-HTTP requests, so it is not counted elsewhere.
    assert p.inspect(signed_head("GET", meta=meta)).is_proxied
    with pytest.raises(RequestHeaderTooLargeError, match="20-character limit"):
        p.inspect(signed_head(grip_last=["a; last-id=" + "1" * 20]))
    with pytest.raises(RequestHeaderTooLargeError):
        p.inspect(signed_head("POST", **{**websocket, "connection_id": "c" * 21}))
    with pytest.raises(RequestHeaderTooLargeError):  # bounded on every proxied request
        p.inspect(signed_head("GET", connection_id="c" * 21))
    assert p.inspect(signed_head(grip_last=["a; last-id=1"])).last == {"a": "1"}
