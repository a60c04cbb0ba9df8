"""Property-based fuzzing of the events decoder and of both middlewares' request paths.

Whatever the body, headers or size, the answer is a 2xx or a 4xx: never a 5xx, an exception
out of the middleware, or a hang (each ASGI call is bounded by ``asyncio.wait_for``). Limits
hold: a body over ``max_body_size`` is not read past the limit, and a decoded request never
has more events, or larger ones, than allowed.

CI runs ``GRIP_FUZZ_EXAMPLES`` (default 300) examples per property; the long run is
``GRIP_FUZZ_EXAMPLES=20000 pytest tests/security/test_fuzz.py``. The total of cases run is
printed at the end of the session.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from grip_asgi._context import GripLimits
from grip_asgi._errors import WebSocketDecodeError
from grip_asgi._websocket import WebSocketEvent, decode_websocket_events, encode_websocket_events
from grip_asgi.middleware import GripMiddleware, get_grip_context
from grip_asgi.testing import make_grip_sig
from tests.cases import GRIP_KEY, GRIP_URL, PROXY_REQUIRED, Case, Config, Expected, Request, signed
from tests.test_conformance import ADAPTERS, Observed, observe

from .conftest import FUZZ_PROFILE

FUZZ = settings(settings.get_profile(FUZZ_PROFILE))
EVENT_TYPES = ("OPEN", "TEXT", "BINARY", "PING", "PONG", "CLOSE", "DISCONNECT")
WEBSOCKET_EVENTS = "application/websocket-events"
GENUINE = make_grip_sig(GRIP_KEY, expires_in=10 * 365 * 86400)
#: Each ASGI call must finish within this many seconds: a bound on hangs, not a timing test.
HANG_BOUND = 10

# --- Bodies -----------------------------------------------------------------------------------

contents = st.binary(max_size=80) | st.sampled_from([b"", b"\r\n", b"TEXT 1\r\n", b"\xff\xfe"])


@st.composite
def well_formed_event(draw: st.DrawFn) -> bytes:
    event_type = draw(st.sampled_from(EVENT_TYPES)).encode()
    content = draw(st.none() | contents)
    if content is None:
        return event_type + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (event_type, len(content), content)


@st.composite
def mangled_event(draw: st.DrawFn) -> bytes:
    """An event with any one part wrong: its name, size field, content length or CRLFs."""
    name = draw(
        st.sampled_from(EVENT_TYPES)
        | st.sampled_from(["text", "OPEN ", "", "BOGUS", "TEXT\x00", "CLOSE\t"])
    ).encode("latin-1")
    content = draw(contents)
    size = draw(
        st.sampled_from(
            [
                b"%x" % len(content),
                b"%X" % len(content),
                b"0x%x" % len(content),
                b" %x" % len(content),
                b"+%x" % len(content),
                b"-1",
                b"",
                b"g",
                b"1_0",
                b"%x" % (len(content) + 1),
                b"%x" % max(len(content) - 1, 0),
                b"ffffffffffffffffffff",
                b"1" * 300,
            ]
        )
    )
    line_end = draw(st.sampled_from([b"\r\n", b"\n", b"", b"\r"]))
    content_end = draw(st.sampled_from([b"\r\n", b"\n", b"", b"\r\r"]))
    return name + b" " + size + line_end + content + content_end


bodies = st.one_of(
    st.lists(well_formed_event(), max_size=12).map(b"".join),
    st.lists(well_formed_event() | mangled_event(), max_size=12).map(b"".join),
    st.binary(max_size=600),
)
limits = st.builds(
    GripLimits,
    max_body_size=st.integers(1, 2048),
    max_events=st.integers(1, 16),
    max_event_size=st.integers(1, 128),
)


def is_within(events: Sequence[WebSocketEvent], limit: GripLimits) -> bool:
    return len(events) <= limit.max_events and all(
        len(event.content or b"") <= limit.max_event_size for event in events
    )


@FUZZ
@given(body=bodies, limit=limits)
def test_the_decoder_returns_events_within_the_limits_or_a_decode_error(
    body: bytes, limit: GripLimits, figures: Counter[str]
) -> None:
    figures["fuzz cases"] += 1
    try:
        events = decode_websocket_events(
            body, max_events=limit.max_events, max_event_size=limit.max_event_size
        )
    except WebSocketDecodeError as exc:
        assert str(exc).startswith("malformed WebSocket-over-HTTP body: ")
        return
    assert is_within(events, limit)
    # What was decoded is exactly what the body says: encoding it again gives the body back
    # (decoding is strict, so any size field it took was lowercase hex without padding).
    assert encode_websocket_events(events) == body


@FUZZ
@given(
    events=st.lists(
        st.builds(WebSocketEvent, st.sampled_from(EVENT_TYPES), st.none() | contents),
        max_size=20,
    )
)
def test_the_decoder_takes_back_what_the_encoder_writes(
    events: list[WebSocketEvent], figures: Counter[str]
) -> None:
    figures["fuzz cases"] += 1
    body = encode_websocket_events(events)
    largest = max((len(event.content or b"") for event in events), default=0)
    assert decode_websocket_events(body, max_events=len(events) or 1) == events
    assert decode_websocket_events(body, max_event_size=largest or 1) == events
    if events:
        try:
            decode_websocket_events(body, max_events=len(events) - 1 or None)
        except WebSocketDecodeError:
            pass
        else:
            assert len(events) == 1  # max_events=None: no limit
    if largest:
        try:
            decode_websocket_events(body, max_event_size=largest - 1 or None)
        except WebSocketDecodeError:
            pass
        else:
            assert largest == 1


# --- Requests through every adapter ------------------------------------------------------------

header_text = st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40
) | st.sampled_from(["", " ", '"', 'a; last-id="unterminated', "ch; last-id=1, ch2; last-id=2"])
big_header_text = header_text | st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["ch; last-id=1, ", '"', ";", ",", "a=b; ", "é"]),
    st.integers(100, 4000),
)
header_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
grip_sigs = st.sampled_from(
    [
        (),
        (GENUINE,),
        ("garbage",),
        (make_grip_sig("wrong-key-" + GRIP_KEY),),
        (GENUINE, GENUINE),
        (GENUINE + " ",),
        ("",),
    ]
)
content_types = st.sampled_from(
    [
        None,
        WEBSOCKET_EVENTS,
        WEBSOCKET_EVENTS + "; charset=utf-8",
        "Application/WebSocket-Events",
        "text/plain",
        "application/websocket-events-x",
        "",
    ]
)


@dataclass(frozen=True)
class FuzzRequest:
    request: Request
    config: Config
    #: The app's handler echoes WebSocket messages (else it describes what it saw).
    echoes: bool


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]))
    grip_sig = draw(grip_sigs)
    headers: list[tuple[str, str]] = [("Grip-Sig", value) for value in grip_sig]
    content_type = draw(content_types)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    connection_id = draw(st.none() | st.sampled_from(["", "conn-1"]) | header_text)
    if connection_id is not None:
        headers.append(("Connection-Id", connection_id))
    for name, value in draw(st.lists(st.tuples(header_names, big_header_text), max_size=4)):
        headers.append(("Meta-" + name, value))
    for name in ("Grip-Last", "Grip-Feature"):
        headers.extend((name, value) for value in draw(st.lists(big_header_text, max_size=2)))
    for name, value in draw(st.lists(st.tuples(header_names, header_text), max_size=3)):
        headers.append(("X-Fuzz-" + name, value))
    body = draw(bodies | st.binary(min_size=1000, max_size=70_000))
    config = Config(
        proxy_required=draw(st.booleans()),
        proxy_only=draw(st.booleans()),
        max_body_size=draw(st.sampled_from([None, 64, 1024])),
    )
    # Only a signed WebSocket-over-HTTP request reaches a handler with a WebSocket context.
    is_websocket = (
        grip_sig == (GENUINE,)
        and method == "POST"
        and content_type is not None
        and content_type.split(";")[0].strip().lower() == WEBSOCKET_EVENTS
        and bool(connection_id)
    )
    return FuzzRequest(Request(method, tuple(headers), body), config, is_websocket)


def check_answer(adapter: str, observed: Observed, config: Config) -> None:
    assert observed.error is None, (adapter, observed)
    if (config.proxy_required or config.proxy_only) and observed.status == 501:
        # The answer to a direct client when a proxy is required (django-grip's status).
        assert observed.body == PROXY_REQUIRED
        return
    assert 200 <= observed.status < 500, (adapter, observed)


@FUZZ
@given(fuzz=fuzz_requests())
def test_every_adapter_answers_any_request_with_2xx_or_4xx(
    fuzz: FuzzRequest, figures: Counter[str]
) -> None:
    figures["fuzz cases"] += 1
    behaviour = "ws_echo" if fuzz.echoes else "describe"
    case = Case("fuzz", behaviour, fuzz.request, Expected(200), fuzz.config)
    for adapter in ADAPTERS:
        check_answer(adapter, observe(adapter, case), fuzz.config)


# --- The ASGI middleware, body delivered in chunks, tight limits ----------------------------


async def echo_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI handler: echoes WebSocket messages, else answers ``ok``."""
    ws = get_grip_context(scope).ws
    if ws is not None:
        if ws.is_opening():
            ws.accept()
        for message in ws:
            ws.send(message)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class AsgiResult:
    status: int | None
    body: bytes
    bytes_read: int


