"""GripMiddleware driven by raw ASGI messages: what goes in, what comes out, in what order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from grip_asgi import (
    GripContext,
    GripLimits,
    GripMiddleware,
    GripSettings,
    InstructNotAvailableError,
    WebSocketDecodeError,
    get_grip_context,
    get_publisher,
)
from grip_asgi._context import PROXY_REQUIRED_MESSAGE
from grip_asgi._errors import InstructTooLateError
from grip_asgi.middleware import Message, Receive, Scope, Send
from grip_asgi.testing import GripTestProxy, close_event, open_event, text_event

GRIP_URL = "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=secret-key-for-tests"
proxy = GripTestProxy(key="secret-key-for-tests", iss="pushpin")


def http_scope(
    method: str = "GET", path: str = "/", headers: dict[str, str] | None = None
) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def run(
    app: Callable[..., Any], scope: Scope, body: bytes = b"", chunk: int | None = None
) -> list[Message]:
    """Call ``app`` with ``body`` (in chunks of ``chunk`` bytes) and collect what it sends."""
    parts = (
        [body]
        if chunk is None
        else [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    )
    incoming: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


def status_of(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def headers_of(sent: list[Message]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def make_app(handler: Callable[[GripContext, bytes], Any], status: int = 200, body: bytes = b"ok"):
    """A raw ASGI app that reads its body, calls ``handler(ctx, body)`` and answers."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received = b""
        while True:
            message = await receive()
            received += message.get("body", b"")
            if not message.get("more_body"):
                break
        result = handler(get_grip_context(scope), received)
        if hasattr(result, "__await__"):
            await result
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.anyio
async def test_plain_request_passes_through_with_an_unproxied_context() -> None:
    seen: list[GripContext] = []
    app = GripMiddleware(make_app(lambda ctx, body: seen.append(ctx)), grip=GRIP_URL)
    sent = await run(app, http_scope(headers={"X-Other": "1"}))
    assert status_of(sent) == 200
    assert headers_of(sent) == {"content-type": "text/plain"}
    assert body_of(sent) == b"ok"
    assert not seen[0].is_proxied and not seen[0].is_signed and seen[0].needs_signed
    assert seen[0].ws is None


@pytest.mark.anyio
async def test_signed_request_is_proxied_and_gets_instruct_headers() -> None:
    def hold(ctx: GripContext, body: bytes) -> None:
        assert ctx.is_proxied and ctx.is_signed
        assert "link:next" in ctx.features
        ctx.start_instruct().add_channel("news").set_hold_stream()

    app = GripMiddleware(make_app(hold), grip=GRIP_URL, prefix="app-")
    sent = await run(app, http_scope(headers=proxy.headers()))
    headers = headers_of(sent)
    assert headers["grip-hold"] == "stream"
    assert headers["grip-channel"] == "app-news"
    assert body_of(sent) == b"ok"


@pytest.mark.parametrize(
    ("grip_sig", "reason"),
    [
        ("garbage", None),
        (
            GripTestProxy(key="wrong-key-wrong-key", iss="pushpin").headers()["Grip-Sig"],
            "bad signature",
        ),
        (GripTestProxy(key="secret-key-for-tests", iss="other").headers()["Grip-Sig"], None),
    ],
)
@pytest.mark.anyio
async def test_unverifiable_signature_is_not_proxied(grip_sig: str, reason: str | None) -> None:
    seen: list[GripContext] = []
    app = GripMiddleware(make_app(lambda ctx, body: seen.append(ctx)), grip=GRIP_URL)
    await run(app, http_scope(headers={"Grip-Sig": grip_sig, "Grip-Last": "a; last-id=1"}))
    ctx = seen[0]
    assert not ctx.is_proxied and not ctx.is_signed
    assert ctx.sig_error
    if reason:
        assert ctx.sig_error == reason
    assert dict(ctx.last) == {}  # a forged Grip-Last is ignored


@pytest.mark.anyio
async def test_several_grip_sig_headers_are_not_proxied() -> None:
    seen: list[GripContext] = []
    app = GripMiddleware(make_app(lambda ctx, body: seen.append(ctx)), grip=GRIP_URL)
    scope = http_scope(headers=proxy.headers())
    scope["headers"].append((b"grip-sig", proxy.headers()["Grip-Sig"].encode()))
    await run(app, scope)
    assert not seen[0].is_proxied
    assert seen[0].sig_error == "several Grip-Sig headers"


@pytest.mark.anyio
async def test_without_keys_any_grip_sig_counts_as_proxied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[GripContext] = []
    app = GripMiddleware(make_app(lambda ctx, body: seen.append(ctx)), grip="http://127.0.0.1:5561")
    assert "any client can pose as the proxy" in caplog.text
    await run(app, http_scope(headers={"Grip-Sig": "anything", "Grip-Last": "a; last-id=1"}))
    assert seen[0].is_proxied and not seen[0].is_signed and not seen[0].needs_signed
    assert dict(seen[0].last) == {"a": "1"}


@pytest.mark.anyio
async def test_not_modified_with_an_instruct_becomes_200_with_grip_status() -> None:
    app = GripMiddleware(
        make_app(
            lambda ctx, body: ctx.start_instruct().add_channel("c").set_hold_longpoll(),
            status=304,
            body=b"",
        ),
        grip=GRIP_URL,
    )
    sent = await run(app, http_scope(headers=proxy.headers()))
    assert status_of(sent) == 200
    assert headers_of(sent)["grip-status"] == "304"
    assert headers_of(sent)["grip-hold"] == "response"


@pytest.mark.anyio
async def test_not_modified_without_an_instruct_is_untouched() -> None:
    app = GripMiddleware(make_app(lambda ctx, body: None, status=304, body=b""), grip=GRIP_URL)
    sent = await run(app, http_scope(headers=proxy.headers()))
    assert status_of(sent) == 304
    assert "grip-status" not in headers_of(sent)


@pytest.mark.parametrize("proxied", [False, True])
@pytest.mark.anyio
async def test_proxy_only_answers_501_to_direct_clients(proxied: bool) -> None:
    app = GripMiddleware(make_app(lambda ctx, body: None), grip=GRIP_URL, proxy_only=True)
    sent = await run(
        app, http_scope(headers=proxy.headers() if proxied else {"Grip-Sig": "forged"})
    )
    assert status_of(sent) == (200 if proxied else 501)
    sent = await run(app, http_scope())
    assert status_of(sent) == 501
    assert b"GRIP proxy" in body_of(sent)


def hold(ctx: GripContext, body: bytes) -> None:
    ctx.start_instruct().add_channel("c").set_hold_stream()


@pytest.mark.parametrize("headers", [{}, {"Grip-Sig": "forged"}])
@pytest.mark.anyio
async def test_proxy_required_answers_501_only_to_grip_answers(headers: dict[str, str]) -> None:
    """django-grip's meaning: a health check still answers; a hold for a direct client is 501."""
    plain = GripMiddleware(make_app(lambda ctx, body: None), grip=GRIP_URL, proxy_required=True)
    assert status_of(await run(plain, http_scope(headers=headers))) == 200
    holding = GripMiddleware(make_app(hold), grip=GRIP_URL, proxy_required=True)
    sent = await run(holding, http_scope(headers=headers))
    assert (status_of(sent), body_of(sent)) == (501, PROXY_REQUIRED_MESSAGE.encode() + b"\n")
    signed = await run(holding, http_scope(headers=proxy.headers()))
    assert headers_of(signed)["grip-hold"] == "stream"


@pytest.mark.anyio
async def test_without_proxy_required_a_hold_for_a_direct_client_is_the_apps_error() -> None:
    with pytest.raises(InstructNotAvailableError):
        await run(GripMiddleware(make_app(hold), grip=GRIP_URL), http_scope())


@pytest.mark.anyio
async def test_proxy_required_cannot_answer_501_once_the_response_started() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        get_grip_context(scope).start_instruct()

    with pytest.raises(InstructNotAvailableError):
        await run(GripMiddleware(app, grip=GRIP_URL, proxy_required=True), http_scope())