async def call_in_chunks(
    app: GripMiddleware, headers: list[tuple[bytes, bytes]], chunks: list[bytes], disconnect: bool
) -> AsgiResult:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    pending = list(chunks)
    read = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if pending:
            chunk = pending.pop(0)
            read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending or disconnect)}
        if disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a server waits for the app: never reached here
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), HANG_BOUND)
    status = sent[0]["status"] if sent else None
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return AsgiResult(status, body, read)


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    edges = [0, *cuts, len(body)]
    return [body[start:end] for start, end in zip(edges, edges[1:], strict=False)]


@FUZZ
@given(data=st.data(), body=bodies | st.binary(min_size=2000, max_size=20_000), limit=limits)
def test_the_asgi_middleware_keeps_its_limits_with_any_chunking(
    data: st.DataObject, body: bytes, limit: GripLimits, figures: Counter[str]
) -> None:
    figures["fuzz cases"] += 1
    chunks = data.draw(chunked(body))
    disconnect = data.draw(st.booleans())
    declared = data.draw(st.sampled_from([None, len(body)]))
    headers = [
        (b"grip-sig", GENUINE.encode()),
        (b"content-type", WEBSOCKET_EVENTS.encode()),
        (b"connection-id", b"conn-1"),
    ]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    app = GripMiddleware(echo_app, grip=GRIP_URL, limits=limit)

    result = asyncio.run(call_in_chunks(app, headers, chunks, disconnect))

    # Never more than one chunk past the limit is read, and a declared size over it is not
    # read at all.
    largest_chunk = max((len(chunk) for chunk in chunks), default=0)
    assert result.bytes_read <= limit.max_body_size + largest_chunk
    if declared is not None and declared > limit.max_body_size:
        assert (result.status, result.bytes_read) == (413, 0)
    if result.status is None:
        assert disconnect  # only a client that went away gets no answer
        return
    assert 200 <= result.status < 500, result
    if result.status == 200:
        assert len(body) <= limit.max_body_size
        events = decode_websocket_events(result.body)
        # Each message comes back once, with its 2-byte "m:" prefix, plus OPEN and a CLOSE.
        assert len(events) <= limit.max_events + 2
        assert all(len(e.content or b"") <= limit.max_event_size + 2 for e in events)


# --- What the app sees is the same through every adapter ------------------------------------

channel_names = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters=',;"= '),
    min_size=1,
    max_size=12,
)


def utf8_on_the_wire(text: str) -> str:
    """``text`` as a server hands over header bytes that were sent as UTF-8 (PEP 3333)."""
    return text.encode("utf-8").decode("latin-1")


@FUZZ
@given(last=st.dictionaries(channel_names, channel_names, min_size=1, max_size=4))
def test_every_adapter_reads_utf8_grip_last_alike(
    last: dict[str, str], figures: Counter[str]
) -> None:
    figures["fuzz cases"] += 1
    value = ", ".join(f"{channel}; last-id={last_id}" for channel, last_id in last.items())
    request = Request(headers=signed(("Grip-Last", utf8_on_the_wire(value))))
    case = Case("utf-8", "describe", request, Expected(200))
    for adapter in ADAPTERS:
        seen = json.loads(observe(adapter, case).body)
        assert seen["last"] == last, adapter