@pytest.mark.anyio
async def test_stream_chunks_pass_through_one_by_one() -> None:
    """The middleware must not buffer: chunk 2 is only produced after chunk 1 reached the server."""
    first_chunk_out = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        get_grip_context(scope).start_instruct().add_channel("s").set_hold_stream()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        with anyio.fail_after(2):
            await first_chunk_out.wait()
        await send({"type": "http.response.body", "body": b"two", "more_body": False})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"one":
            first_chunk_out.set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    await GripMiddleware(app, grip=GRIP_URL)(http_scope(headers=proxy.headers()), receive, send)
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    assert headers_of(sent)["grip-hold"] == "stream"


@pytest.mark.parametrize("scope_type", ["lifespan"])
@pytest.mark.anyio
async def test_non_http_scopes_pass_through(scope_type: str) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["type"])
        assert "state" not in scope or "grip" not in scope["state"]
        await send({"type": "done"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {}

    await GripMiddleware(app, grip=GRIP_URL)({"type": scope_type}, receive, send)
    assert calls == [scope_type] and sent == [{"type": "done"}]


@pytest.mark.anyio
async def test_lifespan_shutdown_closes_the_publisher() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "lifespan.shutdown.complete"})

    middleware = GripMiddleware(app, grip=GRIP_URL)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "lifespan.shutdown"}

    publisher = middleware.publisher
    await middleware({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.shutdown.complete"}]
    assert publisher.closed
    assert middleware.publisher is not publisher and not middleware.publisher.closed


def ws_scope(request_headers: dict[str, str], path: str = "/ws") -> Scope:
    return http_scope("POST", path, request_headers)


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.anyio
async def test_websocket_over_http_echo_and_the_app_still_sees_the_body(chunk: int | None) -> None:
    bodies: list[bytes] = []

    def echo(ctx: GripContext, body: bytes) -> None:
        bodies.append(body)
        ws = ctx.ws
        assert ws is not None
        if ws.is_opening():
            ws.accept()
        for message in ws:
            ws.send(message)

    request = proxy.websocket(
        open_event(), text_event("hello"), connection_id="c1", meta={"user": "ann"}
    )
    app = GripMiddleware(make_app(echo, body=b"app body is replaced"), grip=GRIP_URL)
    sent = await run(app, ws_scope(request.headers), request.content, chunk=chunk)
    assert bodies == [request.content]
    assert status_of(sent) == 200
    headers = headers_of(sent)
    assert headers["content-type"] == "application/websocket-events"
    assert headers["sec-websocket-extensions"] == "grip"
    body = body_of(sent)
    assert body == b"OPEN\r\nTEXT 7\r\nm:hello\r\n"
    assert headers["content-length"] == str(len(body))


@pytest.mark.anyio
async def test_websocket_meta_changes_become_set_meta_headers() -> None:
    def handler(ctx: GripContext, body: bytes) -> None:
        assert ctx.ws is not None and ctx.ws.meta == {"user": "ann"}
        ctx.ws.meta["room"] = "lobby"
        del ctx.ws.meta["user"]

    request = proxy.websocket(text_event("x"), meta={"User": "ann"})
    sent = await run(
        GripMiddleware(make_app(handler), grip=GRIP_URL), ws_scope(request.headers), request.content
    )
    headers = headers_of(sent)
    assert headers["set-meta-room"] == "lobby"
    assert headers["set-meta-user"] == ""


@pytest.mark.anyio
async def test_websocket_close_is_echoed() -> None:
    def handler(ctx: GripContext, body: bytes) -> None:
        assert ctx.ws is not None
        assert list(ctx.ws) == []
        assert ctx.ws.close_code == 4001

    request = proxy.websocket(close_event(4001, "bye"))
    sent = await run(
        GripMiddleware(make_app(handler), grip=GRIP_URL), ws_scope(request.headers), request.content
    )
    assert body_of(sent).startswith(b"CLOSE ")
    assert b"\x0f\xa1" in body_of(sent)


@pytest.mark.anyio
async def test_websocket_non_2xx_reply_passes_through() -> None:
    request = proxy.websocket(open_event())
    app = GripMiddleware(
        make_app(lambda ctx, body: None, status=403, body=b"go away"), grip=GRIP_URL
    )
    sent = await run(app, ws_scope(request.headers), request.content)
    assert status_of(sent) == 403 and body_of(sent) == b"go away"


@pytest.mark.anyio
async def test_websocket_reject_on_open() -> None:
    def handler(ctx: GripContext, body: bytes) -> None:
        assert ctx.ws is not None
        ctx.ws.reject(403, "members only")

    request = proxy.websocket(open_event())
    sent = await run(
        GripMiddleware(make_app(handler), grip=GRIP_URL), ws_scope(request.headers), request.content
    )
    assert status_of(sent) == 403
    assert body_of(sent) == b"members only"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"TEXT 5\r\nhi", {}, 400, b"truncated"),
        (b"BOGUS\r\n", {}, 400, b"BOGUS"),
        (b"OPEN\r\n", {"Connection-Id": ""}, 400, b"Connection-Id"),
        (b"TEXT 10\r\n" + b"x" * 16 + b"\r\n", {}, 413, b"limit"),
        (b"OPEN\r\n", {"Content-Length": "999999"}, 413, b"999999 bytes"),
    ],
)
@pytest.mark.anyio
async def test_bad_websocket_requests_get_a_4xx_naming_the_problem(
    body: bytes, headers: dict[str, str], status: int, message: bytes
) -> None:
    called: list[bool] = []
    request = proxy.websocket()
    request_headers = {**request.headers, **headers}
    if request_headers.get("Connection-Id") == "":
        del request_headers["Connection-Id"]
    app = GripMiddleware(
        make_app(lambda ctx, b: called.append(True)), grip=GRIP_URL, max_body_size=20
    )
    sent = await run(app, ws_scope(request_headers), body)
    assert status_of(sent) == status
    assert message in body_of(sent), body_of(sent)
    assert not called


@pytest.mark.anyio
async def test_unproxied_websocket_body_gets_no_context() -> None:
    seen: list[GripContext] = []
    request = proxy.websocket(open_event())
    headers = {**request.headers, "Grip-Sig": "forged"}
    app = GripMiddleware(make_app(lambda ctx, body: seen.append(ctx)), grip=GRIP_URL)
    sent = await run(app, ws_scope(headers), request.content)
    assert seen[0].ws is None and not seen[0].is_proxied
    assert body_of(sent) == b"ok"


@pytest.mark.anyio
async def test_client_disconnect_while_reading_the_body_ends_quietly() -> None:
    request = proxy.websocket(open_event())
    called: list[bool] = []
    app = GripMiddleware(make_app(lambda ctx, body: called.append(True)), grip=GRIP_URL)
    messages: list[Message] = [
        {"type": "http.request", "body": b"OP", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(ws_scope(request.headers), receive, send)
    assert sent == [] and called == []


def test_get_grip_context_without_middleware_says_so() -> None:
    with pytest.raises(RuntimeError, match="GripMiddleware must be installed"):
        get_grip_context(http_scope())


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIP_URL", GRIP_URL)
    monkeypatch.setenv("GRIP_PREFIX", "env-")
    monkeypatch.setenv("GRIP_PROXY_REQUIRED", "true")

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    middleware = GripMiddleware(app)
    settings = middleware.processor.settings
    assert settings.prefix == "env-" and settings.proxy_required
    assert settings.proxies[0].verify_iss == "pushpin"
    assert middleware.processor.needs_signed
    assert (
        GripMiddleware(app, prefix="kw-", proxy_required=False).processor.settings.prefix == "kw-"
    )


@pytest.mark.anyio
async def test_a_protocol_error_after_the_reply_started_is_not_answered_twice() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 403, "headers": []})
        ws = get_grip_context(scope).ws
        assert ws is not None
        ws.recv()  # a TEXT that is not UTF-8: a GripProtocolError

    request = proxy.websocket(open_event())
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"OPEN\r\nTEXT 1\r\n\xff\r\n", "more_body": False}

    with pytest.raises(WebSocketDecodeError):
        await GripMiddleware(app, grip=GRIP_URL)(ws_scope(request.headers), receive, send)
    assert [m["type"] for m in sent] == ["http.response.start"]


def test_settings_and_a_publisher_outside_the_middleware() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        pass

    settings = GripSettings.build(GRIP_URL, prefix="s-")
    assert GripMiddleware(app, grip=settings).processor.settings.prefix == "s-"
    with pytest.raises(RuntimeError, match="GripMiddleware must be installed"):
        get_publisher(http_scope())


# --- The WebSocket-over-HTTP reply always reaches the server as one valid response ---------


def replying(*messages: Message) -> Callable[..., Any]:
    """A raw ASGI app that echoes the client's WebSocket messages, then sends ``messages``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        ws = get_grip_context(scope).ws
        assert ws is not None
        for received in ws:
            ws.send(received)
        for message in messages:
            await send(message)

    return app


START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"kept")]}


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(
            [
                {**START, "trailers": True, "headers": [*START["headers"], (b"trailer", b"x")]},
                {"type": "http.response.body", "body": b"app body"},
                {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]},
            ],
            id="trailers",
        ),
        pytest.param(
            [START, {"type": "http.response.pathsend", "path": "/srv/file.txt"}], id="pathsend"
        ),
        pytest.param(
            [
                START,
                {"type": "http.response.zerocopysend", "file": 99, "more_body": True},
                {"type": "http.response.zerocopysend", "file": 99, "count": 10},
            ],
            id="zerocopysend",
        ),
        pytest.param([START], id="start without a body"),
    ],
)
@pytest.mark.anyio
async def test_a_replaced_websocket_reply_is_one_valid_response(messages: list[Message]) -> None:
    request = proxy.websocket(text_event("hi"))
    app = GripMiddleware(replying(*messages), grip=GRIP_URL)
    sent = await run(app, ws_scope(request.headers), request.content)
    # Start, then the events as the one body; no trailers, since the start announces none.
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert not sent[0].get("trailers", False)
    assert sent[1].get("more_body", False) is False
    headers = headers_of(sent)
    assert headers["content-type"] == "application/websocket-events"
    assert "trailer" not in headers and headers["x-app"] == "kept"
    assert body_of(sent) == b"TEXT 4\r\nm:hi\r\n"
    assert headers["content-length"] == str(len(body_of(sent)))


@pytest.mark.anyio
async def test_a_replaced_websocket_reply_drops_the_apps_content_encoding() -> None:
    start = {**START, "headers": [(b"content-encoding", b"gzip"), (b"x-app", b"kept")]}
    request = proxy.websocket(text_event("hi"))
    app = GripMiddleware(
        replying(start, {"type": "http.response.body", "body": b"\x1f\x8b"}), grip=GRIP_URL
    )
    sent = await run(app, ws_scope(request.headers), request.content)
    assert body_of(sent) == b"TEXT 4\r\nm:hi\r\n"
    assert "content-encoding" not in headers_of(sent) and headers_of(sent)["x-app"] == "kept"


@pytest.mark.anyio
async def test_a_websocket_reply_that_is_not_replaced_keeps_its_trailers() -> None:
    messages: list[Message] = [
        {"type": "http.response.start", "status": 403, "headers": [], "trailers": True},
        {"type": "http.response.body", "body": b"no"},
        {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]},
    ]
    request = proxy.websocket(open_event())
    sent = await run(
        GripMiddleware(replying(*messages), grip=GRIP_URL),
        ws_scope(request.headers),
        request.content,
    )
    assert sent == messages


# --- Instructs and the response start -------------------------------------------------------


@pytest.mark.anyio
async def test_an_instruct_started_after_the_response_started_raises() -> None:
    """The headers are gone: a hold started from a streaming body would never reach the proxy."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[open]\n", "more_body": True})
        get_grip_context(scope).start_instruct()

    with pytest.raises(InstructTooLateError, match="after the response started"):
        await run(GripMiddleware(app, grip=GRIP_URL), http_scope(headers=proxy.headers()))


@pytest.mark.anyio
async def test_an_instruct_started_in_a_starlette_streaming_body_raises() -> None:
    async def body(grip: GripContext) -> AsyncIterator[bytes]:
        yield b"[open]\n"
        grip.start_instruct().add_channel("late").set_hold_stream()
        yield b"never\n"  # pragma: no cover

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(body(get_grip_context(request)))

    app = GripMiddleware(Starlette(routes=[Route("/", stream)]), grip=GRIP_URL)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(InstructTooLateError), anyio.fail_after(5):
        await app(http_scope(headers=proxy.headers()), receive, send)
    assert "grip-hold" not in headers_of(sent)
    assert body_of(sent) == b"[open]\n"


@pytest.mark.anyio
async def test_not_modified_rewrite_drops_the_entitys_content_length() -> None:
    """A 304 may carry the entity's Content-Length; the 200 that replaces it has no body."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        get_grip_context(scope).start_instruct().add_channel("c").set_hold_longpoll()
        headers = [(b"etag", b'"v1"'), (b"Content-Length", b"1234")]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent = await run(GripMiddleware(app, grip=GRIP_URL), http_scope(headers=proxy.headers()))
    headers = headers_of(sent)
    assert status_of(sent) == 200 and headers["grip-status"] == "304"
    assert "content-length" not in {name.lower() for name in headers}
    assert headers["etag"] == '"v1"'


@pytest.mark.anyio
async def test_a_200_keeps_its_content_length() -> None:
    app = GripMiddleware(
        make_app(lambda ctx, body: ctx.start_instruct().add_channel("c").set_hold_longpoll()),
        grip=GRIP_URL,
    )
    scope = http_scope(headers=proxy.headers())

    async def with_length(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_length(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"content-length", b"2")]
            await send(message)

        await app(scope, receive, send_with_length)

    sent = await run(with_length, scope)
    assert headers_of(sent)["content-length"] == "2" and body_of(sent) == b"ok"


# --- Native WebSockets ----------------------------------------------------------------------


def native_websocket_scope(headers: dict[str, str]) -> Scope:
    scope = http_scope(path="/ws", headers=headers)
    del scope["method"]
    scope.update(type="websocket", scheme="ws", subprotocols=[])
    return scope


@pytest.mark.parametrize(
    ("headers", "signed", "sig_error"),
    [
        (proxy.headers(last={"a": "1"}), True, None),
        ({"Grip-Sig": "forged", "Grip-Last": "a; last-id=1"}, False, "malformed token"),
        ({}, False, None),
    ],
)
@pytest.mark.anyio
async def test_a_native_websocket_gets_the_same_grip_sig_view(
    headers: dict[str, str], signed: bool, sig_error: str | None
) -> None:
    seen: list[GripContext] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_grip_context(scope))
        assert get_publisher(scope) is middleware.publisher
        await send({"type": "websocket.close", "code": 1000})

    middleware = GripMiddleware(app, grip=GRIP_URL)
    sent = await run(middleware, native_websocket_scope(headers))
    assert sent == [{"type": "websocket.close", "code": 1000}]  # untouched
    grip = seen[0]
    assert (grip.is_proxied, grip.is_signed, grip.sig_error) == (signed, signed, sig_error)
    assert dict(grip.last) == ({"a": "1"} if signed else {})
    assert grip.ws is None
    # Nothing would read an instruct: a native WebSocket has no GRIP response headers.
    with pytest.raises(InstructNotAvailableError):
        grip.start_instruct()


@pytest.mark.parametrize("headers", [{}, {"Grip-Sig": "forged"}])
@pytest.mark.anyio
async def test_proxy_only_closes_an_unproxied_native_websocket_handshake(
    headers: dict[str, str],
) -> None:
    accepted: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        accepted.append(True)
        await send({"type": "websocket.accept"})

    middleware = GripMiddleware(app, grip=GRIP_URL, proxy_only=True)
    sent = await run(middleware, native_websocket_scope(headers))
    assert sent == [{"type": "websocket.close", "code": 1008}] and accepted == []
    sent = await run(middleware, native_websocket_scope(proxy.headers()))
    assert sent == [{"type": "websocket.accept"}] and accepted == [True]


@pytest.mark.anyio
async def test_a_native_websocket_with_oversized_grip_headers_is_refused() -> None:
    called: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        called.append(True)

    middleware = GripMiddleware(app, grip=GRIP_URL, limits=GripLimits(max_header_size=20))
    sent = await run(middleware, native_websocket_scope(proxy.headers(last={"a": "1" * 30})))
    assert sent == [{"type": "websocket.close", "code": 1008}] and called == []
